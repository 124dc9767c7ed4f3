use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::{Config, Pool, Runtime};
use futures_util::StreamExt as _;

use super::entry::is_entry_of_subject;
use super::{
    CacheEntry, CacheError, CacheKey, IdentityCache, Invalidation, Lease, Lookup, MemoryCache, subject_digest,
};
use crate::clock::{Clock, SharedClock, UnixTime};
use crate::metrics::Metrics;
use crate::vocabulary::TokenDigest;

enum Query {
    Command(redis::Cmd),
    Pipeline(redis::Pipeline),
    Script(redis::ScriptInvocation<'static>),
}

const LEASE_GRANTED: i64 = 1;
const LEASE_HELD_ELSEWHERE: i64 = 0;

/// KEYS: entry, revocation, lease. ARGV: lessee, hold in milliseconds. Returns the entry, the
/// revocation and 1 (lease granted), 0 (held by another) or -1 (not asked: something was found).
static LOOKUP_OR_LEASE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r#"
local found = redis.call('MGET', KEYS[1], KEYS[2])
if found[1] or found[2] then return {found[1], found[2], -1} end
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then return {false, false, 1} end
return {false, false, 0}
"#,
    )
});

/// KEYS: lease. ARGV: lessee. Deletes the lease only while `lessee` holds it.
static RELEASE_LEASE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});

