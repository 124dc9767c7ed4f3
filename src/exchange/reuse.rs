//! Minted tokens handed out again. Signing dominates a cache-hit exchange, so a token minted
//! for the same subject token, client, audience and scope is reused while at least half of its
//! life is left. The subject is still resolved and the policy still evaluated on every request:
//! only the signature is saved, never a decision.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::{DigestHashing, MemoryBounds, PackedIdentity};
use crate::clock::UnixTime;
use crate::vocabulary::{Audience, TokenDigest, ValidatedIdentity};

/// What a moka entry costs beyond its key and value: its `Arc`ed key and value entry, deque and
/// timer-wheel nodes, hash-table slot, and the allocator's overhead on each. moka does not say;
/// measured with `bench/memory.sh` (about 350 bytes).
const MOKA_ENTRY_OVERHEAD: usize = 350;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReuseKey {
    pub subject: TokenDigest,
    pub client_id: String,
    pub audience: Vec<Audience>,
    pub scope: String,
}

/// The subject token's digest alone, for `DigestHashing`: the few grants of one token are
/// told apart by `Eq`.
impl std::hash::Hash for ReuseKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.subject.hash(state);
    }
}

impl ReuseKey {
    fn heap_bytes(&self) -> usize {
        let audiences = self.audience.iter().map(|audience| size_of::<Audience>() + audience.as_str().len());
        self.client_id.len() + audiences.sum::<usize>() + self.scope.len()
    }
}

#[derive(Debug)]
pub struct Minted {
    /// Boxed: a JWS of several hundred bytes, kept without spare capacity.
    pub access_token: Box<str>,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    /// The identity the token was minted from, packed: a changed identity is never served
    /// stale, and a kept token does not cost a copy of the identity.
    pub identity: PackedIdentity,
}

impl Minted {
    fn is_reusable_for(&self, identity: &ValidatedIdentity, now: UnixTime) -> bool {
        let half_life = self.issued_at.until(self.expires_at) / 2;
        now >= self.issued_at && now < self.issued_at + half_life && self.identity.is_of(identity)
    }

    /// Roughly the bytes one remembered token costs, moka's bookkeeping included.
    fn bytes(key: &ReuseKey, minted: &Self) -> usize {
        const ARC_HEADER: usize = 2 * size_of::<usize>();
        let key_bytes = size_of::<ReuseKey>() + key.heap_bytes();
        let value_bytes = size_of::<Arc<Self>>() + ARC_HEADER + size_of::<Self>() + minted.access_token.len();
        MOKA_ENTRY_OVERHEAD + key_bytes + value_bytes + minted.identity.heap_bytes()
    }
}

pub struct MintedTokens {
    tokens: moka::future::Cache<ReuseKey, Arc<Minted>, DigestHashing>,
}

impl MintedTokens {
    /// Bounded like the identity cache: by count and by estimated bytes, both.
    pub fn new(bounds: MemoryBounds, ttl: Duration) -> Self {
        let tokens = moka::future::Cache::builder()
            .max_capacity(bounds.max_bytes)
            .weigher(move |key: &ReuseKey, minted: &Arc<Minted>| bounds.weight(Minted::bytes(key, minted)))
            .time_to_live(ttl / 2)
            .build_with_hasher(DigestHashing);
        Self { tokens }
    }

    pub async fn reusable(&self, key: &ReuseKey, identity: &ValidatedIdentity, now: UnixTime) -> Option<Arc<Minted>> {
        self.tokens.get(key).await.filter(|minted| minted.is_reusable_for(identity, now))
    }

    pub async fn remember(&self, key: ReuseKey, minted: Minted) {
        self.tokens.insert(key, Arc::new(minted)).await;
    }
}
