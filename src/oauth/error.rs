use std::borrow::Cow;

use serde::Serialize;
use utoipa::ToSchema;

use super::AuthMethod;

type Description = Cow<'static, str>;

/// Every error the token endpoint can answer with (RFC 6749 §5.2, RFC 8693 §2.2.2), each with
/// exactly one `error` code and HTTP status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OAuthError {
    #[error("invalid_request: {0}")]
    InvalidRequest(Description),
    /// 401; the challenge names the scheme the client tried, Basic when it tried none.
    #[error("invalid_client: {description}")]
    InvalidClient { description: Description, attempted: Option<AuthMethod> },
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(Description),
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(Description),
    #[error("invalid_scope: {0}")]
    InvalidScope(Description),
    #[error("invalid_target: {0}")]
    InvalidTarget(Description),
    /// Too many failed client authentications: 429 with `Retry-After`.
    #[error("slow_down: too many failed attempts")]
    TooManyAttempts { retry_after_secs: u64 },
    /// The upstream identity provider or a backing store cannot answer now: 503.
    #[error("temporarily_unavailable: {description}")]
    TemporarilyUnavailable { description: Description, retry_after_secs: Option<u64> },
    /// A fault on our side; the cause goes to the log, never to the client.
    #[error("server_error")]
    ServerError,
}

impl OAuthError {
    pub fn invalid_request(description: impl Into<Description>) -> Self {
        Self::InvalidRequest(description.into())
    }

    pub fn invalid_client(description: impl Into<Description>, attempted: Option<AuthMethod>) -> Self {
        Self::InvalidClient { description: description.into(), attempted }
    }

    pub fn unavailable(description: impl Into<Description>, retry_after_secs: Option<u64>) -> Self {
        Self::TemporarilyUnavailable { description: description.into(), retry_after_secs }
    }

    /// The registered `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient { .. } => "invalid_client",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::InvalidTarget(_) => "invalid_target",
            Self::TooManyAttempts { .. } => "slow_down",
            Self::TemporarilyUnavailable { .. } => "temporarily_unavailable",
            Self::ServerError => "server_error",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidClient { .. } => 401,
            Self::TooManyAttempts { .. } => 429,
            Self::TemporarilyUnavailable { .. } => 503,
            Self::ServerError => 500,
            _ => 400,
        }
    }

    pub fn description(&self) -> Option<&str> {
        match self {
            Self::InvalidRequest(d)
            | Self::UnauthorizedClient(d)
            | Self::UnsupportedGrantType(d)
            | Self::InvalidScope(d)
            | Self::InvalidTarget(d)
            | Self::InvalidClient { description: d, .. }
            | Self::TemporarilyUnavailable { description: d, .. } => Some(d),
            Self::TooManyAttempts { .. } => Some("too many failed client authentications"),
            Self::ServerError => Some("internal error"),
        }
    }

    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::TooManyAttempts { retry_after_secs } => Some(*retry_after_secs),
            Self::TemporarilyUnavailable { retry_after_secs, .. } => *retry_after_secs,
            _ => None,
        }
    }

    /// The `WWW-Authenticate` challenge owed with a 401 (RFC 6749 §5.2). Both methods we
    /// accept are password methods, so the challenge is always Basic.
    pub fn challenge(&self, realm: &str) -> Option<String> {
        matches!(self, Self::InvalidClient { .. }).then(|| format!("Basic realm=\"{realm}\""))
    }

    pub fn to_response(&self) -> ErrorResponse {
        ErrorResponse { error: self.code().to_owned(), error_description: self.description().map(restricted_ascii) }
    }
}

/// RFC 6749 §5.2 error body.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorResponse {
    /// A registered error code such as `invalid_request` or `invalid_target`.
    #[schema(example = "invalid_request")]
    pub error: String,
    /// Human-readable detail; never contains a token or secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// `error_description` may only hold %x20-21 / %x23-5B / %x5D-7E.
fn restricted_ascii(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\x20'..='\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E' => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_description_keeps_to_restricted_ascii() {
        assert_eq!(restricted_ascii("bad \"x\" \\ é"), "bad ?x? ? ?");
    }
}