fn hold_millis(hold: Duration) -> u64 {
    u64::try_from(hold.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn parse_lookup(entry: Option<Vec<u8>>, revoked_until: Option<i64>, now: UnixTime) -> Lookup {
    Lookup {
        // An entry of another version or shape is a miss, to be overwritten.
        entry: entry.and_then(|bytes| serde_json::from_slice(&bytes).ok()),
        revoked_until: revoked_until.map(UnixTime::from_secs).filter(|until| *until > now),
    }
}

fn command(name: &str) -> redis::Cmd {
    redis::cmd(name)
}

/// After a failed call, Redis is skipped for this long so requests do not each wait out a
/// timeout; the next call after it tries again, which is how reconnection happens.
pub const BACKOFF: Duration = Duration::from_secs(2);

/// Where the shared cache lives and how long we wait for it.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    pub prefix: String,
    /// Bound on every call; past it, the call counts as failed.
    pub timeout: Duration,
    /// How long a subject's index of keys is kept (the longest an entry lives).
    pub index_ttl: Duration,
}

/// The shared L2 cache in Redis: `{prefix}:v1:id:{upstream}:{sha256}` holds a versioned JSON
/// entry, `{prefix}:v1:seen:…` the first sighting of a token, `{prefix}:v1:sub:{sha256(sub)}`
/// the keys of one subject, `{prefix}:v1:revoked:{sha256}` a revocation,
/// `{prefix}:v1:exchanged:{sha256}:{client_id}` that a client presented the token,
/// `{prefix}:v1:lease:{upstream}:{sha256}` which replica is asking the upstream about a token,
/// `{prefix}:v1:claim:{digest}` a one-time claim (a client assertion's `jti`), and
/// `{prefix}:v1:invalidate` carries messages between replicas.
pub struct RedisCache {
    pool: Pool,
    prefix: String,
    timeout: Duration,
    index_ttl: Duration,
    clock: SharedClock,
    metrics: Metrics,
    /// Unix second before which Redis is not asked (the backoff after a failure).
    skip_until: AtomicI64,
}

impl RedisCache {
    /// Builds the pool; no connection is made until first use, so a Redis that is down at
    /// startup only degrades the cache.
    pub fn new(settings: &RedisSettings, clock: SharedClock, metrics: Metrics) -> Result<Self, CacheError> {
        let timeout = settings.timeout;
        let pool = Config::from_url(&settings.url)
            .builder()
            .map_err(|e| CacheError::Unavailable(e.to_string()))?
            .max_size(32)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| CacheError::Unavailable(e.to_string()))?;
        Ok(Self {
            pool,
            prefix: settings.prefix.clone(),
            timeout,
            index_ttl: settings.index_ttl.max(Duration::from_secs(1)),
            clock,
            metrics,
            skip_until: AtomicI64::new(i64::MIN),
        })
    }

    fn entry_key(&self, key: &CacheKey) -> String {
        format!("{}:v1:id:{}", self.prefix, key.to_wire())
    }

    fn seen_key(&self, key: &CacheKey) -> String {
        format!("{}:v1:seen:{}", self.prefix, key.to_wire())
    }

    fn revoked_key(&self, digest: &TokenDigest) -> String {
        format!("{}:v1:revoked:{}", self.prefix, digest.to_hex())
    }

    fn exchanged_key(&self, digest: &TokenDigest, client_id: &str) -> String {
        format!("{}:v1:exchanged:{}:{client_id}", self.prefix, digest.to_hex())
    }

    fn lease_key(&self, key: &CacheKey) -> String {
        format!("{}:v1:lease:{}", self.prefix, key.to_wire())
    }

    fn claim_key(&self, key: &str) -> String {
        format!("{}:v1:claim:{key}", self.prefix)
    }

    fn subject_key(&self, subject_digest_hex: &str) -> String {
        format!("{}:v1:sub:{subject_digest_hex}", self.prefix)
    }

    pub fn channel(&self) -> String {
        format!("{}:v1:invalidate", self.prefix)
    }

    /// Adds the writes that store `entry` to `pipe`; false when there is nothing to store.
    fn add_put(
        &self,
        pipe: &mut redis::Pipeline,
        key: &CacheKey,
        entry: &CacheEntry,
        now: UnixTime,
    ) -> Result<bool, CacheError> {
        let ttl = entry.time_left(now).as_secs();
        if ttl == 0 {
            return Ok(false);
        }
        let value = serde_json::to_vec(entry).map_err(|e| CacheError::Unavailable(e.to_string()))?;
        let redis_key = self.entry_key(key);
        pipe.set_ex(&redis_key, value, ttl).ignore();
        if let Some(identity) = entry.identity() {
            let index = self.subject_key(&subject_digest(&identity.subject));
            pipe.sadd(&index, &redis_key).ignore();
            pipe.expire(&index, i64::try_from(self.index_ttl.as_secs()).unwrap_or(i64::MAX)).ignore();
        }
        Ok(true)
    }

    /// Adds the record that `client_id` exchanged the token with `digest`, until `until`.
    fn add_exchange(
        &self,
        pipe: &mut redis::Pipeline,
        digest: &TokenDigest,
        client_id: &str,
        until: UnixTime,
        now: UnixTime,
    ) {
        let seconds = now.until(until).as_secs().max(1);
        pipe.set_ex(self.exchanged_key(digest, client_id), 1, seconds).ignore();
    }

    /// Runs one command or pipeline within the timeout, skipping Redis during a backoff.
    async fn run<T: redis::FromRedisValue>(&self, operation: &'static str, query: Query) -> Result<T, CacheError> {
        if self.clock.now().as_secs() < self.skip_until.load(Ordering::Relaxed) {
            return Err(CacheError::Unavailable("backing off after a Redis failure".into()));
        }
        let attempt = async {
            let mut connection = self.pool.get().await.map_err(|e| CacheError::Unavailable(e.to_string()))?;
            let reply = match &query {
                Query::Command(command) => command.query_async(&mut connection).await,
                Query::Pipeline(pipeline) => pipeline.query_async(&mut connection).await,
                Query::Script(invocation) => invocation.invoke_async(&mut connection).await,
            };
            reply.map_err(CacheError::Redis)
        };
        let result = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(CacheError::Unavailable("Redis timed out".into())),
        };
        if let Err(error) = &result {
            self.metrics.redis_error(operation);
            self.skip_until.store((self.clock.now() + BACKOFF).as_secs(), Ordering::Relaxed);
            tracing::warn!(operation, error = %crate::report::Chain(error), "Redis call failed; using the in-process cache alone for now");
        }
        result
    }

    /// Applies other replicas' invalidations to `local` until the process ends, reconnecting
    /// with a pause after every failure.
    pub async fn follow_invalidations(url: String, channel: String, local: MemoryCache, clock: SharedClock) {
        loop {
            if let Err(error) = Self::subscribe_once(&url, &channel, &local, &*clock).await {
                tracing::warn!(%error, "Redis invalidation channel lost; reconnecting");
            }
            clock.sleep(BACKOFF).await;
        }
    }

    async fn subscribe_once(
        url: &str,
        channel: &str,
        local: &MemoryCache,
        clock: &dyn Clock,
    ) -> redis::RedisResult<()> {
        let client = redis::Client::open(url)?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        // Whatever was published while we were not listening is lost: start from Redis again.
        local.drop_all_entries();
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            let Ok(payload) = message.get_payload::<String>() else { continue };
            match serde_json::from_str::<Invalidation>(&payload) {
                Ok(Invalidation::Revoke { digest, until }) => {
                    if let Some(digest) = TokenDigest::from_hex(&digest) {
                        let _ = local.revoke(&digest, until, clock.now()).await;
                    }
                }
                Ok(Invalidation::PurgeSubject { issuer, subject_digest }) => {
                    local.drop_subject(issuer.as_deref(), &subject_digest).await;
                }
                Err(_) => tracing::warn!("ignoring a malformed invalidation message"),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl IdentityCache for RedisCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<CacheEntry>, CacheError> {
        let redis_key = self.entry_key(key);
        let raw: Option<Vec<u8>> = self.run("get", Query::Command(command("GET").arg(&redis_key).clone())).await?;
        // An entry of another version or shape is a miss, to be overwritten.
        Ok(raw.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    async fn put(&self, key: &CacheKey, entry: &CacheEntry, now: UnixTime) -> Result<(), CacheError> {
        let mut pipe = redis::pipe();
        if self.add_put(&mut pipe, key, entry, now)? {
            let () = self.run("put", Query::Pipeline(pipe)).await?;
        }
        Ok(())
    }

    async fn put_with_holder(
        &self,
        key: &CacheKey,
        entry: &CacheEntry,
        holder: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> Result<(), CacheError> {
        let mut pipe = redis::pipe();
        self.add_put(&mut pipe, key, entry, now)?;
        self.add_exchange(&mut pipe, key.digest(), holder, until, now);
        self.run("put", Query::Pipeline(pipe)).await
    }

    async fn remove(&self, keys: &[CacheKey]) -> Result<(), CacheError> {
        let redis_keys: Vec<String> = keys.iter().map(|k| self.entry_key(k)).collect();
        self.run("remove", Query::Command(command("DEL").arg(&redis_keys).clone())).await
    }

    async fn first_seen(&self, key: &CacheKey, now: UnixTime, remember_for: Duration) -> Result<UnixTime, CacheError> {
        let redis_key = self.seen_key(key);
        let remember = remember_for.as_secs().max(1);
        // SET NX GET: records `now` unless a sighting exists, and returns the earlier one.
        let set =
            command("SET").arg(&redis_key).arg(now.as_secs()).arg("NX").arg("GET").arg("EX").arg(remember).clone();
        let earlier: Option<i64> = self.run("first_seen", Query::Command(set)).await?;
        Ok(earlier.map_or(now, UnixTime::from_secs))
    }

    async fn claim_once(&self, key: &str, until: UnixTime, now: UnixTime) -> Result<bool, CacheError> {
        let seconds = now.until(until).as_secs().max(1);
        let set = command("SET").arg(self.claim_key(key)).arg(until.as_secs()).arg("NX").arg("EX").arg(seconds).clone();
        // SET NX answers OK when it stored the key and nil when the key was there already.
        let stored: Option<String> = self.run("claim_once", Query::Command(set)).await?;
        Ok(stored.is_some())
    }

    async fn revoke(&self, digest: &TokenDigest, until: UnixTime, now: UnixTime) -> Result<(), CacheError> {
        let seconds = now.until(until).as_secs().max(1);
        let set = command("SET").arg(self.revoked_key(digest)).arg(until.as_secs()).arg("EX").arg(seconds).clone();
        self.run("revoke", Query::Command(set)).await
    }

    async fn revoked_until(&self, digest: &TokenDigest, now: UnixTime) -> Result<Option<UnixTime>, CacheError> {
        let until: Option<i64> =
            self.run("is_revoked", Query::Command(command("GET").arg(self.revoked_key(digest)).clone())).await?;
        Ok(until.map(UnixTime::from_secs).filter(|until| *until > now))
    }

    /// Entry and revocation in one round trip.
    async fn lookup(&self, key: &CacheKey, now: UnixTime) -> Result<Lookup, CacheError> {
        let mget = command("MGET").arg(self.entry_key(key)).arg(self.revoked_key(key.digest())).clone();
        let (entry, until): (Option<Vec<u8>>, Option<i64>) = self.run("lookup", Query::Command(mget)).await?;
        Ok(parse_lookup(entry, until, now))
    }

    /// Entry, revocation and, when both are missing, `SET NX PX` of the lease: one script, so
    /// no replica can take a lease on a token whose verdict has just landed.
    async fn lookup_or_lease(
        &self,
        key: &CacheKey,
        lessee: &str,
        hold: Duration,
        now: UnixTime,
    ) -> Result<(Lookup, Lease), CacheError> {
        let mut invocation = LOOKUP_OR_LEASE.prepare_invoke();
        invocation.key(self.entry_key(key)).key(self.revoked_key(key.digest())).key(self.lease_key(key));
        invocation.arg(lessee).arg(hold_millis(hold));
        let (entry, until, leased): (Option<Vec<u8>>, Option<i64>, i64) =
            self.run("lookup_or_lease", Query::Script(invocation)).await?;
        let lease = match leased {
            LEASE_GRANTED => Lease::Granted,
            LEASE_HELD_ELSEWHERE => Lease::HeldElsewhere,
            _ => Lease::NotAsked,
        };
        Ok((parse_lookup(entry, until, now), lease))
    }

    async fn take_lease(&self, key: &CacheKey, lessee: &str, hold: Duration) -> Result<Lease, CacheError> {
        let set =
            command("SET").arg(self.lease_key(key)).arg(lessee).arg("NX").arg("PX").arg(hold_millis(hold)).clone();
        let stored: Option<String> = self.run("take_lease", Query::Command(set)).await?;
        Ok(if stored.is_some() { Lease::Granted } else { Lease::HeldElsewhere })
    }

    async fn release_lease(&self, key: &CacheKey, lessee: &str) -> Result<(), CacheError> {
        let mut invocation = RELEASE_LEASE.prepare_invoke();
        invocation.key(self.lease_key(key)).arg(lessee);
        let _released: i64 = self.run("release_lease", Query::Script(invocation)).await?;
        Ok(())
    }

    async fn record_exchange(
        &self,
        digest: &TokenDigest,
        client_id: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> Result<(), CacheError> {
        let mut pipe = redis::pipe();
        self.add_exchange(&mut pipe, digest, client_id, until, now);
        self.run("record_exchange", Query::Pipeline(pipe)).await
    }

    async fn was_exchanged_by(&self, digest: &TokenDigest, client_id: &str) -> Result<bool, CacheError> {
        let exists = command("EXISTS").arg(self.exchanged_key(digest, client_id)).clone();
        self.run("was_exchanged_by", Query::Command(exists)).await
    }

    /// A SCAN over the upstream's entries: rare (a configuration reload), never on a request.
    async fn remove_upstream(&self, upstream: &str) -> Result<u64, CacheError> {
        let escaped: String = upstream
            .chars()
            .flat_map(|c| if matches!(c, '*' | '?' | '[' | ']' | '\\') { vec!['\\', c] } else { vec![c] })
            .collect();
        let pattern = format!("{}:v1:id:{escaped}:*", self.prefix);
        let mut cursor = 0u64;
        let mut removed = 0;
        loop {
            let scan = command("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(500).clone();
            let (next, keys): (u64, Vec<String>) = self.run("remove_upstream", Query::Command(scan)).await?;
            if !keys.is_empty() {
                let deleted: u64 =
                    self.run("remove_upstream", Query::Command(command("DEL").arg(&keys).clone())).await?;
                removed += deleted;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    async fn remove_subject(&self, issuer: Option<&str>, subject: &str) -> Result<u64, CacheError> {
        let digest = subject_digest(subject);
        let index = self.subject_key(&digest);
        let members: Vec<String> = self.run("purge", Query::Command(command("SMEMBERS").arg(&index).clone())).await?;
        let mut removed = 0;
        for redis_key in members {
            let raw: Option<Vec<u8>> =
                self.run("purge", Query::Command(command("GET").arg(&redis_key).clone())).await?;
            let entry = raw.and_then(|bytes| serde_json::from_slice::<CacheEntry>(&bytes).ok());
            if entry.is_some_and(|e| is_entry_of_subject(&e, issuer, &digest)) {
                let () = self.run("purge", Query::Command(command("DEL").arg(&redis_key).clone())).await?;
                removed += 1;
            }
        }
        if issuer.is_none() {
            let () = self.run("purge", Query::Command(command("DEL").arg(&index).clone())).await?;
        }
        Ok(removed)
    }

    async fn publish(&self, invalidation: &Invalidation) -> Result<(), CacheError> {
        let message = serde_json::to_string(invalidation).map_err(|e| CacheError::Unavailable(e.to_string()))?;
        let channel = self.channel();
        self.run("publish", Query::Command(command("PUBLISH").arg(&channel).arg(&message).clone())).await
    }

    async fn is_healthy(&self) -> bool {
        // A health probe must not wait for the backoff to end, nor start one.
        let probe = async {
            let mut connection = self.pool.get().await.ok()?;
            redis::cmd("PING").query_async::<String>(&mut connection).await.ok()
        };
        matches!(tokio::time::timeout(self.timeout, probe).await, Ok(Some(_)))
    }
}
