//! Upstream identity providers: who may vouch for a subject token and how we ask them.
//! JWTs are checked offline against the issuer's JWKS; opaque tokens go to RFC 7662
//! introspection or OIDC userinfo of exactly one upstream.

mod http;
mod jwks;
mod jwt;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

pub use http::{HttpFailure, UpstreamHttp};
pub use jwt::JwtUpstream;

use crate::clock::UnixTime;
use crate::config::Settings;
use crate::subject::{SubjectToken, ValidatedIdentity};

/// Why an upstream did not vouch for a token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ValidationError {
    /// Definitive: forged, expired, inactive, unknown. Safe to remember for a while.
    #[error("{0}")]
    Rejected(Cow<'static, str>),
    /// The upstream could not answer (timeout, 5xx, 429): ask again later, remember nothing.
    #[error("upstream unavailable: {reason}")]
    Unavailable { reason: String, retry_after_secs: Option<u64> },
    /// The upstream refused us (our credentials, a broken document): an operator must act.
    #[error("upstream misconfigured: {0}")]
    Misconfigured(String),
}

impl ValidationError {
    pub fn rejected(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Rejected(reason.into())
    }
}

/// Every configured upstream, indexed the ways a subject token can lead to one.
pub struct Upstreams {
    by_issuer: HashMap<String, Arc<JwtUpstream>>,
}

impl Upstreams {
    pub fn from_settings(settings: &Settings, http: Arc<UpstreamHttp>) -> Self {
        let by_issuer = settings
            .upstreams
            .iter()
            .filter(|u| !u.audiences.is_empty())
            .map(|u| (u.issuer.clone(), Arc::new(JwtUpstream::new(u, &settings.tokens.claims, http.clone()))))
            .collect();
        Self { by_issuer }
    }

    /// Validates a subject or actor token with the one upstream responsible for it.
    pub async fn validate(&self, token: &SubjectToken, now: UnixTime) -> Result<ValidatedIdentity, ValidationError> {
        if !token.looks_like_jws() {
            return Err(ValidationError::rejected("opaque tokens are not accepted by any configured upstream"));
        }
        let issuer = jwt::unverified_issuer(token)
            .ok_or_else(|| ValidationError::rejected("the token is not a JWT with an iss claim"))?;
        let upstream = self
            .by_issuer
            .get(&issuer)
            .ok_or_else(|| ValidationError::rejected("no configured upstream trusts the token's issuer"))?;
        upstream.validate(token, now).await
    }
}
