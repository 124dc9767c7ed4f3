//! Upstream identity providers: who may vouch for a subject token and how we ask them.
//! JWTs are checked offline against the issuer's JWKS; opaque tokens go to RFC 7662
//! introspection or OIDC userinfo of exactly one upstream, never to several in turn.

mod http;
mod jwks;
mod jwt;
mod opaque;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use http::{HttpFailure, UnavailableReason, UpstreamCall, UpstreamHttp};
pub use jwt::JwtUpstream;
pub use opaque::OpaqueUpstream;

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

    pub fn unavailable(reason: UnavailableReason, retry_after_secs: Option<u64>) -> Self {
        Self::Unavailable { reason: reason.to_string(), retry_after_secs }
    }
}

/// An upstream's answer and how long it may be relied on.
#[derive(Debug, Clone)]
pub struct Vouched {
    pub identity: ValidatedIdentity,
    /// At most this many seconds, when the answer carries no expiry (userinfo).
    pub trust_for: Option<i64>,
    /// The provider's fixed token lifetime in seconds, counted from when we first saw the token.
    pub lifetime_from_first_sight: Option<i64>,
}

/// The one upstream responsible for a token.
#[derive(Clone)]
pub enum Route {
    Jwt(Arc<JwtUpstream>),
    Opaque(Arc<OpaqueUpstream>),
}

impl Route {
    pub fn upstream_name(&self) -> &Arc<str> {
        match self {
            Self::Jwt(upstream) => upstream.name(),
            Self::Opaque(upstream) => upstream.name(),
        }
    }

    pub async fn validate(&self, token: &SubjectToken, now: UnixTime) -> Result<Vouched, ValidationError> {
        match self {
            Self::Jwt(upstream) => upstream.validate(token, now).await,
            Self::Opaque(upstream) => upstream.validate(token, now).await,
        }
    }
}

/// Every configured upstream, indexed the ways a subject token can lead to one.
pub struct Upstreams {
    by_issuer: HashMap<String, Arc<JwtUpstream>>,
    opaque_by_name: HashMap<String, Arc<OpaqueUpstream>>,
    default_opaque: Option<Arc<OpaqueUpstream>>,
    names: Vec<String>,
}

impl Upstreams {
    pub fn from_settings(settings: &Settings, http: Arc<UpstreamHttp>) -> Self {
        let claims = &settings.tokens.claims;
        let by_issuer = settings
            .upstreams
            .iter()
            .filter(|u| !u.audiences.is_empty())
            .map(|u| (u.issuer.clone(), Arc::new(JwtUpstream::new(u, claims, http.clone()))))
            .collect();
        let opaque: Vec<_> = settings
            .upstreams
            .iter()
            .filter_map(|u| {
                Some((u.default_for_opaque, Arc::new(OpaqueUpstream::from_settings(u, claims, http.clone())?)))
            })
            .collect();
        Self {
            by_issuer,
            default_opaque: opaque.iter().find(|(default, _)| *default).map(|(_, u)| u.clone()),
            opaque_by_name: opaque.into_iter().map(|(_, u)| (u.name().to_string(), u)).collect(),
            names: settings.upstreams.iter().map(|u| u.name.clone()).collect(),
        }
    }

    /// Every upstream name, for dropping a token's cache entries whatever route it took.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// A JWS whose `iss` we know is verified offline; anything else is opaque and goes to the
    /// caller's bound upstream or the default one.
    pub fn route(&self, token: &SubjectToken, bound_upstream: Option<&str>) -> Result<Route, ValidationError> {
        if token.looks_like_jws()
            && let Some(upstream) = jwt::unverified_issuer(token).and_then(|iss| self.by_issuer.get(&iss))
        {
            return Ok(Route::Jwt(upstream.clone()));
        }
        let opaque = match bound_upstream {
            Some(name) => self.opaque_by_name.get(name),
            None => self.default_opaque.as_ref(),
        };
        opaque.cloned().map(Route::Opaque).ok_or_else(|| {
            if token.looks_like_jws() {
                ValidationError::rejected("no configured upstream trusts the token's issuer")
            } else {
                ValidationError::rejected("no upstream accepts opaque tokens for this client")
            }
        })
    }
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}
