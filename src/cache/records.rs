//! The in-process record of each token: its verdict (packed) and the client that exchanged it,
//! in one slot keyed by the token's digest. A general-purpose cache (moka) spends about 350
//! bytes of bookkeeping on every entry, and a token used to have two (#6 asks for at most 512
//! bytes per identity); here a slot is a key, a few pointers and a deadline.
//!
//! Records live in shards, each an insertion-ordered map behind its own lock. A clock hand
//! sweeps each shard: a write first drops a few records past their deadlines, then, while the
//! shard is over its share of the bounds, evicts the records the hand finds not used since
//! it last passed. Readers always check deadlines against the caller's clock, so nothing is
//! used late even before the hand reaches it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use indexmap::IndexMap;

use super::bounds::MemoryBounds;
use super::digest_hashing::DigestHashing;
use super::entry::{CacheEntry, CacheKey};
use super::packed::PackedEntry;
use crate::clock::UnixTime;
use crate::vocabulary::TokenDigest;

/// What a slot costs beyond its packed bytes: the map's entry (hash, digest, record), its
/// index, the spare room of both as they grow by doubling, and the allocator's overhead on the
/// packed bytes. Calibrated against `bench/memory.sh`.
pub const SLOT_BYTES: u64 = 224;

/// Records looked at for expiry on every write, so dead ones go although nothing is evicted.
const SWEEP_PER_WRITE: usize = 2;

/// Distinct client ids interned at most: they are the registered clients, so a few.
const MAX_INTERNED_CLIENTS: usize = 4096;

pub struct Records {
    shards: Box<[Mutex<Shard>]>,
    per_shard: Limits,
    /// One `Arc` per client id, shared by every record that names it.
    clients: Mutex<HashSet<Arc<str>>>,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    count: usize,
    bytes: u64,
}

#[derive(Default)]
struct Shard {
    map: IndexMap<TokenDigest, Record, DigestHashing>,
    hand: usize,
    bytes: u64,
}

#[derive(Default)]
struct Record {
    /// The verdict of the upstream that judged the token; nearly always the only one.
    verdict: Option<Held>,
    /// Verdicts of further upstreams on the same token (routed differently for some clients):
    /// each upstream's verdict stands on its own, and a rejection by one never answers for
    /// another.
    #[expect(clippy::box_collection, reason = "one word in every record, rather than a Vec's three")]
    elsewhere: Option<Box<Vec<Held>>>,
    holder: Option<Holder>,
    /// Used since the hand last passed: spared once.
    referenced: bool,
}

struct Held {
    upstream: Arc<str>,
    packed: PackedEntry,
}

struct Holder {
    client_id: Arc<str>,
    until: UnixTime,
}

/// Who exchanged the token of a record evicted to make room: for the caller to keep elsewhere.
#[derive(Debug)]
pub struct EvictedHolder {
    pub digest: TokenDigest,
    pub client_id: Arc<str>,
    pub until: UnixTime,
}

/// Where [`Records::record_holder`] left a holder.
#[must_use]
pub enum HolderRecorded {
    /// In the token's record; making room for it evicted these.
    InRecord(Vec<EvictedHolder>),
    /// The record names another client: the caller keeps this one elsewhere.
    RecordNamesAnother,
}

impl Record {
    fn bytes(&self) -> u64 {
        let elsewhere =
            self.elsewhere.as_ref().map_or(0, |more| size_of::<Vec<Held>>() + more.capacity() * size_of::<Held>());
        let packed: usize = self.verdicts().map(|held| held.packed.heap_bytes()).sum();
        SLOT_BYTES + (elsewhere + packed) as u64
    }

    fn is_empty(&self) -> bool {
        self.verdict.is_none() && self.holder.is_none()
    }

    fn verdicts(&self) -> impl Iterator<Item = &Held> {
        self.verdict.iter().chain(self.elsewhere.iter().flat_map(|more| more.iter()))
    }

    /// The verdict of `key`'s upstream on the token.
    fn verdict_for(&self, key: &CacheKey) -> Option<&Held> {
        self.verdicts().find(|held| &*held.upstream == key.upstream())
    }

    /// Keeps `held` in place of its upstream's earlier verdict.
    fn put(&mut self, held: Held) {
        match &mut self.verdict {
            Some(first) if first.upstream != held.upstream => {
                let more = self.elsewhere.get_or_insert_default();
                more.retain(|other| other.upstream != held.upstream);
                more.push(held);
            }
            first => *first = Some(held),
        }
    }

