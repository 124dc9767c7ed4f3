use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::{Cmd, Value};

use super::connection::{Notice, SharedConnection, Writes};
use super::entry::is_entry_of_subject;
use super::keys::{LegacyKeys, RedisKeys, TokenKeys};
use super::topology::Connector;
use super::{
    CacheEntry, CacheError, CacheKey, IdentityCache, Invalidation, Lease, Lookup, MemoryCache, subject_digest,
};
use crate::clock::{Clock, SharedClock, UnixTime};
use crate::metrics::Metrics;
use crate::vocabulary::TokenDigest;

pub use super::topology::{RedisSettings, RedisTopology};

/// After a failed call, Redis is skipped for this long so requests do not each wait out a
/// timeout; the next call after it tries again, which is how reconnection happens.
pub const BACKOFF: Duration = Duration::from_secs(2);

/// The shared L2 cache in Redis, on any topology (see [`RedisKeys`] for the layout): a
/// versioned JSON entry per token and upstream, the first sighting of a token, a subject's
/// entry keys (for purges), revocations, which clients exchanged a token, one-time claims, and
/// a channel that carries invalidations between replicas.
pub struct RedisCache {
    connection: Arc<SharedConnection>,
    keys: RedisKeys,
    /// Keys of the layout before hash tags, still honoured where they can exist.
    legacy: Option<LegacyKeys>,
    timeout: Duration,
    index_ttl: Duration,
    clock: SharedClock,
    metrics: Metrics,
    /// Unix second before which Redis is not asked (the backoff after a failure).
    skip_until: AtomicI64,
}

/// How long past its score a key stays in a subject's index: replicas' clocks differ, and a
/// key pruned early hides a live entry from purges.
const PRUNE_MARGIN: Duration = Duration::from_secs(60);

/// KEYS: lease. ARGV: lessee. Deletes the lease only while `lessee` holds it.
const RELEASE_LEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// A Lua script, sent by its SHA-1 once the Redis that runs it knows it.
struct Script {
    code: &'static str,
    sha1: std::sync::LazyLock<String>,
}

static RELEASE_LEASE_SCRIPT: Script =
    Script { code: RELEASE_LEASE, sha1: std::sync::LazyLock::new(|| sha1_of(RELEASE_LEASE)) };

fn sha1_of(code: &str) -> String {
    redis::Script::new(code).get_hash().to_owned()
}

