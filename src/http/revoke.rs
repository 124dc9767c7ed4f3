use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, post, web};

use super::form::read_form;
use super::no_store;
use super::rate_limit::{authenticated_within_limits, within_client_limit};
use crate::identity::Revoker;
use crate::oauth::{ErrorResponse, OAuthError, RevocationForm, RevocationRequest};
use crate::rate_limit::Endpoint;
use crate::state::AppState;

/// Revoke a subject token (RFC 7009): its cached identity is dropped on every replica and the
/// token is refused from now on. A client revokes only tokens it exchanged, an admin client any;
/// every other request, and unknown tokens, are answered 200 and change nothing (§2.1, §2.2).
///
/// The client authenticates with HTTP Basic (`client_secret_basic`), with `client_id` and
/// `client_secret` in the body (`client_secret_post`), or with a signed JWT in
/// `client_assertion` and `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
/// (`private_key_jwt`, RFC 7523), one method only.
#[utoipa::path(
    post,
    path = "/revoke",
    tag = "token",
    request_body(content = RevocationForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or never seen"),
        (status = 400, description = "invalid_request", body = ErrorResponse),
        (status = 401, description = "invalid_client, with a WWW-Authenticate challenge", body = ErrorResponse),
        (status = 429, description = "slow_down: too many failed client authentications, or over a rate limit; see Retry-After", body = ErrorResponse),
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
    let form: RevocationForm = read_form(&request, body, &state.bodies).await?;
    let client = authenticated_within_limits(&request, &form.client, &state, Endpoint::Revoke).await?;
    within_client_limit(&state, Endpoint::Revoke, &client)?;
    let revocation = RevocationRequest::try_from(form)?;
    let revoker = Revoker { client_id: &client.client_id, may_revoke_any: client.admin };
    state.identities.revoke(&revocation.token, revoker, state.clock.now()).await.map_err(|error| {
        OAuthError::unavailable_because(
            "the revocation could not be recorded everywhere; try again",
            Some(Duration::from_secs(1)),
            error,
        )
    })?;
    Ok(no_store(HttpResponse::Ok()).finish())
}
