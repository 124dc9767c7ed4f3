use actix_web::HttpRequest;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::web::Payload;
use serde::de::DeserializeOwned;

use crate::oauth::{OAuthError, decode_form};
use crate::state::BodyLimits;

/// Parameters that must never travel in a URI, where proxies and logs would keep them.
const NEVER_IN_QUERY: &[&str] = &["client_secret", "subject_token", "actor_token", "token", "client_assertion"];

/// Reads a bounded `application/x-www-form-urlencoded` body into its wire type; anything else
/// is `invalid_request`.
pub async fn read_form<T: DeserializeOwned>(
    request: &HttpRequest,
    payload: Payload,
    limits: &BodyLimits,
) -> Result<T, OAuthError> {
    let content_type = request.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request("the body must be application/x-www-form-urlencoded"));
    }
    reject_secrets_in_query(request.query_string())?;
    // A slow body would hold the connection (and its memory) before anyone is authenticated.
    let body = tokio::time::timeout(limits.read_timeout, payload.to_bytes_limited(limits.max_bytes))
        .await
        .map_err(|_| OAuthError::BodyTimeout)?
        .map_err(|_| OAuthError::invalid_request("the request body is too large"))?
        .map_err(|_| OAuthError::invalid_request("the request body could not be read"))?;
    decode_form(&body)
}

fn reject_secrets_in_query(query: &str) -> Result<(), OAuthError> {
    if query.is_empty() {
        return Ok(());
    }
    let pairs: Vec<(String, String)> = serde_html_form::from_str(query).unwrap_or_default();
    if pairs.iter().any(|(name, _)| NEVER_IN_QUERY.iter().any(|secret| name.eq_ignore_ascii_case(secret))) {
        return Err(OAuthError::invalid_request("credentials and tokens must not be sent in the URI"));
    }
    Ok(())
}
