use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ScopeSet;
use crate::clock::UnixTime;

/// What an upstream vouched for. Cached and shared between replicas, so it holds only what
/// minting needs: never the token, never claims we were not asked to pass on. One is kept per
/// cached token, so it is compact: the upstream's name and issuer are shared with the upstream
/// (an `Arc` clone, not a copy per identity), and strings are boxed without spare capacity.
/// The serialized form (Redis, `cache::ENTRY_VERSION`) is the same as with `String`s and `Vec`s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidatedIdentity {
    /// Name of the upstream that validated the token.
    pub upstream: Arc<str>,
    /// `iss` of the subject token (or the upstream's issuer for opaque tokens).
    pub issuer: Arc<str>,
    pub subject: Box<str>,
    /// When the subject token stops being valid, when anybody told us.
    pub expires_at: Option<UnixTime>,
    /// Scopes the subject token carries.
    #[serde(default)]
    pub scopes: Box<[Box<str>]>,
    /// Retained claims: the configured identity claims plus `auth_time`, `acr`, `amr`, `act`,
    /// `may_act` when present.
    #[serde(default)]
    pub claims: Map<String, Value>,
}

/// Claims kept whatever the configuration says, for RFC 9068 §2.2.1 and RFC 8693 §4.
const ALWAYS_RETAINED_CLAIMS: &[&str] = &["auth_time", "acr", "amr", "act", "may_act"];

impl ValidatedIdentity {
    pub fn scope_set(&self) -> ScopeSet {
        ScopeSet::from_values(self.scopes.iter().map(AsRef::as_ref))
    }

    pub fn is_expired_at(&self, now: UnixTime) -> bool {
        self.expires_at.is_some_and(|exp| exp <= now)
    }
}

/// Scopes as upstreams write them: a space-delimited `scope` string (RFC 8693 §4.2, RFC 7662)
/// or an `scp` array (Okta, Azure AD).
pub fn scopes_from_claims(claims: &Map<String, Value>) -> Box<[Box<str>]> {
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(text)), _) => text.split(' ').filter(|s| !s.is_empty()).map(Box::from).collect(),
        (_, Some(Value::Array(items))) => items.iter().filter_map(Value::as_str).map(Box::from).collect(),
        (_, Some(Value::String(text))) => text.split(' ').filter(|s| !s.is_empty()).map(Box::from).collect(),
        _ => Box::default(),
    }
}

/// Keeps the configured claims and the always-retained ones; drops everything else.
pub fn retain_claims(claims: &Map<String, Value>, configured: &[String]) -> Map<String, Value> {
    claims
        .iter()
        .filter(|(name, _)| configured.iter().any(|c| c == *name) || ALWAYS_RETAINED_CLAIMS.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}
