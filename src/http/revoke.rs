use actix_web::http::header::AUTHORIZATION;
use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::form::read_form;
use crate::clients::RegisteredClient;
use crate::oauth::{ClientCredentials, ErrorResponse, FormParams, OAuthError, RevocationRequest};
use crate::state::AppState;

/// The RFC 7009 §2.1 request form (documentation only).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct RevocationForm {
    /// The subject token to forget and refuse from now on.
    #[schema(min_length = 1)]
    token: String,
    /// Accepted and ignored: every cached verdict on the token is dropped.
    token_type_hint: Option<String>,
}

/// Revoke a subject token (RFC 7009): its cached identity is dropped on every replica and the
/// token is refused from now on. Answers 200 for unknown tokens too.
#[utoipa::path(
    post,
    path = "/revoke",
    tag = "token",
    request_body(content = RevocationForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or never seen"),
        (status = 400, description = "invalid_request", body = ErrorResponse),
        (status = 401, description = "invalid_client, with a WWW-Authenticate challenge", body = ErrorResponse),
        (status = 429, description = "slow_down: too many failed client authentications", body = ErrorResponse),
        (status = 503, description = "temporarily_unavailable: the shared cache could not record the revocation", body = ErrorResponse),
    ),
    security(("client_secret_basic" = []), ()),
)]
#[post("/revoke")]
pub async fn revoke(
    request: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let form = read_form(&request, body, state.max_body_bytes).await?;
    authenticated_client(&request, &form, &state).await?;
    let revocation = RevocationRequest::from_form(&form)?;
    state.identities.revoke(&revocation.token, state.exchange.now()).await.map_err(|error| {
        tracing::error!(%error, "a revocation could not be shared with the other replicas");
        OAuthError::unavailable("the revocation could not be recorded everywhere; try again", Some(1))
    })?;
    Ok(HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).finish())
}

/// The purge request: every cached identity of one subject.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct PurgeForm {
    /// The subject (`sub`) whose cached identities are dropped.
    #[schema(min_length = 1)]
    sub: String,
    /// Only identities from this issuer; all issuers when absent.
    iss: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PurgeResult {
    /// Cache entries dropped here and in the shared cache.
    purged: u64,
}

/// Drop every cached identity of a subject on all replicas (admin clients only).
#[utoipa::path(
    post,
    path = "/admin/purge",
    tag = "operations",
    request_body(content = PurgeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Purged", body = PurgeResult),
        (status = 400, description = "invalid_request, or unauthorized_client for a client without admin rights", body = ErrorResponse),
        (status = 401, description = "invalid_client", body = ErrorResponse),
    ),
    security(("client_secret_basic" = []), ()),
)]
#[post("/admin/purge")]
pub async fn purge(
    request: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let form = read_form(&request, body, state.max_body_bytes).await?;
    let client = authenticated_client(&request, &form, &state).await?;
    if !client.admin {
        return Err(OAuthError::UnauthorizedClient("this client may not purge the cache".into()));
    }
    let subject = form.require("sub")?;
    let purged = state.identities.purge_subject(form.get("iss"), subject).await;
    Ok(HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(PurgeResult { purged }))
}

pub async fn authenticated_client(
    request: &HttpRequest,
    form: &FormParams,
    state: &AppState,
) -> Result<std::sync::Arc<RegisteredClient>, OAuthError> {
    let authorization = request.headers().get(AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
    let credentials = ClientCredentials::from_request(authorization, form)?;
    state.clients.authenticate(&credentials).await
}
