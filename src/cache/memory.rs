use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::future::Cache;

use super::entry::is_entry_of_subject;
use super::{CacheEntry, CacheError, CacheKey, IdentityCache, subject_digest};
use crate::clock::UnixTime;
use crate::vocabulary::TokenDigest;

/// An entry and how long the store keeps it, fixed when it is written.
#[derive(Debug, Clone)]
struct Stored {
    entry: Arc<CacheEntry>,
    keep_for: Duration,
}

impl Stored {
    fn new(entry: CacheEntry, now: UnixTime) -> Self {
        let keep_for = entry.time_left(now);
        Self { entry: Arc::new(entry), keep_for }
    }
}

struct KeepFor;

impl Expiry<CacheKey, Stored> for KeepFor {
    fn expire_after_create(&self, _: &CacheKey, stored: &Stored, _: Instant) -> Option<Duration> {
        Some(stored.keep_for)
    }

    /// A replaced entry lives as long as the new one says, not what was left of the old one.
    fn expire_after_update(&self, _: &CacheKey, stored: &Stored, _: Instant, _: Option<Duration>) -> Option<Duration> {
        Some(stored.keep_for)
    }
}

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

/// The in-process cache, bounded by entry count. Cloning shares it.
#[derive(Clone)]
pub struct MemoryCache {
    entries: Cache<CacheKey, Stored>,
    first_seen: Cache<CacheKey, (UnixTime, Duration)>,
    /// Revoked token digests and until when.
    revoked: Cache<TokenDigest, (UnixTime, Duration)>,
    /// Which client exchanged which token, for RFC 7009 revocation rights.
    exchanged: Cache<(TokenDigest, Arc<str>), (UnixTime, Duration)>,
    /// One-time claims (`claim_once`) and until when.
    claims: Cache<Arc<str>, (UnixTime, Duration)>,
}

impl MemoryCache {
    pub fn new(max_entries: u64) -> Self {
        Self {
            entries: Cache::builder().max_capacity(max_entries).expire_after(KeepFor).build(),
            first_seen: Cache::builder().max_capacity(max_entries).expire_after(KeepFor).build(),
            revoked: Cache::builder().max_capacity(max_entries).expire_after(KeepFor).build(),
            exchanged: Cache::builder().max_capacity(max_entries).expire_after(KeepFor).build(),
            claims: Cache::builder().max_capacity(max_entries).expire_after(KeepFor).build(),
        }
    }

    /// The entry for `key`, or the one `load` produces. Concurrent callers for the same key
    /// share one `load`: the upstream is asked once however many requests arrive together.
    pub async fn get_or_load<F, E>(&self, key: CacheKey, now: UnixTime, load: F) -> Result<Arc<CacheEntry>, E>
    where
        F: Future<Output = Result<CacheEntry, E>>,
        E: Clone + Send + Sync + 'static,
    {
        self.entries
            .try_get_with(key, async move { load.await.map(|entry| Stored::new(entry, now)) })
            .await
            .map(|stored| stored.entry)
            .map_err(|shared: Arc<E>| (*shared).clone())
    }

    /// The entry for `key` if it is usable at `now`; an unusable one is dropped.
    pub async fn get_usable(&self, key: &CacheKey, now: UnixTime) -> Option<Arc<CacheEntry>> {
        let stored = self.entries.get(key).await?;
        if stored.entry.is_usable_at(now) {
            Some(stored.entry)
        } else {
            self.entries.invalidate(key).await;
            None
        }
    }

    pub async fn insert(&self, key: CacheKey, entry: CacheEntry, now: UnixTime) {
        self.entries.insert(key, Stored::new(entry, now)).await;
    }

    /// Forgets every entry (never a revocation): after the invalidation channel was lost,
    /// anything held may have been revoked or purged elsewhere in the meantime.
    pub fn drop_all_entries(&self) {
        self.entries.invalidate_all();
    }

    pub async fn drop_keys(&self, keys: &[CacheKey]) {
        for key in keys {
            self.entries.invalidate(key).await;
        }
    }

    /// Drops every entry whose identity has this subject digest (and issuer, when given);
    /// returns how many. A full scan: purges are rare, lookups are not.
    pub async fn drop_subject(&self, issuer: Option<&str>, subject_digest_hex: &str) -> u64 {
        let doomed: Vec<CacheKey> = self
            .entries
            .iter()
            .filter(|(_, stored)| is_entry_of_subject(&stored.entry, issuer, subject_digest_hex))
            .map(|(key, _)| (*key).clone())
            .collect();
        self.drop_keys(&doomed).await;
        doomed.len() as u64
    }
}

#[async_trait]
impl IdentityCache for MemoryCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<CacheEntry>, CacheError> {
        Ok(self.entries.get(key).await.map(|stored| (*stored.entry).clone()))
    }

    async fn put(&self, key: &CacheKey, entry: &CacheEntry, now: UnixTime) -> Result<(), CacheError> {
        if !entry.time_left(now).is_zero() {
            self.insert(key.clone(), entry.clone(), now).await;
        }
        Ok(())
    }

    async fn remove(&self, keys: &[CacheKey]) -> Result<(), CacheError> {
        self.drop_keys(keys).await;
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
        self.exchanged.insert((*digest, client_id.into()), (until, now.until(until))).await;
        Ok(())
    }

    async fn was_exchanged_by(&self, digest: &TokenDigest, client_id: &str) -> Result<bool, CacheError> {
        Ok(self.exchanged.contains_key(&(*digest, client_id.into())))
    }

    async fn remove_upstream(&self, upstream: &str) -> Result<u64, CacheError> {
        let doomed: Vec<CacheKey> =
            self.entries.iter().filter(|(key, _)| key.upstream() == upstream).map(|(key, _)| (*key).clone()).collect();
        self.drop_keys(&doomed).await;
        Ok(doomed.len() as u64)
    }

    async fn remove_subject(&self, issuer: Option<&str>, subject: &str) -> Result<u64, CacheError> {
        Ok(self.drop_subject(issuer, &subject_digest(subject)).await)
    }
}
