use std::sync::Arc;

use actix_web::HttpRequest;
use actix_web::http::header::AUTHORIZATION;

use crate::clients::RegisteredClient;
use crate::oauth::{ClientCredentials, FormParams, OAuthError};
use crate::state::AppState;

/// The client behind a request, from its `Authorization` header or its form (never both).
pub async fn authenticated_client(
    request: &HttpRequest,
    form: &FormParams,
    state: &AppState,
) -> Result<Arc<RegisteredClient>, OAuthError> {
    let authorization = request.headers().get(AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
    let credentials = ClientCredentials::from_request(authorization, form)?;
    state.clients.authenticate(&credentials).await
}
