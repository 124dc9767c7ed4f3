//! Who is this token: routing to the one responsible upstream, the cache tiers (in process,
//! then Redis), the TTL and negative-cache policy, single flight, revocation and purge by
//! subject. Every door (`/token`, `/revoke`, `/admin/purge`) goes through [`IdentityService`].

mod fleet;
mod policy;
mod protection;
mod routing;
mod single_flight;

use std::sync::Arc;
use std::time::Duration;

pub use policy::CachePolicy;
pub use protection::Protection;

/// Who asks for a revocation, as far as RFC 7009 §2.1 cares.
#[derive(Debug, Clone, Copy)]
pub struct Revoker<'a> {
    pub client_id: &'a str,
    /// Admin clients may revoke any token, also ones they never exchanged.
    pub may_revoke_any: bool,
}

/// The client that presents a token to [`IdentityService::resolve`].
#[derive(Debug, Clone, Copy)]
pub struct Presenter<'a> {
    pub client_id: &'a str,
    /// As its subject token (not as an actor token): the client holds it, and may revoke it.
    pub holds_token: bool,
}

impl<'a> Presenter<'a> {
    fn holder(self) -> Option<&'a str> {
        self.holds_token.then_some(self.client_id)
    }
}

/// What a revocation request did. Both are answered 200 (RFC 7009 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    Revoked,
    NotEntitled,
}

/// A cap on how long a revocation is kept, however far away a token's unverified `exp` is.
const LONGEST_REVOCATION: Duration = Duration::from_secs(366 * 24 * 3600);
use fleet::{FleetFlight, Found};
use routing::Route;
pub use routing::Routes;
use single_flight::SingleFlight;

use crate::cache::{
    CacheEntry, CacheError, CacheKey, DigestHashing, IdentityCache, Invalidation, MemoryCache, subject_digest,
};
use crate::clock::UnixTime;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::upstream::unverified_claims;
use crate::vocabulary::{SubjectToken, TokenDigest, ValidatedIdentity, ValidationError, Vouched};

/// Turns a token into a validated identity: in-process cache, then the shared cache, then
/// the one responsible upstream, remembering the answer as long as it may be trusted.
pub struct IdentityService {
    /// Replaced by a configuration reload; a resolution under way finishes on its snapshot.
    routes: Live<Routes>,
    local: MemoryCache,
    /// Misses under way in this process: one upstream call per token, however many ask.
    flights: SingleFlight<CacheKey, Result<Arc<CacheEntry>, ValidationError>, DigestHashing>,
    shared: Option<Arc<dyn IdentityCache>>,
    policy: CachePolicy,
    fleet: FleetFlight,
    metrics: Metrics,
    /// Upstreams whose last answer showed a misconfiguration, for `/readyz` and operators.
    misconfigured: std::sync::Mutex<std::collections::BTreeSet<Arc<str>>>,
    /// Breakers and slots per upstream, budgets per client: between a miss and the upstream.
    protection: Protection,
}

impl IdentityService {
    pub fn new(
        routes: Routes,
        local: MemoryCache,
        shared: Option<Arc<dyn IdentityCache>>,
        policy: CachePolicy,
        metrics: Metrics,
        protection: Protection,
    ) -> Self {
        for upstream in routes.names() {
            metrics.upstream_misconfigured(upstream, false);
        }
        let fleet = FleetFlight::new(policy.upstream_lease);
        let misconfigured = Default::default();
        let flights = SingleFlight::new();
        Self { routes: Live::new(routes), local, flights, shared, policy, fleet, metrics, misconfigured, protection }
    }

    /// What a reload reconfigures before the routes that lead to the upstreams.
    pub fn protection(&self) -> &Protection {
        &self.protection
    }

    /// Upstreams that refuse us now (our credentials, a missing endpoint, unusable answers).
    pub fn misconfigured_upstreams(&self) -> Vec<String> {
        self.misconfigured.lock().map(|set| set.iter().map(|name| name.to_string()).collect()).unwrap_or_default()
    }

    fn note_misconfigured(&self, upstream: &Arc<str>, misconfigured: bool) {
        let Ok(mut set) = self.misconfigured.lock() else { return };
        let changed = if misconfigured { set.insert(upstream.clone()) } else { set.remove(upstream) };
        if changed {
            self.metrics.upstream_misconfigured(upstream, misconfigured);
        }
    }