    /// Drops the verdicts `doomed` picks; returns how many.
    fn drop_verdicts(&mut self, mut doomed: impl FnMut(&Held) -> bool) -> u64 {
        let mut dropped = 0;
        if let Some(more) = &mut self.elsewhere {
            more.retain(|held| {
                let dropping = doomed(held);
                dropped += u64::from(dropping);
                !dropping
            });
        }
        if self.verdict.as_ref().is_some_and(&mut doomed) {
            self.verdict = None;
            dropped += 1;
        }
        if self.verdict.is_none() {
            self.verdict = self.elsewhere.as_mut().and_then(|more| more.pop());
        }
        if self.elsewhere.as_ref().is_some_and(|more| more.is_empty()) {
            self.elsewhere = None;
        }
        dropped
    }

    fn drop_expired(&mut self, now: UnixTime) {
        self.drop_verdicts(|held| held.packed.valid_until <= now);
        if self.holder.as_ref().is_some_and(|holder| holder.until <= now) {
            self.holder = None;
        }
    }
}

impl Records {
    pub fn new(bounds: MemoryBounds) -> Self {
        // Enough shards that two cores rarely wait on each other, few enough that a small
        // bound still leaves each shard room for many records.
        let shards = usize::try_from(bounds.max_entries / 1024).unwrap_or(usize::MAX).next_power_of_two().clamp(1, 64);
        let count = usize::try_from(bounds.max_entries).unwrap_or(usize::MAX) / shards;
        let per_shard = Limits { count: count.max(1), bytes: bounds.max_bytes / shards as u64 };
        Self { shards: (0..shards).map(|_| Mutex::default()).collect(), per_shard, clients: Mutex::default() }
    }

    fn shard(&self, digest: &TokenDigest) -> MutexGuard<'_, Shard> {
        // SHA-256 bytes are uniform; the map hashes the whole digest, this picks by its last byte.
        let index = usize::from(digest.as_bytes()[31]) % self.shards.len();
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The entry under `key`, whatever its deadline; marks it used.
    pub fn get(&self, key: &CacheKey) -> Option<CacheEntry> {
        let mut shard = self.shard(key.digest());
        let record = shard.map.get_mut(key.digest())?;
        let held = record.verdict_for(key)?;
        let entry = held.packed.unpack(&held.upstream);
        record.referenced = true;
        entry
    }

    /// The entry under `key` if it is usable at `now`; one that is not is dropped.
    pub fn get_usable(&self, key: &CacheKey, now: UnixTime) -> Option<CacheEntry> {
        let mut shard = self.shard(key.digest());
        let (index, _, record) = shard.map.get_full_mut(key.digest())?;
        let held = record.verdict_for(key)?;
        let entry = (now < held.packed.valid_until).then(|| held.packed.unpack(&held.upstream)).flatten();
        match entry {
            Some(entry) if entry.is_usable_at(now) => {
                record.referenced = true;
                Some(entry)
            }
            _ => {
                shard.forget_at(index, key);
                None
            }
        }
    }

    /// Keeps `entry` under `key` until its deadline, in place of the upstream's earlier verdict.
    /// Returns who exchanged the tokens of the records evicted to make room.
    pub fn insert(&self, key: &CacheKey, entry: &CacheEntry, now: UnixTime) -> Vec<EvictedHolder> {
        let held = Held { upstream: Arc::clone(key.upstream_arc()), packed: PackedEntry::pack(entry) };
        let mut shard = self.shard(key.digest());
        let index = shard.index_or_new(*key.digest());
        shard.change_at(index, |record| record.put(held));
        shard.make_room(now, self.per_shard)
    }

    /// Records that `client_id` exchanged the token until `until`, in place of a holder whose
    /// time has passed.
    pub fn record_holder(
        &self,
        digest: &TokenDigest,
        client_id: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> HolderRecorded {
        let client_id = self.intern(client_id);
        let mut shard = self.shard(digest);
        let index = shard.index_or_new(*digest);
        let mut in_record = true;
        shard.change_at(index, |record| match &mut record.holder {
            Some(holder) if holder.client_id == client_id => holder.until = holder.until.max(until),
            Some(holder) if holder.until > now => in_record = false,
            stale_or_none => *stale_or_none = Some(Holder { client_id, until }),
        });
        if in_record {
            HolderRecorded::InRecord(shard.make_room(now, self.per_shard))
        } else {
            HolderRecorded::RecordNamesAnother
        }
    }

    /// Whether the record names `client_id` as the token's holder at `now`.
    pub fn is_holder(&self, digest: &TokenDigest, client_id: &str, now: UnixTime) -> bool {
        let shard = self.shard(digest);
        shard
            .map
            .get(digest)
            .and_then(|record| record.holder.as_ref())
            .is_some_and(|holder| &*holder.client_id == client_id && holder.until > now)
    }

    pub fn forget(&self, key: &CacheKey) {
        let mut shard = self.shard(key.digest());
        if let Some(index) = shard.map.get_index_of(key.digest()) {
            shard.forget_at(index, key);
        }
    }

    /// Drops every verdict for which `doomed(upstream, entry)` holds; returns how many. Who
    /// exchanged a token is kept. A full scan: it serves purges and reloads, which are rare.
    pub fn forget_where(&self, doomed: impl Fn(&Arc<str>, &PackedEntry) -> bool) -> u64 {
        let mut forgotten = 0;
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let mut index = 0;
            while index < shard.map.len() {
                let removed = shard.change_at(index, |record| {
                    forgotten += record.drop_verdicts(|held| doomed(&held.upstream, &held.packed));
                });
                // A removed record's place is taken by the last one, which is looked at next.
                if !removed {
                    index += 1;
                }
            }
        }
        forgotten
    }

