use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// RFC 8693 §2.2.1 success response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// The minted JWT (RFC 9068, `typ: at+jwt`).
    pub access_token: String,
    /// The type of `access_token`, a URI of RFC 8693 §3.
    #[schema(example = "urn:ietf:params:oauth:token-type:access_token")]
    pub issued_token_type: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Seconds until the minted token expires.
    pub expires_in: u64,
    /// Granted scopes, space-delimited; absent when none were granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}