    /// Takes the upstreams of a reloaded configuration. Verdicts of the `changed` upstreams
    /// were given under settings no longer in force: they are dropped here and in Redis.
    pub async fn reconfigure(&self, routes: Routes, changed: &[String]) {
        for upstream in routes.names() {
            self.metrics.upstream_misconfigured(upstream, false);
        }
        if let Ok(mut misconfigured) = self.misconfigured.lock() {
            misconfigured.retain(|name| !changed.iter().any(|c| c.as_str() == &**name));
        }
        self.routes.replace(routes);
        for upstream in changed {
            let mut removed = self.local.remove_upstream(upstream).await.unwrap_or(0);
            if let Some(shared) = &self.shared {
                removed += shared.remove_upstream(upstream).await.unwrap_or(0);
            }
            tracing::info!(upstream, removed, "verdicts of a reconfigured upstream dropped");
        }
    }

    #[tracing::instrument(name = "resolve", skip_all, fields(token, tier))]
    /// Who `token` belongs to, asked by `presenter`. Its first-sight budget pays for an
    /// upstream call on a miss. When it presents the token as its subject token, that is
    /// remembered, because only a client that exchanged a token may revoke it (RFC 7009
    /// §2.1); the leader of a miss writes that record with the entry, in one round trip.
    pub async fn resolve(
        &self,
        token: &SubjectToken,
        bound_upstream: Option<&str>,
        presenter: Presenter<'_>,
        now: UnixTime,
    ) -> Result<ValidatedIdentity, ValidationError> {
        let holder = presenter.holder();
        // Computed once: the span, the keys and the revocation checks all name the token by it.
        let digest = token.digest();
        tracing::Span::current().record("token", tracing::field::display(digest.fingerprint()));
        let route = self.routes.current().route(token, bound_upstream)?;
        let key = CacheKey::new(route.upstream_name().clone(), digest);
        if self.is_revoked_locally(&digest, now).await {
            return Err(revoked());
        }
        if let Some(entry) = self.local.get_usable(&key, now) {
            tracing::Span::current().record("tier", "l1");
            self.metrics.cache_lookup("l1", hit_kind(&entry));
            let identity = entry.into_result()?;
            self.remember_holder(&digest, holder, &identity, now).await;
            return Ok(identity);
        }
        self.metrics.cache_lookup("l1", "miss");
        let miss = Box::pin(async {
            let entry = self.load(&route, token, &key, presenter, now).await?;
            // Kept before the flight lands, so a request after it finds the entry here.
            self.local.insert(&key, &entry, now).await;
            Ok(Arc::new(entry))
        });
        let (entry, led) = self.flights.run(&key, miss).await;
        // A revocation that landed while the upstream was being asked wins over its answer.
        if self.is_revoked_locally(&digest, now).await {
            return Err(revoked());
        }
        let identity = entry?.to_result()?;
        if !led {
            tracing::Span::current().record("tier", "singleflight_wait");
            self.metrics.coalesced_wait();
            self.remember_holder(&digest, holder, &identity, now).await;
        }
        Ok(identity)
    }

    async fn is_revoked_locally(&self, digest: &TokenDigest, now: UnixTime) -> bool {
        self.local.is_revoked(digest, now).await.unwrap_or(false)
    }

    /// Runs once per key at a time (the single-flight leader).
    async fn load(
        &self,
        route: &Route,
        token: &SubjectToken,
        key: &CacheKey,
        presenter: Presenter<'_>,
        now: UnixTime,
    ) -> Result<CacheEntry, ValidationError> {
        let holder = presenter.holder();
        let mut leased = false;
        if let Some(shared) = &self.shared {
            match self.fleet.find(&**shared, key, route.asks_provider(), now).await {
                // Revocations outlive restarts and reach replicas that never saw the message.
                Ok(Found::Revoked(until)) => {
                    let _ = self.local.revoke(key.digest(), until, now).await;
                    return Err(revoked());
                }
                Ok(Found::Entry { entry, waited }) => {
                    tracing::Span::current().record("tier", if waited { "fleet_wait" } else { "l2" });
                    self.metrics.cache_lookup("l2", hit_kind(&entry));
                    if waited {
                        self.metrics.fleet_single_flight("answered_by_another");
                    }
                    if let Some(identity) = entry.identity() {
                        self.remember_holder(key.digest(), holder, identity, now).await;
                    }
                    return Ok(entry);
                }
                Ok(Found::Ask { leased: lease, took_over }) => {
                    self.metrics.cache_lookup("l2", "miss");
                    leased = lease;
                    if lease {
                        self.metrics.fleet_single_flight(if took_over { "took_over" } else { "led" });
                    }
                }
                Ok(Found::GaveUp) => {
                    self.metrics.fleet_single_flight("gave_up");
                    return Err(ValidationError::unavailable(
                        "another replica is asking the upstream about this token and has not answered in time",
                        Some(Duration::from_secs(1)),
                    ));
                }
                Err(_) => {} // counted and logged by the backend; carry on without it
            }
        }
        tracing::Span::current().record("tier", "upstream");
        // Refused here, the upstream was not asked: nothing to note, nothing to remember.
        let admission = match self.protection.admit(route, presenter.client_id).await {
            Ok(admission) => admission,
            Err(refused) => {
                self.give_lease_back(leased, key).await;
                return Err(refused);
            }
        };
        let answer = route.validate(token, now).await;
        admission.settle(&answer);
        if !matches!(answer, Err(ValidationError::Unavailable { .. })) {
            self.note_misconfigured(route.upstream_name(), matches!(answer, Err(ValidationError::Misconfigured(_))));
        }
        let entry = match answer {
            Ok(vouched) => self.positive_entry(vouched, key, now).await,
            Err(ValidationError::Rejected(reason)) => self.policy.rejected(reason, now),
            // Transient or operator trouble: remembered nowhere, the next request asks again,
            // and a replica waiting for this one's answer may ask at once.
            Err(other) => {
                self.give_lease_back(leased, key).await;
                return Err(other);
            }
        };
        match (entry.identity(), holder) {
            (Some(identity), Some(holder)) => {
                let until = self.revocation_horizon(now, identity.expires_at);
                let _ = self.local.record_exchange(key.digest(), holder, until, now).await;
                if let Some(shared) = &self.shared {
                    let _ = shared.put_with_holder(key, &entry, holder, until, now).await;
                }
            }
            _ => {
                if let Some(shared) = &self.shared {
                    let _ = shared.put(key, &entry, now).await;
                }
            }
        }
        Ok(entry)
    }

