//! Envoy's ext_authz over gRPC (`envoy.service.auth.v3.Authorization/Check`): the same
//! decision as `/forward-auth`, in Envoy's own protocol, on `forward_auth.grpc_listen` (h2c).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction,
    HttpStatusCode,
};
use envoy_types::ext_authz::v3::{CheckResponseExt as _, DeniedHttpResponseBuilder, OkHttpResponseBuilder};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::gateway::{Credential, DecisionRequest, ForwardAuth, OriginalRequest, Refusal};

/// The ext_authz service.
pub struct ExtAuthz {
    forward_auth: Arc<ForwardAuth>,
    realm: Arc<str>,
}

impl ExtAuthz {
    pub fn new(forward_auth: Arc<ForwardAuth>, realm: Arc<str>) -> Self {
        Self { forward_auth, realm }
    }

    /// Binds `address` (port 0 picks one) and returns the bound address and the server, which
    /// runs until `stop` resolves.
    pub fn serve(
        self,
        address: SocketAddr,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<(SocketAddr, impl Future<Output = Result<(), tonic::transport::Error>>)> {
        let incoming = TcpIncoming::bind(address)?;
        let bound = incoming.local_addr()?;
        let server = tonic::transport::Server::builder().serve_with_incoming_shutdown(
            AuthorizationServer::new(self),
            incoming,
            stop,
        );
        Ok((bound, server))
    }

    fn denied(&self, refusal: &Refusal) -> CheckResponse {
        let status = match refusal.status() {
            401 => HttpStatusCode::Unauthorized,
            403 => HttpStatusCode::Forbidden,
            429 => HttpStatusCode::TooManyRequests,
            503 => HttpStatusCode::ServiceUnavailable,
            _ => HttpStatusCode::InternalServerError,
        };
        let mut http = DeniedHttpResponseBuilder::new();
        http.set_http_status(status);
        if let Some(challenge) = refusal.challenge(&self.realm) {
            http.add_header("www-authenticate", challenge, Some(HeaderAppendAction::OverwriteIfExistsOrAdd), false);
        }
        if let Some(wait) = refusal.retry_after() {
            http.add_header(
                "retry-after",
                wait.as_secs().to_string(),
                Some(HeaderAppendAction::OverwriteIfExistsOrAdd),
                false,
            );
        }
        http.add_header("cache-control", "no-store", Some(HeaderAppendAction::OverwriteIfExistsOrAdd), false);
        let http: DeniedHttpResponse = http.build();
        // An outage is Envoy's error path (status_on_error), a refusal its denied path.
        let (grpc_status, http) = match refusal.status() {
            503 | 500 => (
                Status::unavailable(refusal.to_string()),
                envoy_types::ext_authz::v3::pb::HttpResponse::ErrorResponse(http),
            ),
            401 => (
                Status::unauthenticated(refusal.to_string()),
                envoy_types::ext_authz::v3::pb::HttpResponse::DeniedResponse(http),
            ),
            _ => (
                Status::permission_denied(refusal.to_string()),
                envoy_types::ext_authz::v3::pb::HttpResponse::DeniedResponse(http),
            ),
        };
        let mut response = CheckResponse::with_status(grpc_status);
        response.set_http_response(http);
        response
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let peer = request.remote_addr().map(|address| address.ip());
        let attributes = request.into_inner().attributes.unwrap_or_default();
        let http = attributes.request.and_then(|request| request.http).unwrap_or_default();
        let headers = headers_of(&http);
        let decision = DecisionRequest {
            peer,
            credential: Credential::from_authorization(headers.get("authorization").map(String::as_str).into_iter()),
            original: OriginalRequest { method: http.method.clone(), host: http.host.clone(), uri: http.path.clone() },
            route: attributes.context_extensions.get("route").map(String::as_str),
        };
        let response = match self.forward_auth.decide(decision).await {
            Ok(allowed) => {
                let mut ok = OkHttpResponseBuilder::new();
                let bearer = format!("Bearer {}", allowed.access_token);
                ok.add_header("authorization", bearer, Some(HeaderAppendAction::OverwriteIfExistsOrAdd), false);
                let mut response = CheckResponse::with_status(Status::ok("allowed"));
                response.set_http_response(ok.build());
                response
            }
            Err(refusal) => {
                if refusal.status() >= 500 {
                    tracing::error!(error = %crate::report::Chain(&refusal), "ext_authz check failed");
                } else {
                    tracing::info!(
                        error = refusal.outcome(),
                        security_event = refusal.security_event(),
                        "ext_authz check refused"
                    );
                }
                self.denied(&refusal)
            }
        };
        Ok(Response::new(response))
    }
}

/// Envoy sends headers as a lowercase map, or, with `encode_raw_headers`, as a header list.
fn headers_of(
    http: &envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest,
) -> HashMap<String, String> {
    if !http.headers.is_empty() {
        return http.headers.clone();
    }
    let raw = http.header_map.as_ref().map(|map| map.headers.as_slice()).unwrap_or_default();
    raw.iter()
        .map(|header| {
            let value = if header.value.is_empty() {
                String::from_utf8_lossy(&header.raw_value).into_owned()
            } else {
                header.value.clone()
            };
            (header.key.to_ascii_lowercase(), value)
        })
        .collect()
}
