//! Minted tokens handed out again. Signing dominates a cache-hit exchange, so a token minted
//! for the same subject token, client, audience and scope is reused while at least half of its
//! life is left. The subject is still resolved and the policy still evaluated on every request:
//! only the signature is saved, never a decision.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::UnixTime;
use crate::vocabulary::{Audience, TokenDigest, ValidatedIdentity};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReuseKey {
    pub subject: TokenDigest,
    pub client_id: String,
    pub audience: Vec<Audience>,
    pub scope: String,
}

#[derive(Debug)]
pub struct Minted {
    pub access_token: String,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    /// The identity the token was minted from; a changed identity is never served stale.
    pub identity: ValidatedIdentity,
}

impl Minted {
    fn is_reusable_for(&self, identity: &ValidatedIdentity, now: UnixTime) -> bool {
        let half_life = self.issued_at.until(self.expires_at) / 2;
        now >= self.issued_at && now < self.issued_at + half_life && self.identity == *identity
    }
}

pub struct MintedTokens {
    tokens: moka::future::Cache<ReuseKey, Arc<Minted>>,
}

impl MintedTokens {
    pub fn new(max_entries: u64, ttl: Duration) -> Self {
        Self { tokens: moka::future::Cache::builder().max_capacity(max_entries).time_to_live(ttl / 2).build() }
    }

    pub async fn reusable(&self, key: &ReuseKey, identity: &ValidatedIdentity, now: UnixTime) -> Option<Arc<Minted>> {
        self.tokens.get(key).await.filter(|minted| minted.is_reusable_for(identity, now))
    }

    pub async fn remember(&self, key: ReuseKey, minted: Minted) {
        self.tokens.insert(key, Arc::new(minted)).await;
    }
}