    /// This replica will not answer for the token after all: a waiting replica may ask at once.
    async fn give_lease_back(&self, leased: bool, key: &CacheKey) {
        if let (true, Some(shared)) = (leased, &self.shared) {
            self.fleet.release(&**shared, key).await;
        }
    }

    /// Computed only now that the upstream has answered. A provider's fixed token lifetime
    /// counts from the first sighting of the token, shared between replicas.
    async fn positive_entry(&self, vouched: Vouched, key: &CacheKey, now: UnixTime) -> CacheEntry {
        let mut identity = vouched.identity;
        if identity.expires_at.is_none()
            && let Some(lifetime) = vouched.lifetime_from_first_sight
        {
            let dies_at = self.first_seen(key, now, lifetime).await + lifetime;
            if dies_at <= now {
                return self.policy.rejected("the token has outlived the provider's token lifetime", now);
            }
            identity.expires_at = Some(dies_at);
        }
        self.policy.valid(identity, vouched.trust_for, now)
    }

    /// The first sighting is shared through Redis when there is one, so every replica counts
    /// a provider's fixed lifetime from the same moment. It is remembered for twice that
    /// lifetime, so a token past it stays refused rather than starting a new life.
    async fn first_seen(&self, key: &CacheKey, now: UnixTime, lifetime: Duration) -> UnixTime {
        let remember_for = lifetime.saturating_mul(2);
        // Kept in process too, so a Redis that fails for a moment never starts a new life.
        let here = self.local.first_seen(key, now, remember_for).await.unwrap_or(now);
        match &self.shared {
            Some(shared) => shared.first_seen(key, now, remember_for).await.map_or(here, |first| first.min(here)),
            None => here,
        }
    }

    /// Remembers that `holder` presented the token, for as long as the token may be used.
    /// Written to Redis once per process and pair; the hot path only reads the process's memo.
    async fn remember_holder(
        &self,
        digest: &TokenDigest,
        holder: Option<&str>,
        identity: &ValidatedIdentity,
        now: UnixTime,
    ) {
        let Some(holder) = holder else { return };
        if self.local.was_exchanged_by(digest, holder, now).await.unwrap_or(false) {
            return;
        }
        let until = self.revocation_horizon(now, identity.expires_at);
        let _ = self.local.record_exchange(digest, holder, until, now).await;
        if let Some(shared) = &self.shared {
            let _ = shared.record_exchange(digest, holder, until, now).await;
        }
    }

    /// RFC 7009: refuse the token from now on, here and on every replica, for as long as it
    /// could live (at least `max_ttl`), and drop what is cached of it. A client may revoke only
    /// tokens it exchanged (§2.1), an admin client any; other requests change nothing. Fails
    /// when the revocation could not be shared, so the caller can try again.
    pub async fn revoke(
        &self,
        token: &SubjectToken,
        revoker: Revoker<'_>,
        now: UnixTime,
    ) -> Result<Revocation, CacheError> {
        let digest = token.digest();
        if !revoker.may_revoke_any && !self.was_exchanged_by(&digest, revoker.client_id, now).await {
            tracing::info!(security_event = "revocation_ignored", token = %digest.fingerprint(), client_id = revoker.client_id, "revocation of a token the client never exchanged");
            return Ok(Revocation::NotEntitled);
        }
        let keys: Vec<CacheKey> =
            self.routes.current().names().iter().map(|name| CacheKey::new(name.clone(), digest)).collect();
        let mut known_expiry = unverified_claims(token).and_then(|claims| claims.expires_at());
        for key in &keys {
            if let Some(exp) = self.cached_expiry(key, now).await {
                known_expiry = known_expiry.max(Some(exp));
            }
        }
        let until = self.revocation_horizon(now, known_expiry);
        self.local.revoke(&digest, until, now).await?;
        self.local.drop_keys(&keys);
        if let Some(shared) = &self.shared {
            shared.revoke(&digest, until, now).await?;
            shared.publish(&Invalidation::Revoke { digest: digest.to_hex(), until }).await?;
            let _ = shared.remove(&keys).await;
        }
        tracing::info!(security_event = "token_revoked", token = %digest.fingerprint(), %until, "token revoked");
        Ok(Revocation::Revoked)
    }