fn hold_millis(hold: Duration) -> u64 {
    u64::try_from(hold.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn unavailable(error: impl std::fmt::Display) -> CacheError {
    CacheError::Unavailable(error.to_string())
}

/// An entry of another version or shape is a miss, to be overwritten.
fn decode_entry(raw: Option<Vec<u8>>) -> Option<CacheEntry> {
    raw.and_then(|bytes| serde_json::from_slice(&bytes).ok())
}

/// The later of several recorded revocations, if it is still in force at `now`.
fn in_force(untils: impl IntoIterator<Item = Option<i64>>, now: UnixTime) -> Option<UnixTime> {
    untils.into_iter().flatten().max().map(UnixTime::from_secs).filter(|until| *until > now)
}

/// The reply to [`RedisCache::lookup_command`]: an entry, then the recorded revocations.
fn read_lookup(reply: Vec<Value>, now: UnixTime) -> Result<Lookup, CacheError> {
    let mut values = reply.into_iter();
    let entry: Option<Vec<u8>> = redis::from_redis_value(values.next().unwrap_or(Value::Nil)).map_err(unavailable)?;
    let revocations: Vec<Option<i64>> =
        values.map(redis::from_redis_value).collect::<Result<_, _>>().map_err(unavailable)?;
    Ok(Lookup { entry: decode_entry(entry), revoked_until: in_force(revocations, now) })
}

impl RedisCache {
    /// Checks the settings and prepares the connection; none is made until first use, so a
    /// Redis that is down at startup only degrades the cache.
    pub fn new(settings: &RedisSettings, clock: SharedClock, metrics: Metrics) -> Result<Self, CacheError> {
        let connector = Connector::new(settings).map_err(unavailable)?;
        let legacy = connector.may_hold_legacy_keys().then(|| LegacyKeys::new(&settings.prefix));
        Ok(Self {
            connection: Arc::new(SharedConnection::new(connector, settings.timeout)),
            keys: RedisKeys::new(&settings.prefix),
            legacy,
            timeout: settings.timeout,
            index_ttl: settings.index_ttl.max(Duration::from_secs(1)),
            clock,
            metrics,
            skip_until: AtomicI64::new(i64::MIN),
        })
    }

    /// The commands that store `entry` under `token`'s keys: one for the token's slot, and
    /// those for its subject's index.
    fn put_commands(
        &self,
        token: &TokenKeys,
        key: &CacheKey,
        entry: &CacheEntry,
        now: UnixTime,
    ) -> Result<Option<(Cmd, Vec<Cmd>)>, CacheError> {
        let ttl = entry.time_left(now).as_secs();
        if ttl == 0 {
            return Ok(None);
        }
        let value = serde_json::to_vec(entry).map_err(unavailable)?;
        let redis_key = token.entry(key.upstream());
        let expires = now + Duration::from_secs(ttl);
        let index_commands = entry
            .identity()
            .map(|identity| self.index_commands(&subject_digest(&identity.subject), &redis_key, expires, now))
            .unwrap_or_default();
        Ok(Some((Cmd::set_ex(redis_key, value, ttl), index_commands)))
    }

    /// Adds `redis_key`, alive until `expires`, to its subject's index, and drops the keys
    /// that are dead by `now` (less [`PRUNE_MARGIN`]): a subject that keeps missing (a service
    /// account with short-lived tokens) holds as many keys as it has live entries, not one per
    /// token ever seen.
    fn index_commands(&self, subject: &str, redis_key: &str, expires: UnixTime, now: UnixTime) -> Vec<Cmd> {
        let index = self.keys.subject(subject);
        vec![
            Cmd::zadd(&index, redis_key, expires.as_secs()),
            Cmd::zrembyscore(&index, "-inf", (now - PRUNE_MARGIN).as_secs()),
            Cmd::expire(index, i64::try_from(self.index_ttl.as_secs()).unwrap_or(i64::MAX)),
        ]
    }

    /// The record that `client_id` exchanged the token, until `until`.
    fn exchange_command(token: &TokenKeys, client_id: &str, until: UnixTime, now: UnixTime) -> Cmd {
        let seconds = now.until(until).as_secs().max(1);
        Cmd::set_ex(token.exchanged(client_id), 1, seconds)
    }

    /// The MGET of a lookup: the entry, the revocation, and the revocation under the old
    /// layout where one can exist (see [`read_lookup`]).
    fn lookup_command(&self, key: &CacheKey) -> Cmd {
        let token = self.keys.token(key.digest());
        let mut mget = redis::cmd("MGET");
        mget.arg(token.entry(key.upstream())).arg(token.revoked());
        if let Some(legacy) = &self.legacy {
            mget.arg(legacy.revoked(key.digest()));
        }
        mget
    }

    /// Runs one call within the timeout, skipping Redis during a backoff.
    async fn run<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, CacheError> {
        if self.clock.now().as_secs() < self.skip_until.load(Ordering::Relaxed) {
            return Err(CacheError::Unavailable("backing off after a Redis failure".into()));
        }
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(reply) => reply.map_err(CacheError::Redis),
            Err(_) => {
                self.connection.forget_current();
                Err(CacheError::Unavailable("Redis timed out".into()))
            }
        };
        if let Err(error) = &result {
            self.metrics.redis_error(operation);
            self.skip_until.store((self.clock.now() + BACKOFF).as_secs(), Ordering::Relaxed);
            tracing::warn!(operation, error = %crate::report::Chain(error), "Redis call failed; using the in-process cache alone for now");
        }
        result
    }

    async fn command<T: redis::FromRedisValue>(&self, operation: &'static str, command: Cmd) -> Result<T, CacheError> {
        self.run(operation, self.connection.command(&command)).await
    }

    /// Runs `script` by its SHA-1; a Redis that does not know it yet (NOSCRIPT: new, restarted
    /// or failed over, another cluster node) is sent the text, which it keeps for next time.
    async fn script<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<T, CacheError> {
        let call = |name: &str, body: &str| {
            let mut command = redis::cmd(name);
            command.arg(body).arg(keys.len()).arg(keys).arg(args);
            command
        };
        let connection = &self.connection;
        let attempt = async move {
            // The text goes only to a Redis that does not know the script yet.
            match connection.command(&call("EVALSHA", &script.sha1)).await {
                Err(error) if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                    connection.command(&call("EVAL", script.code)).await
                }
                answered => answered,
            }
        };
        self.run(operation, attempt).await
    }

    async fn write(&self, operation: &'static str, writes: Writes) -> Result<(), CacheError> {
        self.run(operation, self.connection.write(writes)).await
    }

    /// The primaries to SCAN: every one of a cluster, else the one server.
    async fn scan_targets(&self) -> Result<Vec<Option<(String, u16)>>, CacheError> {
        if !self.connection.connector().is_cluster() {
            return Ok(vec![None]);
        }
        let slots: Value = self.command("scan", redis::cmd("CLUSTER").arg("SLOTS").clone()).await?;
        let primaries = cluster_primaries(&slots);
        if primaries.is_empty() {
            return Err(CacheError::Unavailable("CLUSTER SLOTS named no primary".into()));
        }
        Ok(primaries.into_iter().map(Some).collect())
    }

    /// Every key matching `pattern` on one server (or one cluster node).
    async fn scan(&self, node: Option<&(String, u16)>, pattern: &str) -> Result<Vec<String>, CacheError> {
        let mut cursor = 0u64;
        let mut found = Vec::new();
        loop {
            let scan = redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(500).clone();
            let (next, keys): (u64, Vec<String>) = match node {
                Some(node) => {
                    let reply = self.run("scan", self.connection.command_on(node, scan)).await?;
                    redis::from_redis_value(reply).map_err(unavailable)?
                }
                None => self.command("scan", scan).await?,
            };
            found.extend(keys);
            if next == 0 {
                return Ok(found);
            }
            cursor = next;
        }
    }

    /// Applies other replicas' invalidations to `local` until the process ends, subscribing
    /// again (through the topology: a new primary, another node) after a pause whenever the
    /// subscription is lost. Shares this cache's connection, so that a new primary named by
    /// Sentinel replaces it at once.
    pub fn follow_invalidations(&self, local: MemoryCache) -> impl Future<Output = ()> + Send + 'static {
        let (connection, clock) = (self.connection.clone(), self.clock.clone());
        let channel = self.keys.channel();
        async move {
            loop {
                if let Err(error) = Self::follow_once(&connection, &channel, &local, &*clock).await {
                    tracing::warn!(%error, "Redis invalidation channel lost; subscribing again");
                }
                clock.sleep(BACKOFF).await;
            }
        }
    }

    async fn follow_once(
        connection: &SharedConnection,
        channel: &str,
        local: &MemoryCache,
        clock: &dyn Clock,
    ) -> redis::RedisResult<()> {
        let mut subscription = connection.subscribe(channel).await?;
        // Whatever was published while we were not listening is lost: start from Redis again.
        local.drop_all_entries();
        while let Some(notice) = subscription.next().await {
            let payload = match notice {
                Notice::Message(payload) => payload,
                Notice::Gap => {
                    local.drop_all_entries();
                    continue;
                }
                Notice::PrimaryMoved => {
                    tracing::warn!("Sentinel named a new Redis primary; reconnecting");
                    connection.forget_current();
                    return Ok(());
                }
            };
            match serde_json::from_slice::<Invalidation>(&payload) {
                Ok(Invalidation::Revoke { digest, until }) => {
                    if let Some(digest) = TokenDigest::from_hex(&digest) {
                        let _ = local.revoke(&digest, until, clock.now()).await;
                    }
                }
                Ok(Invalidation::PurgeSubject { issuer, subject_digest }) => {
                    local.drop_subject(issuer.as_deref(), &subject_digest);
                }
                Err(_) => tracing::warn!("ignoring a malformed invalidation message"),
            }
        }
        Ok(())
    }
}

