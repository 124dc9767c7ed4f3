//! Rate limits at the client endpoints: a peer over its failed-authentication limit is refused
//! before its credentials are checked, failures are counted per peer, and an authenticated
//! client is held to its own limit (`crate::rate_limit` owns the limiters).

use std::sync::Arc;

use actix_web::HttpRequest;

use super::client_auth::authenticated_client;
use crate::clients::RegisteredClient;
use crate::oauth::{ClientAuthFields, OAuthError};
use crate::rate_limit::{Endpoint, Limited};
use crate::state::AppState;

/// [`authenticated_client`] within the failed-authentication limit of the peer, on `endpoint`
/// (`/token` or `/revoke`); the client's own limit is [`within_client_limit`].
pub async fn authenticated_within_limits(
    request: &HttpRequest,
    body: &ClientAuthFields,
    state: &AppState,
    endpoint: Endpoint,
) -> Result<Arc<RegisteredClient>, OAuthError> {
    let limits = &state.rate_limits;
    let peer = request.peer_addr().map(|address| address.ip());
    limits.may_authenticate(endpoint, peer).map_err(slow_down)?;
    match authenticated_client(request, body, state).await {
        Err(rejected @ OAuthError::InvalidClient { .. }) => {
            limits.authentication_failed(endpoint, peer).map_err(slow_down)?;
            Err(rejected)
        }
        other => other,
    }
}

/// One request of an authenticated client on `endpoint`, within its limit.
pub fn within_client_limit(state: &AppState, endpoint: Endpoint, client: &RegisteredClient) -> Result<(), OAuthError> {
    state.rate_limits.client(endpoint, &client.client_id).map_err(slow_down)
}

fn slow_down(limited: Limited) -> OAuthError {
    OAuthError::RateLimited { retry_after: limited.retry_after }
}
