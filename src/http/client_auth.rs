use std::sync::Arc;

use actix_web::HttpRequest;
use actix_web::http::header::AUTHORIZATION;

use crate::clients::{AuthContext, RegisteredClient};
use crate::oauth::{ClientAuthFields, ClientCredentials, OAuthError};
use crate::state::AppState;

/// The client behind a request, from its `Authorization` header or its form (never both).
pub async fn authenticated_client(
    request: &HttpRequest,
    body: &ClientAuthFields,
    state: &AppState,
) -> Result<Arc<RegisteredClient>, OAuthError> {
    let mut headers = request.headers().get_all(AUTHORIZATION);
    let authorization = headers.next().map(|v| v.to_str().unwrap_or(""));
    if headers.next().is_some() {
        return Err(OAuthError::invalid_request("the Authorization header is repeated"));
    }
    let credentials = ClientCredentials::from_request(authorization, body)?;
    let peer = request.peer_addr().map(|address| address.ip().to_canonical());
    // An assertion's `aud`: our issuer, or this endpoint's URL (RFC 7523 §3).
    let audiences = [state.issuer.to_string(), format!("{}{}", state.issuer, request.path())];
    let context =
        AuthContext { peer, now: state.clock.now(), audiences: &audiences, replay: state.identities.replay_store() };
    state.clients.current().authenticate(&credentials, &context).await
}
