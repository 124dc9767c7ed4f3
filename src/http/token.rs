use actix_web::{HttpRequest, HttpResponse, post, web};

use super::form::read_form;
use super::no_store;
use super::rate_limit::{authenticated_within_limits, within_client_limit};
use crate::exchange::IssuedToken;
use crate::oauth::{ErrorResponse, ExchangeRequest, OAuthError, TokenExchangeForm, TokenResponse};
use crate::rate_limit::Endpoint;
use crate::state::AppState;

/// Exchange a subject token for an internal access token (RFC 8693).
///
/// The client authenticates with HTTP Basic (`client_secret_basic`), with `client_id` and
/// `client_secret` in the body (`client_secret_post`), or with a signed JWT in
/// `client_assertion` and `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
/// (`private_key_jwt`, RFC 7523), one method only.
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
        (status = 429, description = "slow_down: too many failed client authentications, over a rate limit (per client, or per address after failed authentications), or over the client's budget of upstream calls for tokens never seen before; see Retry-After", body = ErrorResponse),
        (status = 500, description = "server_error", body = ErrorResponse),
        (status = 503, description = "temporarily_unavailable: the upstream identity provider cannot answer now, or is not asked now (its circuit breaker is open, or too many calls to it are under way); see Retry-After", body = ErrorResponse),
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
    state.metrics.exchange(result.as_ref().map_or_else(OAuthError::code, |_| "issued"), client_id.as_deref());
    Ok(no_store(HttpResponse::Ok()).json(token_response(result?)))
}

/// Parse, authenticate, exchange; `client_id` is set once the client has proved who it is.
async fn issue(
    request: &HttpRequest,
    body: web::Payload,
    state: &AppState,
    client_id: &mut Option<String>,
) -> Result<IssuedToken, OAuthError> {
    let form: TokenExchangeForm = read_form(request, body, &state.bodies).await?;
    let client = authenticated_within_limits(request, &form.client, state, Endpoint::Token).await?;
    *client_id = Some(client.client_id.clone());
    within_client_limit(state, Endpoint::Token, &client)?;
    let exchange = ExchangeRequest::try_from(form)?;
    state.exchange.exchange(&client, exchange).await
}

fn token_response(issued: IssuedToken) -> TokenResponse {
    TokenResponse {
        access_token: issued.access_token,
        issued_token_type: issued.issued_token_type.uri().to_owned(),
        token_type: "Bearer".to_owned(),
        expires_in: issued.expires_in.as_secs(),
        scope: (!issued.scope.is_empty()).then(|| issued.scope.to_wire()),
    }
}
