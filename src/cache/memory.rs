use std::future::Future;
use std::hash::{BuildHasher, Hasher};
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

    /// Roughly the bytes one entry costs the process: moka's bookkeeping, the token's exchange
    /// record, the key, this value, the shared entry and what the entry holds on the heap.
    fn bytes(&self) -> usize {
        const ARC_HEADER: usize = 2 * size_of::<usize>();
        let own = size_of::<CacheKey>() + size_of::<Self>() + ARC_HEADER + self.entry.heap_bytes();
        MOKA_ENTRY_OVERHEAD + EXCHANGE_RECORD + own
    }
}

/// What an entry costs beyond its key and value: moka's `Arc`ed key and value entry, its
/// deque and timer-wheel nodes and hash-table slot, and the allocator's own overhead on each of
/// those allocations. moka does not say; calibrated against `bench/memory.sh`, whose resident
/// bytes per entry the estimates should roughly match.
pub const MOKA_ENTRY_OVERHEAD: usize = 350;

/// An identity comes with the record of who exchanged its token (`exchanged`, bounded by
/// count only): counted with the identity, so that `max_bytes` follows the process's memory.
const EXCHANGE_RECORD: usize = 300;

/// Hashes keys that are SHA-256 digests (of tokens, under an upstream or with a client id) by
/// folding their bytes with one multiply per word, instead of SipHash. Flooding one bucket
/// (HashDoS) would take tokens whose digests collide in these bits: the tokens are chosen by
/// whoever presents them, but SHA-256's output is uniform, so choosing it is a preimage attack.
/// Not for keys an attacker controls directly (`claims` keeps SipHash).
#[derive(Debug, Clone, Copy, Default)]
pub struct DigestHashing;

impl BuildHasher for DigestHashing {
    type Hasher = DigestHasher;

    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

#[derive(Debug)]
pub struct DigestHasher(u64);

impl DigestHasher {
    fn mix(&mut self, word: u64) {
        // An odd multiplier is a bijection on u64, so uniform input stays uniform.
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0_u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.mix(u64::from(byte));
    }

    fn write_u64(&mut self, word: u64) {
        self.mix(word);
    }

    fn write_usize(&mut self, word: usize) {
        self.mix(word as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// How much the in-process cache may hold: both bounds apply. Every entry weighs its estimated
/// bytes, but at least `max_bytes / max_entries`, so neither more than `max_entries` entries nor
/// more than `max_bytes` are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBounds {
    pub max_entries: u64,
    pub max_bytes: u64,
}

impl MemoryBounds {
    /// The weight moka counts for an entry of `bytes` (moka weighs in `u32`).
    pub fn weight(&self, bytes: usize) -> u32 {
        let floor = self.max_bytes.div_ceil(self.max_entries.max(1));
        u32::try_from((bytes as u64).max(floor)).unwrap_or(u32::MAX)
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

/// The in-process cache: entries bounded by count and by bytes, the small fixed-size records
/// beside them (first sight, revocations, exchanges, claims) by count. Cloning shares it.
#[derive(Clone)]
pub struct MemoryCache {
    entries: Cache<CacheKey, Stored, DigestHashing>,
    first_seen: Cache<CacheKey, (UnixTime, Duration), DigestHashing>,
    /// Revoked token digests and until when.
    revoked: Cache<TokenDigest, (UnixTime, Duration), DigestHashing>,
    /// Which client exchanged which token, for RFC 7009 revocation rights.
    exchanged: Cache<(TokenDigest, Arc<str>), (UnixTime, Duration), DigestHashing>,
    /// One-time claims (`claim_once`) and until when.
    claims: Cache<Arc<str>, (UnixTime, Duration)>,
}

impl MemoryCache {
    /// A cache bounded by entry count alone.
    pub fn new(max_entries: u64) -> Self {
        Self::bounded(MemoryBounds { max_entries, max_bytes: max_entries.saturating_mul(4096) })
    }

    pub fn bounded(bounds: MemoryBounds) -> Self {
        let max_entries = bounds.max_entries;
        Self {
            entries: Cache::builder()
                .max_capacity(bounds.max_bytes)
                .weigher(move |_: &CacheKey, stored: &Stored| bounds.weight(stored.bytes()))
                .expire_after(KeepFor)
                .build_with_hasher(DigestHashing),
            first_seen: Cache::builder()
                .max_capacity(max_entries)
                .expire_after(KeepFor)
                .build_with_hasher(DigestHashing),
            revoked: Cache::builder().max_capacity(max_entries).expire_after(KeepFor).build_with_hasher(DigestHashing),
            exchanged: Cache::builder()
                .max_capacity(max_entries)
                .expire_after(KeepFor)
                .build_with_hasher(DigestHashing),
            claims: Cache::builder().max_capacity(max_entries).expire_after(KeepFor).build(),
        }
    }

    /// The entries' weight (estimated bytes, see [`MemoryBounds`]) and count, after pending
    /// writes and evictions are applied.
    pub async fn weighed_size(&self) -> (u64, u64) {
        self.entries.run_pending_tasks().await;
        (self.entries.weighted_size(), self.entries.entry_count())
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
            cache.insert(key, entry(&format!("{n:0>subject_len$}")), NOW).await;
        }
    }

    #[tokio::test]
    async fn the_identity_cache_is_bounded_by_bytes() {
        let bounds = MemoryBounds { max_entries: 100_000, max_bytes: 256 * 1024 };
        let cache = MemoryCache::bounded(bounds);

        fill(&cache, 2_000, 1_000).await;

        let (bytes, entries) = cache.weighed_size().await;
        assert!(bytes <= bounds.max_bytes, "{bytes} bytes held");
        assert!(entries > 0 && entries < 2_000, "{entries} entries held: nothing was evicted");
    }

    #[tokio::test]
    async fn max_entries_still_bounds_small_entries() {
        let cache = MemoryCache::bounded(MemoryBounds { max_entries: 100, max_bytes: 64 * 1024 * 1024 });

        fill(&cache, 1_000, 8).await;

        let (_, entries) = cache.weighed_size().await;
        assert!(entries <= 100, "{entries} entries held");
    }

    #[test]
    fn an_entry_weighs_its_estimated_bytes_but_at_least_its_share_of_the_entry_count() {
        let bounds = MemoryBounds { max_entries: 1_000, max_bytes: 1_000_000 };

        assert_eq!(bounds.weight(5_000), 5_000);
        assert_eq!(bounds.weight(10), 1_000);
    }

    #[test]
    fn digests_that_differ_in_any_word_hash_apart() {
        let hash = |token: &str| DigestHashing.hash_one(SubjectToken::new(token.into()).digest());
        let upstream: Arc<str> = "idp".into();
        let key_hash = |token: &str| {
            DigestHashing.hash_one(CacheKey::new(Arc::clone(&upstream), SubjectToken::new(token.into()).digest()))
        };

        assert_ne!(hash("a"), hash("b"));
        assert_eq!(key_hash("a"), hash("a"));
    }
}
