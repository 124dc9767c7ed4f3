//! The in-process cache (L1, and the whole cache without Redis): per token one compact record
//! (`records.rs`), and beside it the few small records some tokens have.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::future::Cache;

use super::bounds::MemoryBounds;
use super::digest_hashing::DigestHashing;
use super::records::{EvictedHolder, HolderRecorded, Records};
use super::{CacheEntry, CacheError, CacheKey, IdentityCache, subject_digest};
use crate::clock::UnixTime;
use crate::vocabulary::TokenDigest;

/// Keeps a `(until, keep_for)` record for `keep_for`, however it was written.
struct KeepFor;

impl<K> Expiry<K, (UnixTime, Duration)> for KeepFor {
    fn expire_after_create(&self, _: &K, value: &(UnixTime, Duration), _: Instant) -> Option<Duration> {
        Some(value.1)
    }

    fn expire_after_update(
        &self,
        _: &K,
        value: &(UnixTime, Duration),
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.1)
    }
}

/// A cache of `(until, keep_for)` records, each kept for its `keep_for`.
fn kept_for_their_time<K, S>(max_entries: u64, hashing: S) -> Cache<K, (UnixTime, Duration), S>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    Cache::builder().max_capacity(max_entries).expire_after(KeepFor).build_with_hasher(hashing)
}

/// The in-process cache: per token, one compact record of its verdict and of the client that
/// exchanged it (`records.rs`), bounded by count and by bytes; beside it, the small records
/// that few tokens have (first sight, revocations, further holders, claims), bounded by count.
/// Cloning shares it.
#[derive(Clone)]
pub struct MemoryCache {
    records: Arc<Records>,
    first_seen: Cache<CacheKey, (UnixTime, Duration), DigestHashing>,
    /// Revoked token digests and until when.
    revoked: Cache<TokenDigest, (UnixTime, Duration), DigestHashing>,
    /// Clients that exchanged a token after another one did (the record names the first), for
    /// RFC 7009 revocation rights.
    more_holders: Cache<(TokenDigest, Arc<str>), (UnixTime, Duration), DigestHashing>,
    /// One-time claims (`claim_once`) and until when.
    claims: Cache<Arc<str>, (UnixTime, Duration), std::hash::RandomState>,
}

impl MemoryCache {
    /// A cache bounded by entry count alone.
    pub fn new(max_entries: u64) -> Self {
        Self::bounded(MemoryBounds { max_entries, max_bytes: max_entries.saturating_mul(4096) })
    }

    pub fn bounded(bounds: MemoryBounds) -> Self {
        let max_entries = bounds.max_entries;
        Self {
            records: Arc::new(Records::new(bounds)),
            first_seen: kept_for_their_time(max_entries, DigestHashing),
            revoked: kept_for_their_time(max_entries, DigestHashing),
            more_holders: kept_for_their_time(max_entries, DigestHashing),
            claims: kept_for_their_time(max_entries, std::hash::RandomState::new()),
        }
    }

    /// The records' estimated bytes and their number.
    pub fn weighed_size(&self) -> (u64, u64) {
        self.records.size()
    }

    /// The entry for `key` if it is usable at `now`; an unusable one is dropped.
    pub fn get_usable(&self, key: &CacheKey, now: UnixTime) -> Option<CacheEntry> {
        self.records.get_usable(key, now)
    }

    /// Keeps `entry` until its deadline; one already past it is not kept.
    pub async fn insert(&self, key: &CacheKey, entry: &CacheEntry, now: UnixTime) {
        if !entry.time_left(now).is_zero() {
            let evicted = self.records.insert(key, entry, now);
            self.keep_holders(evicted, now).await;
        }
    }

    /// Who exchanged the tokens of evicted records: kept beside them, so that room made for
    /// new verdicts never costs a client its right to revoke (RFC 7009 §2.1).
    async fn keep_holders(&self, evicted: Vec<EvictedHolder>, now: UnixTime) {
        for EvictedHolder { digest, client_id, until } in evicted {
            self.more_holders.insert((digest, client_id), (until, now.until(until))).await;
        }
    }

    /// Forgets every entry (never a revocation, nor who exchanged a token): after the
    /// invalidation channel was lost, anything held may have been revoked or purged elsewhere.
    pub fn drop_all_entries(&self) {
        self.records.forget_where(|_, _| true);
    }

    pub fn drop_keys(&self, keys: &[CacheKey]) {
        for key in keys {
            self.records.forget(key);
        }
    }

    /// Drops every entry whose identity has this subject digest (and issuer, when given);
    /// returns how many.
    pub fn drop_subject(&self, issuer: Option<&str>, subject_digest_hex: &str) -> u64 {
        self.records.forget_where(|_, packed| packed.is_of_subject(issuer, subject_digest_hex))
    }
}