    /// The records' estimated bytes and their number.
    pub fn size(&self) -> (u64, u64) {
        self.shards.iter().fold((0, 0), |(bytes, count), shard| {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            (bytes + shard.bytes, count + shard.map.len() as u64)
        })
    }

    fn intern(&self, client_id: &str) -> Arc<str> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = clients.get(client_id) {
            return Arc::clone(known);
        }
        let client_id: Arc<str> = client_id.into();
        if clients.len() < MAX_INTERNED_CLIENTS {
            clients.insert(Arc::clone(&client_id));
        }
        client_id
    }
}

impl Shard {
    fn index_or_new(&mut self, digest: TokenDigest) -> usize {
        let entry = self.map.entry(digest);
        let index = entry.index();
        if let indexmap::map::Entry::Vacant(vacant) = entry {
            vacant.insert(Record::default());
            self.bytes += SLOT_BYTES;
        }
        index
    }

    /// Drops `key`'s upstream's verdict from the record at `index`.
    fn forget_at(&mut self, index: usize, key: &CacheKey) {
        self.change_at(index, |record| {
            record.drop_verdicts(|held| &*held.upstream == key.upstream());
        });
    }

    /// Applies `change` to the record at `index`, keeping the byte count right; a record left
    /// with nothing in it goes. Returns whether it went.
    fn change_at(&mut self, index: usize, change: impl FnOnce(&mut Record)) -> bool {
        let Some((_, record)) = self.map.get_index_mut(index) else { return false };
        let before = record.bytes();
        change(record);
        let (after, empty) = (record.bytes(), record.is_empty());
        self.bytes = self.bytes - before + after;
        if empty {
            self.map.swap_remove_index(index);
            self.bytes -= after;
        }
        empty
    }

    /// Sweeps a few records, then evicts until the shard is within its limits; returns the
    /// holders of evicted records (usually none, and then nothing is allocated).
    fn make_room(&mut self, now: UnixTime, limits: Limits) -> Vec<EvictedHolder> {
        let mut evicted = Vec::new();
        for _ in 0..SWEEP_PER_WRITE {
            self.step(now, false, &mut evicted);
        }
        while !self.map.is_empty() && (self.map.len() > limits.count || self.bytes > limits.bytes) {
            self.step(now, true, &mut evicted);
        }
        evicted
    }

