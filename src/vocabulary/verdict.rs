use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use super::ValidatedIdentity;

/// Why an upstream did not vouch for a token.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationError {
    /// Definitive: forged, expired, inactive, unknown. Safe to remember for a while.
    #[error("{0}")]
    Rejected(Cow<'static, str>),
    /// The upstream could not answer (timeout, 5xx, 429), or a definitive answer is not yet
    /// possible: ask again later, remember nothing.
    #[error("upstream unavailable: {reason}")]
    Unavailable { reason: String, retry_after: Option<Duration> },
    /// The upstream refused us (our credentials, a broken document): an operator must act.
    #[error("upstream misconfigured: {0}")]
    Misconfigured(String),
    /// Not asked: the client has spent its budget of upstream calls for tokens never seen
    /// before, and must slow down for `retry_after`. Nothing is remembered.
    #[error("the client's budget of upstream calls for unknown tokens is spent")]
    OverBudget { retry_after: Duration },
}

impl ValidationError {
    pub fn rejected(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Rejected(reason.into())
    }

    pub fn unavailable(reason: impl fmt::Display, retry_after: Option<Duration>) -> Self {
        Self::Unavailable { reason: reason.to_string(), retry_after }
    }
}

/// An upstream's answer and how long it may be relied on.
#[derive(Debug, Clone)]
pub struct Vouched {
    pub identity: ValidatedIdentity,
    /// At most this long, when the answer carries no expiry (userinfo).
    pub trust_for: Option<Duration>,
    /// The provider's fixed token lifetime, counted from when we first saw the token.
    pub lifetime_from_first_sight: Option<Duration>,
}