#[async_trait]
impl IdentityCache for MemoryCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<CacheEntry>, CacheError> {
        Ok(self.records.get(key))
    }

    async fn put(&self, key: &CacheKey, entry: &CacheEntry, now: UnixTime) -> Result<(), CacheError> {
        self.insert(key, entry, now).await;
        Ok(())
    }

    async fn remove(&self, keys: &[CacheKey]) -> Result<(), CacheError> {
        self.drop_keys(keys);
        Ok(())
    }

    async fn first_seen(&self, key: &CacheKey, now: UnixTime, remember_for: Duration) -> Result<UnixTime, CacheError> {
        Ok(self.first_seen.get_with(key.clone(), async move { (now, remember_for) }).await.0)
    }

    async fn claim_once(&self, key: &str, until: UnixTime, now: UnixTime) -> Result<bool, CacheError> {
        // Insert-if-absent is atomic per key: of concurrent claims, exactly one inserts.
        let entry = self.claims.entry(Arc::from(key)).or_insert_with(async move { (until, now.until(until)) }).await;
        Ok(entry.is_fresh())
    }

    async fn revoke(&self, digest: &TokenDigest, until: UnixTime, now: UnixTime) -> Result<(), CacheError> {
        self.revoked.insert(*digest, (until, now.until(until))).await;
        Ok(())
    }

    async fn revoked_until(&self, digest: &TokenDigest, now: UnixTime) -> Result<Option<UnixTime>, CacheError> {
        Ok(self.revoked.get(digest).await.map(|(until, _)| until).filter(|until| *until > now))
    }

    async fn record_exchange(
        &self,
        digest: &TokenDigest,
        client_id: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> Result<(), CacheError> {
        match self.records.record_holder(digest, client_id, until, now) {
            HolderRecorded::InRecord(evicted) => self.keep_holders(evicted, now).await,
            HolderRecorded::RecordNamesAnother => {
                self.more_holders.insert((*digest, client_id.into()), (until, now.until(until))).await;
            }
        }
        Ok(())
    }

    async fn was_exchanged_by(&self, digest: &TokenDigest, client_id: &str, now: UnixTime) -> Result<bool, CacheError> {
        Ok(self.records.is_holder(digest, client_id, now)
            || self.more_holders.contains_key(&(*digest, client_id.into())))
    }

    async fn remove_upstream(&self, upstream: &str) -> Result<u64, CacheError> {
        Ok(self.records.forget_where(|held_by, _| &**held_by == upstream))
    }

    async fn remove_subject(&self, issuer: Option<&str>, subject: &str) -> Result<u64, CacheError> {
        Ok(self.drop_subject(issuer, &subject_digest(subject)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocabulary::{SubjectToken, ValidatedIdentity};

    const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

    fn entry(subject: &str) -> CacheEntry {
        let identity = ValidatedIdentity {
            upstream: "idp".into(),
            issuer: "https://idp.example".into(),
            subject: subject.into(),
            expires_at: Some(NOW + Duration::from_secs(600)),
            scopes: Box::new(["read".into(), "write".into()]),
            claims: serde_json::Map::new(),
        };
        CacheEntry::valid(identity, NOW + Duration::from_secs(600))
    }

    async fn fill(cache: &MemoryCache, count: usize, subject_len: usize) {
        let upstream: Arc<str> = "idp".into();
        for n in 0..count {
            let key = CacheKey::new(Arc::clone(&upstream), SubjectToken::new(format!("token-{n}")).digest());
            cache.insert(&key, &entry(&format!("{n:0>subject_len$}")), NOW).await;
        }
    }

    #[tokio::test]
    async fn the_identity_cache_is_bounded_by_bytes() {
        let bounds = MemoryBounds { max_entries: 100_000, max_bytes: 256 * 1024 };
        let cache = MemoryCache::bounded(bounds);

        fill(&cache, 2_000, 1_000).await;

        let (bytes, entries) = cache.weighed_size();
        assert!(bytes <= bounds.max_bytes, "{bytes} bytes held");
        assert!(entries > 0 && entries < 2_000, "{entries} entries held: nothing was evicted");
    }

    #[tokio::test]
    async fn max_entries_still_bounds_small_entries() {
        let cache = MemoryCache::bounded(MemoryBounds { max_entries: 100, max_bytes: 64 * 1024 * 1024 });

        fill(&cache, 1_000, 8).await;

        let (_, entries) = cache.weighed_size();
        assert!(entries <= 100, "{entries} entries held");
    }

    #[tokio::test]
    async fn evicted_records_keep_who_exchanged_their_tokens() {
        let cache = MemoryCache::bounded(MemoryBounds { max_entries: 10, max_bytes: 64 * 1024 * 1024 });
        let digest = SubjectToken::new("token-0".into()).digest();
        cache.record_exchange(&digest, "gateway", NOW + Duration::from_secs(3600), NOW).await.unwrap_or_default();

        fill(&cache, 100, 8).await;

        let (_, records) = cache.weighed_size();
        assert!(records <= 10, "{records} records held");
        assert!(matches!(cache.was_exchanged_by(&digest, "gateway", NOW).await, Ok(true)));
    }
}
