//! The HTTP decision endpoint for gateways: `/forward-auth` and every path below it, any
//! method. Every answer has an empty body; the decision is in the status and headers.

use actix_web::http::header::{AUTHORIZATION, CACHE_CONTROL, HeaderMap, VARY};
use actix_web::{HttpMessage as _, HttpRequest, HttpResponse, web};

use super::middleware::ArrivedAsHead;

use crate::gateway::{Credential, DecisionRequest, OriginalRequest, Refusal, Refused};
use crate::state::AppState;

/// Decide whether the request a gateway describes may pass (nginx `auth_request`, Traefik
/// ForwardAuth, Caddy `forward_auth`, Envoy ext_authz HTTP).
///
/// The subject token is the request's `Authorization: Bearer` credential. The original request
/// is read from `X-Forwarded-Method`, `X-Forwarded-Host`, `X-Forwarded-Uri` (or `X-Original-Method`,
/// `X-Original-URI`), else taken from this request: its method, `Host` and the path below
/// `/forward-auth`. A gateway may name the route with `?route=` (on `/forward-auth` itself; below
/// it the query is the client's) or `X-Token-Exchange-Route`.
/// Only trusted proxies may call it. Any method is accepted; bodies are ignored and never sent.
#[utoipa::path(
    method(get, post, head, put, patch, delete, options),
    path = "/forward-auth",
    tag = "gateway",
    params(
        ("route" = Option<String>, Query, description = "The route to decide under, instead of matching host and path"),
        ("X-Forwarded-Method" = Option<String>, Header, description = "Method of the original request"),
        ("X-Forwarded-Host" = Option<String>, Header, description = "Host of the original request"),
        ("X-Forwarded-Uri" = Option<String>, Header, description = "Path and query of the original request"),
        ("X-Token-Exchange-Route" = Option<String>, Header, description = "The route to decide under"),
    ),
    responses(
        (status = 200, description = "Allowed: `Authorization: Bearer <internal at+jwt>`; `Cache-Control` says how long a proxy may reuse it"),
        (status = 401, description = "No, a malformed, an invalid, expired or revoked bearer token; `WWW-Authenticate: Bearer …`"),
        (status = 403, description = "Not a trusted proxy, no route, or the route's policy refuses; `WWW-Authenticate: Bearer error=\"insufficient_scope\"`"),
        (status = 429, description = "The proxy is over its rate limit (`rate_limits.forward_auth_per_peer`), or the route's client over its budget of upstream calls for tokens never seen before (`rate_limits.first_sight_per_client`); see `Retry-After`"),
        (status = 503, description = "The upstream identity provider cannot answer now, or is not asked now (its circuit breaker is open, or too many calls to it are under way); see `Retry-After`"),
    ),
    security(("bearer" = [])),
)]
pub async fn forward_auth(request: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, Refused> {
    let refused = |refusal| Refused { refusal, realm: state.issuer.clone() };
    let peer = request.peer_addr().map(|address| address.ip());
    // Nothing is read or computed for a caller that may not ask.
    if !state.forward_auth.trusts(peer) {
        return Err(refused(Refusal::UntrustedPeer));
    }
    if let Err(limited) = state.rate_limits.forward_auth(peer) {
        return Err(refused(Refusal::RateLimited { retry_after: limited.retry_after }));
    }
    // Below `/forward-auth` the query is the client's own (Envoy's `path_prefix` appends it):
    // there it must never choose the route.
    let decision_query = if request.path() == "/forward-auth" { request.query_string() } else { "" };
    let query: Vec<(String, String)> = serde_html_form::from_str(decision_query).unwrap_or_default();
    let named_route = query
        .iter()
        .find(|(name, _)| name == "route")
        .map(|(_, value)| value.as_str())
        .or_else(|| header(request.headers(), "x-token-exchange-route"));
    let decision = DecisionRequest {
        peer,
        credential: Credential::from_authorization(
            request.headers().get_all(AUTHORIZATION).map(|v| v.to_str().unwrap_or("")),
        ),
        original: original_request(&request),
        route: named_route,
    };
    let allowed = state.forward_auth.decide(decision).await.map_err(refused)?;
    let mut response = HttpResponse::Ok();
    response.insert_header((AUTHORIZATION, format!("Bearer {}", allowed.access_token)));
    match allowed.cache_for {
        Some(ttl) => response
            .insert_header((CACHE_CONTROL, format!("max-age={}", ttl.as_secs())))
            .insert_header((VARY, "Authorization")),
        None => response.insert_header((CACHE_CONTROL, "no-store")),
    };
    Ok(response.finish())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim).filter(|value| !value.is_empty())
}

/// The request the gateway is deciding about: from the forwarding headers proxies set, else
/// this request's own method, `Host` and the path below `/forward-auth` (Envoy's `path_prefix`).
fn original_request(request: &HttpRequest) -> OriginalRequest {
    let headers = request.headers();
    let method = header(headers, "x-forwarded-method").or_else(|| header(headers, "x-original-method"));
    let host = header(headers, "x-forwarded-host").or_else(|| header(headers, "host"));
    let uri = header(headers, "x-forwarded-uri").or_else(|| header(headers, "x-original-uri"));
    let tail = || {
        let path = request.path().strip_prefix("/forward-auth").unwrap_or("");
        let path = if path.is_empty() { "/" } else { path };
        match request.query_string() {
            "" => path.to_owned(),
            query => format!("{path}?{query}"),
        }
    };
    let own_method = || {
        let arrived_as_head = request.extensions().contains::<ArrivedAsHead>();
        if arrived_as_head { "HEAD".to_owned() } else { request.method().as_str().to_owned() }
    };
    OriginalRequest {
        method: method.map_or_else(own_method, str::to_owned),
        host: host.unwrap_or_default().to_owned(),
        uri: uri.map_or_else(tail, str::to_owned),
    }
}
