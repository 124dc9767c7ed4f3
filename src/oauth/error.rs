use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

use super::AuthMethod;

type Description = Cow<'static, str>;

/// The cause of a failure on our side: kept for the log, never shown to the client.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// Every error an endpoint answers with (RFC 6749 §5.2, RFC 8693 §2.2.2), each with exactly one
/// `error` code and HTTP status. 404 and 405 are here too, so every answer has one shape.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OAuthError {
    #[error("invalid_request: {0}")]
    InvalidRequest(Description),
    /// A subject or actor token that no upstream vouches for: `invalid_request` (RFC 8693 §2.2.2).
    #[error("invalid_request: {parameter} is invalid: {reason}")]
    InvalidToken { parameter: &'static str, reason: Description },
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
    TooManyAttempts { retry_after: Duration },
    /// Over a rate limit (`[rate_limits]`): 429 `slow_down` with `Retry-After`.
    #[error("slow_down: rate limit exceeded")]
    RateLimited { retry_after: Duration },
    /// The client's budget of upstream calls for tokens never seen before is spent
    /// (`rate_limits.first_sight_per_client`): 429 `slow_down` (RFC 8628 §3.5) with `Retry-After`.
    #[error("slow_down: too many unknown tokens")]
    TooManyUnknownTokens { retry_after: Duration },
    /// The upstream identity provider or a backing store cannot answer now: 503.
    #[error("temporarily_unavailable: {description}")]
    TemporarilyUnavailable {
        description: Description,
        retry_after: Option<Duration>,
        #[source]
        cause: Option<Cause>,
    },
    /// A fault on our side; the cause goes to the log, never to the client.
    #[error("server_error")]
    ServerError(#[source] Cause),
    /// The body did not arrive within the read timeout: 408, and the connection is closed.
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed; use {allowed}")]
    MethodNotAllowed { allowed: &'static str },
}

impl OAuthError {
    pub fn invalid_request(description: impl Into<Description>) -> Self {
        Self::InvalidRequest(description.into())
    }

    pub fn invalid_client(description: impl Into<Description>, attempted: Option<AuthMethod>) -> Self {
        Self::InvalidClient { description: description.into(), attempted }
    }

    pub fn unavailable(description: impl Into<Description>, retry_after: Option<Duration>) -> Self {
        Self::TemporarilyUnavailable { description: description.into(), retry_after, cause: None }
    }

    /// A 503 whose cause is kept for the log.
    pub fn unavailable_because(
        description: impl Into<Description>,
        retry_after: Option<Duration>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::TemporarilyUnavailable { description: description.into(), retry_after, cause: Some(Arc::new(cause)) }
    }

    pub fn server_error(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::ServerError(Arc::new(cause))
    }

    /// The registered `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_)
            | Self::InvalidToken { .. }
            | Self::BodyTimeout
            | Self::NotFound
            | Self::MethodNotAllowed { .. } => "invalid_request",
            Self::InvalidClient { .. } => "invalid_client",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::InvalidTarget(_) => "invalid_target",
            Self::TooManyAttempts { .. } | Self::RateLimited { .. } | Self::TooManyUnknownTokens { .. } => "slow_down",
            Self::TemporarilyUnavailable { .. } => "temporarily_unavailable",
            Self::ServerError(_) => "server_error",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidClient { .. } => 401,
            Self::NotFound => 404,
            Self::BodyTimeout => 408,
            Self::MethodNotAllowed { .. } => 405,
            Self::TooManyAttempts { .. } | Self::RateLimited { .. } | Self::TooManyUnknownTokens { .. } => 429,
            Self::TemporarilyUnavailable { .. } => 503,
            Self::ServerError(_) => 500,
            _ => 400,
        }
    }

    pub fn description(&self) -> Cow<'_, str> {
        match self {
            Self::InvalidRequest(d)
            | Self::UnauthorizedClient(d)
            | Self::UnsupportedGrantType(d)
            | Self::InvalidScope(d)
            | Self::InvalidTarget(d)
            | Self::InvalidClient { description: d, .. }
            | Self::TemporarilyUnavailable { description: d, .. } => Cow::Borrowed(d),
            Self::InvalidToken { parameter, reason } => Cow::Owned(format!("{parameter} is invalid: {reason}")),
            Self::TooManyAttempts { .. } => Cow::Borrowed("too many failed client authentications"),
            Self::RateLimited { .. } => Cow::Borrowed("too many requests; slow down"),
            Self::TooManyUnknownTokens { .. } => {
                Cow::Borrowed("too many tokens never seen before had to be validated; slow down")
            }
            Self::ServerError(_) => Cow::Borrowed("internal error"),
            Self::NotFound => Cow::Borrowed("no such endpoint"),
            Self::BodyTimeout => Cow::Borrowed("the request body did not arrive in time"),
            Self::MethodNotAllowed { allowed } => Cow::Owned(format!("use {allowed}")),
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::TooManyAttempts { retry_after }
            | Self::RateLimited { retry_after }
            | Self::TooManyUnknownTokens { retry_after } => Some(*retry_after),
            Self::TemporarilyUnavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The `Allow` header owed with a 405.
    pub fn allowed_methods(&self) -> Option<&'static str> {
        match self {
            Self::MethodNotAllowed { allowed } => Some(allowed),
            _ => None,
        }
    }

    /// A stable name for the security-relevant refusals, for operators to filter logs on.
    pub fn security_event(&self) -> Option<&'static str> {
        match self {
            Self::InvalidToken { .. } => Some("token_rejected"),
            Self::InvalidClient { .. } => Some("client_auth_failed"),
            Self::TooManyAttempts { .. } => Some("client_locked_out"),
            Self::RateLimited { .. } => Some("rate_limited"),
            Self::TooManyUnknownTokens { .. } => Some("first_sight_budget_exceeded"),
            Self::InvalidTarget(_) => Some("audience_refused"),
            Self::UnauthorizedClient(_) => Some("client_not_authorized"),
            _ => None,
        }
    }

    /// The `WWW-Authenticate` challenge owed with a 401 (RFC 6749 §5.2): Basic, the only
    /// HTTP authentication scheme we accept, unless the client sent an assertion, which no
    /// HTTP scheme describes.
    pub fn challenge(&self, realm: &str) -> Option<String> {
        matches!(self, Self::InvalidClient { attempted, .. } if *attempted != Some(AuthMethod::PrivateKeyJwt))
            .then(|| format!("Basic realm=\"{realm}\""))
    }

    pub fn to_response(&self) -> ErrorResponse {
        ErrorResponse { error: self.code().to_owned(), error_description: Some(restricted_ascii(&self.description())) }
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
