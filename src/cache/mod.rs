//! Storage for verdicts on tokens: what upstreams vouched for, keyed by a digest of the token,
//! kept no longer than the token lives. One trait, [`IdentityCache`], with an in-process
//! implementation (the default, and L1) and a Redis one (L2, shared by replicas). Deciding
//! what to store, and for how long, is `identity`'s business.

mod bounds;
mod connection;
mod digest_hashing;
mod entry;
mod keys;
mod memory;
mod packed;
mod records;
mod redis;
mod topology;

use async_trait::async_trait;

use std::time::Duration;

pub use bounds::MemoryBounds;
pub use digest_hashing::DigestHashing;
pub use entry::{CacheEntry, CacheKey, Invalidation, Verdict, subject_digest};
pub use keys::RedisKeys;
pub use memory::MemoryCache;
pub use packed::PackedIdentity;
pub use redis::{BACKOFF, RedisCache, RedisSettings, RedisTopology};
pub use topology::{TopologyError, check as check_redis_topology};

use crate::clock::UnixTime;
use crate::vocabulary::TokenDigest;

/// What a backend knows of one token under one upstream.
#[derive(Debug, Default)]
pub struct Lookup {
    pub entry: Option<CacheEntry>,
    pub revoked_until: Option<UnixTime>,
}

/// Whether this replica may ask the upstream about a token nobody has a verdict on yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Ours until it expires or we give it back: ask the upstream, share the answer.
    Granted,
    /// Another replica is asking: wait for its answer.
    HeldElsewhere,
    /// Not asked for, because something was found under the key.
    NotAsked,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache backend unavailable: {0}")]
    Unavailable(String),
    #[error("Redis call failed")]
    Redis(#[source] ::redis::RedisError),
}

/// A store of cache entries. Entries are written with their own deadline
/// ([`CacheEntry::valid_until`]) and readers check it again, so a backend that keeps an entry
/// longer (a skewed Redis clock, a lost expiry) can never extend a token's life.
#[async_trait]
pub trait IdentityCache: Send + Sync {
    async fn get(&self, key: &CacheKey) -> Result<Option<CacheEntry>, CacheError>;

    /// Stores `entry` until its `valid_until`, as seen at `now`; an entry already past it is
    /// not stored.
    async fn put(&self, key: &CacheKey, entry: &CacheEntry, now: UnixTime) -> Result<(), CacheError>;

    async fn remove(&self, keys: &[CacheKey]) -> Result<(), CacheError>;

    /// When the token behind `key` was first seen: `now` unless recorded earlier, remembered
    /// for `remember_for`.
    async fn first_seen(&self, key: &CacheKey, now: UnixTime, remember_for: Duration) -> Result<UnixTime, CacheError>;

    /// Records that the token with `digest` is revoked until `until`. Kept apart from the
    /// entries, so no cache write, however late, can undo it.
    async fn revoke(&self, digest: &TokenDigest, until: UnixTime, now: UnixTime) -> Result<(), CacheError>;

    /// Until when the token with `digest` is revoked, if it is at `now`.
    async fn revoked_until(&self, digest: &TokenDigest, now: UnixTime) -> Result<Option<UnixTime>, CacheError>;

    async fn is_revoked(&self, digest: &TokenDigest, now: UnixTime) -> Result<bool, CacheError> {
        Ok(self.revoked_until(digest, now).await?.is_some())
    }

    /// The entry for `key` and whether its token is revoked, in one trip where the backend can.
    async fn lookup(&self, key: &CacheKey, now: UnixTime) -> Result<Lookup, CacheError> {
        let revoked_until = self.revoked_until(key.digest(), now).await?;
        Ok(Lookup { entry: self.get(key).await?, revoked_until })
    }

    /// [`Self::lookup`], and when nothing is stored under `key`, the lease on asking the
    /// upstream about it for `hold`, unless another replica (another `lessee`) holds it: in one
    /// trip where the backend can. A cache shared with nobody always grants it.
    async fn lookup_or_lease(
        &self,
        key: &CacheKey,
        _lessee: &str,
        _hold: Duration,
        now: UnixTime,
    ) -> Result<(Lookup, Lease), CacheError> {
        let lookup = self.lookup(key, now).await?;
        let lease =
            if lookup.entry.is_some() || lookup.revoked_until.is_some() { Lease::NotAsked } else { Lease::Granted };
        Ok((lookup, lease))
    }

    /// The lease alone, for when something stale was found under `key`.
    async fn take_lease(&self, _key: &CacheKey, _lessee: &str, _hold: Duration) -> Result<Lease, CacheError> {
        Ok(Lease::Granted)
    }

    /// Gives a lease back early (the upstream failed), so a waiting replica may try at once;
    /// a lease `lessee` no longer holds is left alone.
    async fn release_lease(&self, _key: &CacheKey, _lessee: &str) -> Result<(), CacheError> {
        Ok(())
    }

    /// Remembers until `until` that `client_id` exchanged the token with `digest`: RFC 7009
    /// §2.1 lets a client revoke only what was issued to it.
    async fn record_exchange(
        &self,
        digest: &TokenDigest,
        client_id: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> Result<(), CacheError>;

    /// Whether `client_id` exchanged the token with `digest`, as recorded until a time after `now`.
    async fn was_exchanged_by(&self, digest: &TokenDigest, client_id: &str, now: UnixTime) -> Result<bool, CacheError>;

    /// [`Self::put`] and [`Self::record_exchange`] together, in one trip where the backend can.
    async fn put_with_holder(
        &self,
        key: &CacheKey,
        entry: &CacheEntry,
        holder: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> Result<(), CacheError> {
        self.put(key, entry, now).await?;
        self.record_exchange(key.digest(), holder, until, now).await
    }

    /// Drops every verdict given by `upstream` (its settings changed); returns how many.
    async fn remove_upstream(&self, upstream: &str) -> Result<u64, CacheError>;

    /// Drops every entry of one subject (optionally of one issuer); returns how many.
    async fn remove_subject(&self, issuer: Option<&str>, subject: &str) -> Result<u64, CacheError>;

    /// Tells other replicas to drop what they hold in process; a no-op for a local cache.
    async fn publish(&self, _invalidation: &Invalidation) -> Result<(), CacheError> {
        Ok(())
    }

    /// Records `key` (a digest, never a raw secret) until `until`, unless it is already there:
    /// `true` for the first claim, `false` for every later one while it is kept. Replay caches
    /// (a client assertion's `jti`) use it; with Redis every replica sees the same claims.
    async fn claim_once(&self, key: &str, until: UnixTime, now: UnixTime) -> Result<bool, CacheError>;

    /// Whether the backend answers now.
    async fn is_healthy(&self) -> bool {
        true
    }
}