    /// The hand looks at one record: drops what is past its deadline and, when `evicting`, the
    /// whole record unless it was used since the hand last passed (which it forgets).
    fn step(&mut self, now: UnixTime, evicting: bool, evicted: &mut Vec<EvictedHolder>) {
        if self.map.is_empty() {
            return;
        }
        let index = self.hand % self.map.len();
        let Some((&digest, _)) = self.map.get_index(index) else { return };
        let removed = self.change_at(index, |record| {
            record.drop_expired(now);
            if evicting && !std::mem::take(&mut record.referenced) {
                if let Some(Holder { client_id, until }) = record.holder.take() {
                    evicted.push(EvictedHolder { digest, client_id, until });
                }
                *record = Record::default();
            }
        });
        // A removed record's place is taken by the last one: the hand stays to look at it.
        self.hand = if removed { index } else { index + 1 };
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::vocabulary::{SubjectToken, ValidatedIdentity};

    const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

    fn key(token: &str) -> CacheKey {
        CacheKey::new("idp", SubjectToken::new(token.into()).digest())
    }

    fn entry(until: UnixTime) -> CacheEntry {
        let identity = ValidatedIdentity {
            upstream: "idp".into(),
            issuer: "https://idp.example".into(),
            subject: "user-1".into(),
            expires_at: None,
            scopes: Box::default(),
            claims: serde_json::Map::new(),
        };
        CacheEntry::valid(identity, until)
    }

    fn records(max_entries: u64) -> Records {
        Records::new(MemoryBounds { max_entries, max_bytes: u64::MAX })
    }

    #[test]
    fn an_entry_is_not_usable_at_its_deadline_and_is_dropped_then() {
        let records = records(100);
        records.insert(&key("a"), &entry(NOW + Duration::from_secs(60)), NOW);

        assert!(records.get_usable(&key("a"), NOW + Duration::from_secs(59)).is_some());
        assert!(records.get_usable(&key("a"), NOW + Duration::from_secs(60)).is_none());
        assert_eq!(records.size().1, 0);
    }

    #[test]
    fn another_upstreams_verdict_on_the_same_token_is_not_answered() {
        let records = records(100);
        records.insert(&key("a"), &entry(NOW + Duration::from_secs(60)), NOW);

        let elsewhere = CacheKey::new("other", SubjectToken::new("a".into()).digest());
        assert!(records.get_usable(&elsewhere, NOW).is_none());
        assert!(records.get_usable(&key("a"), NOW).is_some());
    }

    #[test]
    fn two_upstreams_verdicts_on_one_token_stand_apart() {
        let records = records(100);
        let elsewhere = CacheKey::new("other", *key("a").digest());
        records.insert(&key("a"), &entry(NOW + Duration::from_secs(60)), NOW);
        records.insert(&elsewhere, &CacheEntry::rejected("no", NOW + Duration::from_secs(60)), NOW);

        assert!(records.get(&key("a")).is_some_and(|entry| entry.identity().is_some()));
        assert!(records.get(&elsewhere).is_some_and(|entry| entry.identity().is_none()));
        assert_eq!(records.forget_where(|upstream, _| &**upstream == "idp"), 1);
        assert!(records.get(&key("a")).is_none());
        assert!(records.get(&elsewhere).is_some());
    }

    #[test]
    fn who_exchanged_a_token_outlives_its_verdict() {
        let records = records(100);
        let digest = *key("a").digest();
        records.insert(&key("a"), &entry(NOW + Duration::from_secs(60)), NOW);
        let hour = NOW + Duration::from_secs(3600);
        assert!(matches!(records.record_holder(&digest, "gateway", hour, NOW), HolderRecorded::InRecord(_)));

        assert!(records.get_usable(&key("a"), NOW + Duration::from_secs(120)).is_none());
        assert!(records.is_holder(&digest, "gateway", NOW + Duration::from_secs(120)));
        assert!(!records.is_holder(&digest, "intruder", NOW));
        assert!(!records.is_holder(&digest, "gateway", hour), "past its time");
        assert!(matches!(records.record_holder(&digest, "second", hour, NOW), HolderRecorded::RecordNamesAnother));
        assert!(matches!(records.record_holder(&digest, "second", hour, hour), HolderRecorded::InRecord(_)));
    }

    #[test]
    fn records_used_since_the_hand_passed_are_spared_once() {
        let records = records(4);
        let far = NOW + Duration::from_secs(3600);
        for token in ["a", "b", "c", "d"] {
            let _ = records.insert(&key(token), &entry(far), NOW);
        }
        for used in ["a", "b", "c"] {
            assert!(records.get_usable(&key(used), NOW).is_some());
        }

        records.insert(&key("e"), &entry(far), NOW);

        for used in ["a", "b", "c"] {
            assert!(records.get_usable(&key(used), NOW).is_some(), "{used}, used, was evicted");
        }
        assert_eq!(records.size().1, 4);
    }

    #[test]
    fn writes_sweep_away_records_past_their_deadlines() {
        let records = records(1_000);
        for n in 0..100 {
            records.insert(&key(&format!("old-{n}")), &entry(NOW + Duration::from_secs(1)), NOW);
        }
        let later = NOW + Duration::from_secs(10);
        for n in 0..100 {
            records.insert(&key(&format!("new-{n}")), &entry(later + Duration::from_secs(60)), later);
        }

        assert_eq!(records.size().1, 100, "expired records were left behind");
    }

    #[test]
    fn forgetting_by_upstream_keeps_who_exchanged_the_token() {
        let records = records(100);
        let digest = *key("a").digest();
        records.insert(&key("a"), &entry(NOW + Duration::from_secs(60)), NOW);
        let _ = records.record_holder(&digest, "gateway", NOW + Duration::from_secs(60), NOW);

        assert_eq!(records.forget_where(|upstream, _| &**upstream == "idp"), 1);

        assert!(records.get(&key("a")).is_none());
        assert!(records.is_holder(&digest, "gateway", NOW));
    }
}
