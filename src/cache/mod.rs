//! The identity cache: what upstreams vouched for, keyed by a digest of the token, kept no
//! longer than the token lives. One trait, [`IdentityCache`], with an in-process
//! implementation (the default, and L1) and a Redis one (L2, shared by replicas);
//! [`IdentityResolver`] layers them, coalesces concurrent misses and asks the upstream.

mod entry;
mod memory;
mod redis;
mod resolver;

use async_trait::async_trait;

pub use entry::{CacheEntry, CacheKey, Invalidation, Verdict, is_entry_of_subject, subject_digest};
pub use memory::MemoryCache;
pub use redis::RedisCache;
pub use resolver::{CachePolicy, IdentityResolver};

use crate::clock::UnixTime;
use crate::subject::TokenDigest;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache backend unavailable: {0}")]
    Unavailable(String),
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
    /// for `remember_for` seconds.
    async fn first_seen(&self, key: &CacheKey, now: UnixTime, remember_for: i64) -> Result<UnixTime, CacheError>;

    /// Records that the token with `digest` is revoked until `until`. Kept apart from the
    /// entries, so no cache write, however late, can undo it.
    async fn revoke(&self, digest: &TokenDigest, until: UnixTime, now: UnixTime) -> Result<(), CacheError>;

    async fn is_revoked(&self, digest: &TokenDigest, now: UnixTime) -> Result<bool, CacheError>;

    /// Drops every entry of one subject (optionally of one issuer); returns how many.
    async fn remove_subject(&self, issuer: Option<&str>, subject: &str) -> Result<u64, CacheError>;

    /// Tells other replicas to drop what they hold in process; a no-op for a local cache.
    async fn publish(&self, _invalidation: &Invalidation) -> Result<(), CacheError> {
        Ok(())
    }

    /// Whether the backend answers now.
    async fn is_healthy(&self) -> bool {
        true
    }
}