/// The `(host, port)` of every primary in a `CLUSTER SLOTS` reply.
fn cluster_primaries(slots: &Value) -> Vec<(String, u16)> {
    let text = |value: &Value| match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    };
    let mut primaries = Vec::new();
    let Value::Array(ranges) = slots else { return primaries };
    for range in ranges {
        let Value::Array(fields) = range else { continue };
        let Some(Value::Array(primary)) = fields.get(2) else { continue };
        let (Some(host), Some(Value::Int(port))) = (primary.first().and_then(text), primary.get(1)) else { continue };
        let Ok(port) = u16::try_from(*port) else { continue };
        if !primaries.contains(&(host.clone(), port)) {
            primaries.push((host, port));
        }
    }
    primaries
}

#[async_trait]
impl IdentityCache for RedisCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<CacheEntry>, CacheError> {
        let raw: Option<Vec<u8>> = self.command("get", Cmd::get(self.keys.entry(key))).await?;
        Ok(decode_entry(raw))
    }

    async fn put(&self, key: &CacheKey, entry: &CacheEntry, now: UnixTime) -> Result<(), CacheError> {
        let token = self.keys.token(key.digest());
        let Some((set, index)) = self.put_commands(&token, key, entry, now)? else { return Ok(()) };
        let mut writes = Writes::default();
        writes.group([set]);
        writes.group(index);
        self.write("put", writes).await
    }

    /// The entry and the holder share the token's slot: one pipeline, beside the subject's
    /// index in its own slot (sent at the same time on a cluster).
    async fn put_with_holder(
        &self,
        key: &CacheKey,
        entry: &CacheEntry,
        holder: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> Result<(), CacheError> {
        let token = self.keys.token(key.digest());
        let exchanged = Self::exchange_command(&token, holder, until, now);
        let mut writes = Writes::default();
        match self.put_commands(&token, key, entry, now)? {
            Some((set, index)) => {
                writes.group([set, exchanged]);
                writes.group(index);
            }
            None => writes.group([exchanged]),
        }
        self.write("put", writes).await
    }

    async fn remove(&self, keys: &[CacheKey]) -> Result<(), CacheError> {
        let redis_keys: Vec<String> = keys.iter().map(|k| self.keys.entry(k)).collect();
        self.command("remove", Cmd::del(&redis_keys)).await
    }

    async fn first_seen(&self, key: &CacheKey, now: UnixTime, remember_for: Duration) -> Result<UnixTime, CacheError> {
        let remember = remember_for.as_secs().max(1);
        // SET NX GET: records `now` unless a sighting exists, and returns the earlier one.
        let set = redis::cmd("SET")
            .arg(self.keys.token(key.digest()).seen(key.upstream()))
            .arg(now.as_secs())
            .arg("NX")
            .arg("GET")
            .arg("EX")
            .arg(remember)
            .clone();
        let earlier: Option<i64> = match &self.legacy {
            Some(legacy) => {
                let mut pipe = redis::pipe();
                pipe.add_command(Cmd::get(legacy.seen(key))).add_command(set);
                let (legacy, current): (Option<i64>, Option<i64>) =
                    self.run("first_seen", self.connection.pipeline(&pipe)).await?;
                legacy.into_iter().chain(current).min()
            }
            None => self.command("first_seen", set).await?,
        };
        Ok(earlier.map_or(now, UnixTime::from_secs))
    }

    async fn claim_once(&self, key: &str, until: UnixTime, now: UnixTime) -> Result<bool, CacheError> {
        let seconds = now.until(until).as_secs().max(1);
        let set =
            redis::cmd("SET").arg(self.keys.claim(key)).arg(until.as_secs()).arg("NX").arg("EX").arg(seconds).clone();
        // SET NX answers OK when it stored the key and nil when the key was there already.
        let stored: Option<String> = self.command("claim_once", set).await?;
        Ok(stored.is_some())
    }

    /// Also under the old key where one can exist, so replicas not yet upgraded refuse it too.
    async fn revoke(&self, digest: &TokenDigest, until: UnixTime, now: UnixTime) -> Result<(), CacheError> {
        let seconds = now.until(until).as_secs().max(1);
        let mut writes = Writes::default();
        writes.group([Cmd::set_ex(self.keys.revoked(digest), until.as_secs(), seconds)]);
        if let Some(legacy) = &self.legacy {
            writes.group([Cmd::set_ex(legacy.revoked(digest), until.as_secs(), seconds)]);
        }
        self.write("revoke", writes).await
    }

    async fn revoked_until(&self, digest: &TokenDigest, now: UnixTime) -> Result<Option<UnixTime>, CacheError> {
        let mut keys = vec![self.keys.revoked(digest)];
        keys.extend(self.legacy.as_ref().map(|legacy| legacy.revoked(digest)));
        let untils: Vec<Option<i64>> = self.command("is_revoked", Cmd::mget(&keys)).await?;
        Ok(in_force(untils, now))
    }

    /// Entry and revocation in one round trip: they share the token's slot.
    async fn lookup(&self, key: &CacheKey, now: UnixTime) -> Result<Lookup, CacheError> {
        let reply: Vec<Value> = self.command("lookup", self.lookup_command(key)).await?;
        read_lookup(reply, now)
    }

    /// The lease and the lookup in one pipeline, without a script: a lease is taken first,
    /// and given back when a verdict turns out to be there. A leader keeps its lease after
    /// storing its verdict (it expires on its own), so a replica whose lookup misses while a
    /// leader is storing one still finds the lease held, and waits for that verdict.
    async fn lookup_or_lease(
        &self,
        key: &CacheKey,
        lessee: &str,
        hold: Duration,
        now: UnixTime,
    ) -> Result<(Lookup, Lease), CacheError> {
        let lease = self.keys.token(key.digest()).lease(key.upstream());
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg(lease).arg(lessee).arg("NX").arg("PX").arg(hold_millis(hold));
        pipe.add_command(self.lookup_command(key));
        let (granted, reply): (Option<String>, Vec<Value>) =
            self.run("lookup_or_lease", self.connection.pipeline(&pipe)).await?;
        let lookup = read_lookup(reply, now)?;
        let settled =
            lookup.revoked_until.is_some() || lookup.entry.as_ref().is_some_and(|entry| entry.is_usable_at(now));
        let lease = match (granted.is_some(), settled) {
            (true, false) => Lease::Granted,
            (true, true) => {
                // A lease not given back expires on its own; the verdict found still stands.
                let _ = self.release_lease(key, lessee).await;
                Lease::NotAsked
            }
            (false, true) => Lease::NotAsked,
            (false, false) => Lease::HeldElsewhere,
        };
        Ok((lookup, lease))
    }

    async fn take_lease(&self, key: &CacheKey, lessee: &str, hold: Duration) -> Result<Lease, CacheError> {
        let lease = self.keys.token(key.digest()).lease(key.upstream());
        let set = redis::cmd("SET").arg(lease).arg(lessee).arg("NX").arg("PX").arg(hold_millis(hold)).clone();
        let stored: Option<String> = self.command("take_lease", set).await?;
        Ok(if stored.is_some() { Lease::Granted } else { Lease::HeldElsewhere })
    }

    async fn release_lease(&self, key: &CacheKey, lessee: &str) -> Result<(), CacheError> {
        let lease = self.keys.token(key.digest()).lease(key.upstream());
        let _released: i64 =
            self.script("release_lease", &RELEASE_LEASE_SCRIPT, &[lease], &[lessee.to_owned()]).await?;
        Ok(())
    }

    async fn record_exchange(
        &self,
        digest: &TokenDigest,
        client_id: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> Result<(), CacheError> {
        self.command("record_exchange", Self::exchange_command(&self.keys.token(digest), client_id, until, now)).await
    }

    async fn was_exchanged_by(&self, digest: &TokenDigest, client_id: &str, _: UnixTime) -> Result<bool, CacheError> {
        let mut keys = vec![self.keys.exchanged(digest, client_id)];
        keys.extend(self.legacy.as_ref().map(|legacy| legacy.exchanged(digest, client_id)));
        let found: u64 = self.command("was_exchanged_by", Cmd::exists(&keys)).await?;
        Ok(found > 0)
    }

    /// A SCAN of every primary for the upstream's entries: rare (a configuration reload),
    /// never on a request.
    async fn remove_upstream(&self, upstream: &str) -> Result<u64, CacheError> {
        let pattern = self.keys.upstream_entries_pattern(upstream);
        let mut removed = 0;
        for node in self.scan_targets().await? {
            let keys = self.scan(node.as_ref(), &pattern).await?;
            for batch in keys.chunks(500) {
                let deleted: u64 = self.command("remove_upstream", Cmd::del(batch)).await?;
                removed += deleted;
            }
        }
        Ok(removed)
    }

    async fn remove_subject(&self, issuer: Option<&str>, subject: &str) -> Result<u64, CacheError> {
        let digest = subject_digest(subject);
        let (index, unscored) = (self.keys.subject(&digest), self.keys.unscored_subject(&digest));
        // Every member, dead or not: the entries themselves say whether they are alive, and
        // the writers' clocks need not agree with this one's.
        let mut members: Vec<String> = self.command("purge", Cmd::zrange(&index, 0, -1)).await?;
        let older: Vec<String> = self.command("purge", Cmd::smembers(&unscored)).await?;
        let older: Vec<String> = older.into_iter().filter(|key| !members.contains(key)).collect();
        members.extend(older);
        let mut doomed = Vec::new();
        if !members.is_empty() {
            let entries: Vec<Option<Vec<u8>>> = self.command("purge", Cmd::mget(&members)).await?;
            for (redis_key, raw) in members.into_iter().zip(entries) {
                if decode_entry(raw).is_some_and(|e| is_entry_of_subject(&e, issuer, &digest)) {
                    doomed.push(redis_key);
                }
            }
        }
        if !doomed.is_empty() {
            let () = self.command("purge", Cmd::del(&doomed)).await?;
        }
        if issuer.is_none() {
            let () = self.command("purge", Cmd::del(&[index, unscored])).await?;
        } else if !doomed.is_empty() {
            let () = self.command("purge", Cmd::zrem(&index, &doomed)).await?;
        }
        Ok(u64::try_from(doomed.len()).unwrap_or(u64::MAX))
    }

    async fn publish(&self, invalidation: &Invalidation) -> Result<(), CacheError> {
        let message = serde_json::to_string(invalidation).map_err(unavailable)?;
        self.command("publish", Cmd::publish(self.keys.channel(), message)).await
    }

    async fn is_healthy(&self) -> bool {
        // A health probe must not wait for the backoff to end, nor start one.
        let ping = redis::cmd("PING");
        let probe = self.connection.command::<String>(&ping);
        matches!(tokio::time::timeout(self.timeout, probe).await, Ok(Ok(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn cluster_slots_name_each_primary_once() {
        let range = |start, end, port| {
            Value::Array(vec![
                Value::Int(start),
                Value::Int(end),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(port), bulk("id")]),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(port + 100), bulk("replica")]),
            ])
        };
        let slots = Value::Array(vec![range(0, 100, 7000), range(101, 200, 7001), range(201, 300, 7000)]);
        assert_eq!(cluster_primaries(&slots), vec![("127.0.0.1".to_owned(), 7000), ("127.0.0.1".to_owned(), 7001)]);
    }
}
