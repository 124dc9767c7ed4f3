use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::Deserialize;
use utoipa::ToSchema;

use super::client_auth::authenticated_client;
use super::form::read_form;
use super::no_store;
use crate::exchange::IssuedToken;
use crate::oauth::{ErrorResponse, ExchangeRequest, OAuthError, TokenResponse};
use crate::state::AppState;

/// The RFC 8693 §2.1 request form (documentation only; the body is parsed by `oauth`).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct TokenExchangeForm {
    /// `urn:ietf:params:oauth:grant-type:token-exchange`
    #[schema(pattern = "^urn:ietf:params:oauth:grant-type:token-exchange$")]
    grant_type: String,
    /// The token to exchange.
    #[schema(min_length = 1)]
    subject_token: String,
    /// `urn:ietf:params:oauth:token-type:access_token`, `...:jwt` or `...:id_token`.
    #[schema(pattern = "^urn:ietf:params:oauth:token-type:(access_token|jwt|id_token)$")]
    subject_token_type: String,
    /// `...:access_token` (default) or `...:jwt`.
    #[schema(pattern = "^urn:ietf:params:oauth:token-type:(access_token|jwt)$")]
    requested_token_type: Option<String>,
    /// Logical name of a target service; may repeat.
    audience: Option<Vec<String>>,
    /// Absolute URI of a target service, without fragment; may repeat.
    resource: Option<Vec<String>>,
    /// Space-delimited scopes; only ever narrows what the subject token holds.
    scope: Option<String>,
    /// A token for the party acting on the subject's behalf (goes into `act`).
    actor_token: Option<String>,
    /// Required with `actor_token`, forbidden without it.
    #[schema(pattern = "^urn:ietf:params:oauth:token-type:(access_token|jwt|id_token)$")]
    actor_token_type: Option<String>,
    /// With `client_secret_post` only.
    client_id: Option<String>,
    /// With `client_secret_post` only.
    client_secret: Option<String>,
}

/// Exchange a subject token for an internal access token (RFC 8693).
///
/// The client authenticates with HTTP Basic (`client_secret_basic`) or with `client_id` and
/// `client_secret` in the body (`client_secret_post`), never both.
#[utoipa::path(
    post,
    path = "/token",
    tag = "token",
    request_body(content = TokenExchangeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Token issued; sent with Cache-Control: no-store and Pragma: no-cache", body = TokenResponse),
        (status = 400, description = "invalid_request, unsupported_grant_type, invalid_scope or invalid_target", body = ErrorResponse),
        (status = 401, description = "invalid_client, with a WWW-Authenticate challenge", body = ErrorResponse),
        (status = 405, description = "Only POST is allowed", body = ErrorResponse),
        (status = 429, description = "slow_down: too many failed client authentications; see Retry-After", body = ErrorResponse),
        (status = 500, description = "server_error", body = ErrorResponse),
        (status = 503, description = "temporarily_unavailable: the upstream identity provider cannot answer now", body = ErrorResponse),
    ),
    security(("client_secret_basic" = []), ()),
)]
#[post("/token")]
pub async fn token(
    request: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let mut client_id = None;
    let result = issue(&request, body, &state, &mut client_id).await;
    crate::metrics::exchange(result.as_ref().map_or_else(OAuthError::code, |_| "issued"), client_id.as_deref());
    Ok(no_store(HttpResponse::Ok()).json(token_response(result?)))
}

/// Parse, authenticate, exchange; `client_id` is set once the client has proved who it is.
async fn issue(
    request: &HttpRequest,
    body: web::Payload,
    state: &AppState,
    client_id: &mut Option<String>,
) -> Result<IssuedToken, OAuthError> {
    let form = read_form(request, body, state.max_body_bytes).await?;
    let client = authenticated_client(request, &form, state).await?;
    *client_id = Some(client.client_id.clone());
    let exchange = ExchangeRequest::from_form(&form)?;
    state.exchange.exchange(&client, exchange).await
}

fn token_response(issued: IssuedToken) -> TokenResponse {
    TokenResponse {
        access_token: issued.access_token,
        issued_token_type: issued.issued_token_type.uri().to_owned(),
        token_type: "Bearer".to_owned(),
        expires_in: issued.expires_in,
        scope: (!issued.scope.is_empty()).then(|| issued.scope.to_wire()),
    }
}