    async fn was_exchanged_by(&self, digest: &TokenDigest, client_id: &str, now: UnixTime) -> bool {
        if self.local.was_exchanged_by(digest, client_id, now).await.unwrap_or(false) {
            return true;
        }
        match &self.shared {
            Some(shared) => shared.was_exchanged_by(digest, client_id, now).await.unwrap_or(false),
            None => false,
        }
    }

    /// The subject token's expiry as any tier remembers it.
    async fn cached_expiry(&self, key: &CacheKey, now: UnixTime) -> Option<UnixTime> {
        let expiry = |entry: &CacheEntry| entry.identity().and_then(|identity| identity.expires_at);
        if let Some(entry) = self.local.get_usable(key, now) {
            return expiry(&entry);
        }
        let shared = self.shared.as_ref()?;
        shared.get(key).await.ok().flatten().as_ref().and_then(expiry)
    }

    /// How long a token may still be presented: until its expiry when known, never less than
    /// `max_ttl` (the longest we would trust an answer about it), and never beyond a year,
    /// whatever an unverified `exp` claims.
    fn revocation_horizon(&self, now: UnixTime, expiry: Option<UnixTime>) -> UnixTime {
        let floor = now + self.policy.max_ttl;
        expiry.map_or(floor, |exp| exp.max(floor)).min(now + LONGEST_REVOCATION)
    }

    /// Drops every cached identity of a subject, here and on every replica; the next
    /// exchange of any of its tokens asks the upstream again.
    pub async fn purge_subject(&self, issuer: Option<&str>, subject: &str) -> u64 {
        let mut removed = self.local.remove_subject(issuer, subject).await.unwrap_or(0);
        if let Some(shared) = &self.shared {
            removed += shared.remove_subject(issuer, subject).await.unwrap_or(0);
            let message = Invalidation::PurgeSubject {
                issuer: issuer.map(str::to_owned),
                subject_digest: subject_digest(subject),
            };
            let _ = shared.publish(&message).await;
        }
        tracing::info!(security_event = "subject_purged", removed, "cached identities of a subject purged");
        removed
    }

    /// `None` without a shared cache; otherwise whether it answers.
    /// Where one-time claims (client assertion `jti`s) are kept: Redis when configured, so every
    /// replica refuses a replay, else this process.
    pub fn replay_store(&self) -> &dyn IdentityCache {
        match &self.shared {
            Some(shared) => shared.as_ref(),
            None => &self.local,
        }
    }

    pub async fn shared_cache_healthy(&self) -> Option<bool> {
        match &self.shared {
            Some(shared) => Some(shared.is_healthy().await),
            None => None,
        }
    }
}

fn hit_kind(entry: &CacheEntry) -> &'static str {
    if entry.identity().is_some() { "hit" } else { "negative_hit" }
}

fn revoked() -> ValidationError {
    ValidationError::rejected("the token was revoked")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;

    /// actix copies each request's whole future into the heap, hit or miss: the miss path's
    /// state must stay out of it (inline, it made the token endpoint's future 150 KiB).
    #[test]
    fn a_resolution_does_not_carry_the_miss_path_in_its_future() {
        let metrics = Metrics::new();
        let protection = Protection::new(&[], None, Arc::new(FixedClock::at(0)), metrics.clone());
        let minute = Duration::from_secs(60);
        let policy =
            CachePolicy { max_ttl: minute, negative_ttl: minute, expiry_leeway: minute, upstream_lease: minute };
        let service =
            IdentityService::new(Routes::new(vec![], vec![]), MemoryCache::new(8), None, policy, metrics, protection);
        let token = SubjectToken::new("opaque".to_owned());
        let presenter = Presenter { client_id: "gateway", holds_token: true };
        let resolution = service.resolve(&token, None, presenter, UnixTime::from_secs(0));
        let bytes = size_of_val(&resolution);
        assert!(bytes <= 2048, "the resolution's future takes {bytes} bytes");
    }
}
