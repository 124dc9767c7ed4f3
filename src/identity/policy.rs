//! How long a verdict is kept.

use std::time::Duration;

use crate::cache::CacheEntry;
use crate::clock::UnixTime;
use crate::vocabulary::ValidatedIdentity;

#[derive(Debug, Clone, Copy)]
pub struct CachePolicy {
    /// The longest any verdict is remembered.
    pub max_ttl: Duration,
    /// How long a definitive rejection is remembered.
    pub negative_ttl: Duration,
    /// Subtracted from a token's expiry, so no entry outlives the token on a skewed clock.
    pub expiry_leeway: Duration,
    /// How long a replica may take to ask an upstream about one token before another one
    /// takes over: one upstream call, connection included, and a margin.
    pub upstream_lease: Duration,
}

impl CachePolicy {
    /// Valid until min(expiry − leeway, how long the answer may be trusted, `max_ttl`).
    pub fn valid(&self, identity: ValidatedIdentity, trust_for: Option<Duration>, now: UnixTime) -> CacheEntry {
        let mut valid_until = now + self.max_ttl;
        if let Some(exp) = identity.expires_at {
            valid_until = valid_until.min(exp - self.expiry_leeway);
        }
        if let Some(trust_for) = trust_for {
            valid_until = valid_until.min(now + trust_for);
        }
        CacheEntry::valid(identity, valid_until)
    }

    pub fn rejected(&self, reason: impl Into<String>, now: UnixTime) -> CacheEntry {
        CacheEntry::rejected(reason, now + self.negative_ttl)
    }
}
