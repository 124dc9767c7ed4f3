//! One contract for every IdentityCache implementation: in-process, and Redis in each
//! topology (one server, a Cluster, a primary behind Sentinel).

use std::sync::Arc;
use std::time::Duration;

use token_exchange::cache::{
    CacheEntry, CacheKey, IdentityCache, MemoryCache, RedisCache, RedisKeys, RedisSettings, subject_digest,
};
use token_exchange::clock::{FixedClock, UnixTime};
use token_exchange::metrics::Metrics;
use token_exchange::vocabulary::{SubjectToken, ValidatedIdentity};

use crate::helpers::*;

const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn identity(subject: &str, issuer: &str) -> ValidatedIdentity {
    ValidatedIdentity {
        upstream: "idp".into(),
        issuer: issuer.into(),
        subject: subject.into(),
        expires_at: Some(NOW + secs(600)),
        scopes: Box::new(["read".into()]),
        claims: Default::default(),
    }
}

fn key(token: &str) -> CacheKey {
    CacheKey::new("idp", SubjectToken::new(token.into()).digest())
}

fn implementations() -> Vec<(&'static str, Arc<dyn IdentityCache>)> {
    init_test_log();
    let mut caches: Vec<(&'static str, Arc<dyn IdentityCache>)> = vec![("memory", Arc::new(MemoryCache::new(1000)))];
    for (name, mut settings) in redis_topologies(&random_prefix()) {
        settings.timeout = secs(1);
        caches.push((name, Arc::new(redis_cache(&settings))));
    }
    caches
}

/// A Redis cache whose clock stands at `NOW`.
fn redis_cache(settings: &RedisSettings) -> RedisCache {
    RedisCache::new(settings, Arc::new(FixedClock::at(NOW.as_secs())), Metrics::new()).unwrap()
}

#[tokio::test]
async fn a_stored_entry_is_read_back_unchanged() {
    for (name, cache) in implementations() {
        let entry = CacheEntry::valid(identity("alice", "https://idp"), NOW + secs(60));
        cache.put(&key("t1"), &entry, NOW).await.unwrap();
        assert_eq!(cache.get(&key("t1")).await.unwrap(), Some(entry), "{name}");
        assert_eq!(cache.get(&key("other")).await.unwrap(), None, "{name}");
    }
}

#[tokio::test]
async fn an_entry_already_past_its_deadline_is_not_stored() {
    for (name, cache) in implementations() {
        cache.put(&key("t2"), &CacheEntry::rejected("no", NOW), NOW).await.unwrap();
        assert_eq!(cache.get(&key("t2")).await.unwrap(), None, "{name}");
    }
}

#[tokio::test]
async fn removed_entries_are_gone() {
    for (name, cache) in implementations() {
        cache.put(&key("t3"), &CacheEntry::rejected("no", NOW + secs(60)), NOW).await.unwrap();
        cache.remove(&[key("t3")]).await.unwrap();
        assert_eq!(cache.get(&key("t3")).await.unwrap(), None, "{name}");
    }
}

#[tokio::test]
async fn the_first_sighting_is_remembered() {
    for (name, cache) in implementations() {
        assert_eq!(cache.first_seen(&key("t4"), NOW, secs(600)).await.unwrap(), NOW, "{name}");
        assert_eq!(cache.first_seen(&key("t4"), NOW + secs(100), secs(600)).await.unwrap(), NOW, "{name}");
    }
}

#[tokio::test]
async fn removing_a_subject_drops_only_its_entries() {
    for (name, cache) in implementations() {
        let alice = CacheEntry::valid(identity("alice", "https://idp"), NOW + secs(60));
        let bob = CacheEntry::valid(identity("bob", "https://idp"), NOW + secs(60));
        cache.put(&key("a1"), &alice, NOW).await.unwrap();
        cache.put(&key("a2"), &alice, NOW).await.unwrap();
        cache.put(&key("b1"), &bob, NOW).await.unwrap();

        assert_eq!(cache.remove_subject(Some("https://other"), "alice").await.unwrap(), 0, "{name}: other issuer");
        assert_eq!(cache.remove_subject(None, "alice").await.unwrap(), 2, "{name}");

        assert_eq!(cache.get(&key("a1")).await.unwrap(), None, "{name}");
        assert_eq!(cache.get(&key("b1")).await.unwrap(), Some(bob), "{name}");
    }
}

#[tokio::test]
async fn a_revocation_is_read_back_with_the_entry() {
    for (name, cache) in implementations() {
        let entry = CacheEntry::valid(identity("alice", "https://idp"), NOW + secs(60));
        cache.put(&key("r1"), &entry, NOW).await.unwrap();
        cache.revoke(key("r1").digest(), NOW + secs(300), NOW).await.unwrap();

        let lookup = cache.lookup(&key("r1"), NOW).await.unwrap();
        assert_eq!(lookup.revoked_until, Some(NOW + secs(300)), "{name}");
        assert_eq!(lookup.entry, Some(entry), "{name}");
        assert!(!cache.is_revoked(key("r2").digest(), NOW).await.unwrap(), "{name}");
    }
}

#[tokio::test]
async fn the_holder_written_with_an_entry_may_revoke_and_no_other_client() {
    for (name, cache) in implementations() {
        let entry = CacheEntry::valid(identity("alice", "https://idp"), NOW + secs(60));
        cache.put_with_holder(&key("h1"), &entry, "gateway", NOW + secs(600), NOW).await.unwrap();

        assert!(cache.was_exchanged_by(key("h1").digest(), "gateway", NOW).await.unwrap(), "{name}");
        assert!(!cache.was_exchanged_by(key("h1").digest(), "other", NOW).await.unwrap(), "{name}");
        assert_eq!(cache.get(&key("h1")).await.unwrap(), Some(entry), "{name}");
    }
}

#[tokio::test]
async fn removing_an_upstream_drops_its_entries_wherever_they_live() {
    for (name, cache) in implementations() {
        // Forty tokens land on every primary of a cluster.
        let entry = CacheEntry::rejected("no", NOW + secs(60));
        for i in 0..40 {
            cache.put(&key(&format!("u{i}")), &entry, NOW).await.unwrap();
        }
        let other = CacheKey::new("other", SubjectToken::new("u0".into()).digest());
        cache.put(&other, &entry, NOW).await.unwrap();

        assert_eq!(cache.remove_upstream("idp").await.unwrap(), 40, "{name}");
        assert_eq!(cache.get(&key("u7")).await.unwrap(), None, "{name}");
        assert_eq!(cache.get(&other).await.unwrap(), Some(entry), "{name}: another upstream's verdict");
    }
}

#[tokio::test]
async fn a_one_time_claim_is_granted_once() {
    for (name, cache) in implementations() {
        assert!(cache.claim_once("jti-1", NOW + secs(60), NOW).await.unwrap(), "{name}");
        assert!(!cache.claim_once("jti-1", NOW + secs(60), NOW).await.unwrap(), "{name}");
    }
}

/// Redis alone keeps an index of a subject's entries (for purges); it must not grow with
/// every token the subject ever had, only with those still alive.
#[tokio::test]
async fn a_subjects_index_in_redis_holds_only_its_live_entries() {
    use redis::AsyncCommands as _;
    let prefix = random_prefix();
    let cache = redis_cache(&RedisSettings::standalone(&redis_url(), &prefix));
    let carol = identity("carol", "https://idp");
    for token in ["c1", "c2", "c3"] {
        cache.put(&key(token), &CacheEntry::valid(carol.clone(), NOW + secs(60)), NOW).await.unwrap();
    }
    // Five minutes on, those three are dead; a new token of the same subject arrives.
    let later = NOW + secs(300);
    cache.put(&key("c4"), &CacheEntry::valid(carol, later + secs(60)), later).await.unwrap();

    let index = RedisKeys::new(&prefix).subject(&subject_digest("carol"));
    let listed: Vec<String> = redis_connection().await.zrange(&index, 0, -1).await.unwrap();
    assert_eq!(listed, vec![redis_entry_key(&prefix, "idp", "c4")]);
}

/// A replica of the version before the scored index listed entries in a plain set; a purge
/// during a rolling upgrade still finds them.
#[tokio::test]
async fn a_purge_finds_the_entries_listed_by_replicas_of_the_previous_version() {
    use redis::AsyncCommands as _;
    let prefix = random_prefix();
    let cache = redis_cache(&RedisSettings::standalone(&redis_url(), &prefix));
    cache.put(&key("d1"), &CacheEntry::valid(identity("dave", "https://idp"), NOW + secs(60)), NOW).await.unwrap();
    let keys = RedisKeys::new(&prefix);
    let (scored, unscored) = (keys.subject(&subject_digest("dave")), keys.unscored_subject(&subject_digest("dave")));
    let mut redis = redis_connection().await;
    let () = redis.del(&scored).await.unwrap();
    let () = redis.sadd(&unscored, redis_entry_key(&prefix, "idp", "d1")).await.unwrap();

    assert_eq!(cache.remove_subject(None, "dave").await.unwrap(), 1);
    assert_eq!(cache.get(&key("d1")).await.unwrap(), None);
    assert!(!redis.exists::<_, bool>(&unscored).await.unwrap(), "the old index goes with the purge");
}
