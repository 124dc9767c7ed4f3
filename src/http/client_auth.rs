use std::sync::Arc;

use actix_web::HttpRequest;
use actix_web::http::header::AUTHORIZATION;

use crate::clients::RegisteredClient;
use crate::oauth::{ClientAuthFields, ClientCredentials, OAuthError};
use crate::state::AppState;

/// The client behind a request, from its `Authorization` header or its form (never both).
pub async fn authenticated_client(
    request: &HttpRequest,
    body: &ClientAuthFields,
    state: &AppState,
) -> Result<Arc<RegisteredClient>, OAuthError> {
    let authorization = request.headers().get(AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
    let credentials = ClientCredentials::from_request(authorization, body)?;
    state.clients.authenticate(&credentials).await
}
