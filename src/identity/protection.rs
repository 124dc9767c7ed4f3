//! Upstream protection: what stands between a cache miss and the provider. Per upstream, a
//! circuit breaker (after `failure_threshold` consecutive failures the upstream is not called
//! for `cool_down`, then one probe decides) and a limit on calls under way (a slot is waited
//! for at most `queue_timeout`). Per client, a budget of upstream calls for tokens no cache
//! knows (`rate_limits.first_sight_per_client`), so a flood of distinct garbage tokens from one
//! client is refused with `slow_down` before it reaches the provider.
//!
//! Only the calls made for each token (introspection, userinfo: [`Route::Opaque`]) are guarded.
//! A JWT is verified offline; its upstream's one call, the JWKS fetch, is made at most once per
//! `jwks_refetch_cooldown` however many tokens arrive, and a stale key set keeps serving while
//! the issuer is down, which a breaker would only get in the way of.
//!
//! Everything here runs on the app's [`Clock`], so tests move time instead of waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::routing::Route;
use crate::clock::{Clock, SharedClock, UnixTime, whole_seconds_up};
use crate::metrics::Metrics;
use crate::upstream::{UpstreamProtection, UpstreamSettings};
use crate::vocabulary::{ValidationError, Vouched};

/// How long a caller refused for a full queue or a probe under way is told to wait.
const BRIEF_WAIT: Duration = Duration::from_secs(1);

/// The breaker states as `token_exchange_upstream_breaker_state` shows them.
const CLOSED: f64 = 0.0;
const HALF_OPEN: f64 = 1.0;
const OPEN: f64 = 2.0;

/// The guards of every upstream asked about each token, and the clients' budgets.
pub struct Protection {
    /// Replaced by [`Protection::configure`]; a call holds the guard that admitted it.
    guards: RwLock<HashMap<Arc<str>, Arc<Guard>>>,
    budget: Option<FirstSightBudget>,
    clock: SharedClock,
    metrics: Metrics,
}

impl Protection {
    /// `first_sight_budget` is the quota of upstream calls per client, none when off.
    pub fn new(
        upstreams: &[UpstreamSettings],
        first_sight_budget: Option<Quota>,
        clock: SharedClock,
        metrics: Metrics,
    ) -> Self {
        let budget = first_sight_budget.map(|quota| FirstSightBudget::new(quota, clock.clone()));
        let protection = Self { guards: RwLock::default(), budget, clock, metrics };
        protection.configure(upstreams);
        protection
    }

    /// Takes the upstreams of a (reloaded) configuration. An upstream whose protection did not
    /// change keeps its state, so an open breaker stays open; a changed one starts afresh.
    pub fn configure(&self, upstreams: &[UpstreamSettings]) {
        let mut guards = self.guards.write().unwrap_or_else(PoisonError::into_inner);
        let previous = std::mem::take(&mut *guards);
        for upstream in upstreams.iter().filter(|upstream| upstream.asks_per_token()) {
            let name: Arc<str> = upstream.name.as_str().into();
            let guard = match previous.get(&name) {
                Some(kept) if kept.settings == upstream.protection => kept.clone(),
                known => {
                    if known.is_none() {
                        self.metrics.upstream_calls_in_flight(&name, 0.0);
                    }
                    Arc::new(Guard::new(name.clone(), &upstream.protection, self.metrics.clone()))
                }
            };
            guards.insert(name, guard);
        }
    }

    /// Lets one call to `route`'s upstream go, made for `client`'s token, or says why not: an
    /// open breaker or a full queue is `Unavailable` (503), a spent budget `OverBudget` (429).
    /// The budget is spent before the queue, so a flooding client waits for no slot.
    pub async fn admit(&self, route: &Route, client: &str) -> Result<Admission, ValidationError> {
        let Some(guard) = self.guard_of(route) else { return Ok(Admission::unguarded()) };
        let pass = guard.pass(self.clock.now())?;
        if let Some(budget) = &self.budget {
            budget.spend(client).inspect_err(|_| self.metrics.first_sight_refusals(client, 1))?;
        }
        let in_flight = guard.slot(&*self.clock).await?;
        Ok(Admission { guarded: Some(Guarded { pass, _in_flight: in_flight, clock: self.clock.clone() }) })
    }

    fn guard_of(&self, route: &Route) -> Option<Arc<Guard>> {
        if !route.asks_provider() {
            return None;
        }
        let guards = self.guards.read().unwrap_or_else(PoisonError::into_inner);
        guards.get(route.upstream_name()).cloned()
    }
}

/// A call that may go ahead. Hand it the answer with [`Admission::settle`]; dropped without
/// one (the request went away), it frees its slot and lets the next call probe.
pub struct Admission {
    guarded: Option<Guarded>,
}

struct Guarded {
    pass: Pass,
    _in_flight: InFlight,
    clock: SharedClock,
}

impl Admission {
    fn unguarded() -> Self {
        Self { guarded: None }
    }

    /// Tells the breaker how the call went: only an upstream that could not answer counts
    /// against it, never a verdict on a token nor a refusal of our credentials.
    pub fn settle(self, answer: &Result<Vouched, ValidationError>) {
        let Some(Guarded { pass, _in_flight, clock }) = self.guarded else { return };
        let outcome = match answer {
            Err(ValidationError::Unavailable { retry_after, .. }) => Outcome::Unwell { retry_after: *retry_after },
            _ => Outcome::Answered,
        };
        pass.record(outcome, clock.now());
    }
}

/// How a call went, as the breaker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Answered,
    /// Timeout, connection error, 5xx, 429: `retry_after` is the upstream's own wish, if any.
    Unwell {
        retry_after: Option<Duration>,
    },
}

/// One upstream's breaker and slots.
struct Guard {
    upstream: Arc<str>,
    settings: UpstreamProtection,
    breaker: Option<Breaker>,
    slots: Option<Arc<Semaphore>>,
    metrics: Metrics,
}

impl Guard {
    fn new(upstream: Arc<str>, settings: &UpstreamProtection, metrics: Metrics) -> Self {
        let breaker = (settings.failure_threshold > 0).then(|| Breaker::new(settings));
        let slots = usize::try_from(settings.max_concurrent_calls)
            .ok()
            .filter(|slots| *slots > 0)
            .map(|slots| Arc::new(Semaphore::new(slots.min(Semaphore::MAX_PERMITS))));
        metrics.upstream_breaker_state(&upstream, CLOSED);
        for reason in ["breaker_open", "concurrency_limit"] {
            metrics.upstream_calls_refused(&upstream, reason, 0);
        }
        Self { upstream, settings: settings.clone(), breaker, slots, metrics }
    }

    fn pass(self: &Arc<Self>, now: UnixTime) -> Result<Pass, ValidationError> {
        let Some(breaker) = &self.breaker else { return Ok(Pass { guard: self.clone(), probe_since: None }) };
        let (admitted, changed) = breaker.admit(now);
        if let Some(state) = changed {
            self.show(state);
        }
        match admitted {
            Ok(probe) => Ok(Pass { guard: self.clone(), probe_since: probe.then_some(now) }),
            Err(retry_after) => {
                self.metrics.upstream_calls_refused(&self.upstream, "breaker_open", 1);
                Err(ValidationError::unavailable(
                    format!("the circuit breaker of upstream {} is open", self.upstream),
                    Some(retry_after),
                ))
            }
        }
    }

    /// A free slot, waited for at most `queue_timeout`; never an unbounded queue.
    async fn slot(self: &Arc<Self>, clock: &dyn Clock) -> Result<InFlight, ValidationError> {
        let permit = match &self.slots {
            None => None,
            Some(slots) => Some(match slots.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => self.wait_for_slot(slots.clone(), clock).await?,
            }),
        };
        self.metrics.upstream_calls_in_flight(&self.upstream, 1.0);
        Ok(InFlight { guard: self.clone(), _permit: permit })
    }

    async fn wait_for_slot(
        &self,
        slots: Arc<Semaphore>,
        clock: &dyn Clock,
    ) -> Result<OwnedSemaphorePermit, ValidationError> {
        let waited = tokio::select! {
            permit = slots.acquire_owned() => permit.ok(),
            () = clock.sleep(self.settings.queue_timeout) => None,
        };
        waited.ok_or_else(|| {
            self.metrics.upstream_calls_refused(&self.upstream, "concurrency_limit", 1);
            ValidationError::unavailable(
                format!("upstream {} has {} calls under way", self.upstream, self.settings.max_concurrent_calls),
                Some(BRIEF_WAIT),
            )
        })
    }

    /// The breaker's state in `/metrics` and, when it opens or closes, in the log.
    fn show(&self, state: State) {
        let upstream = &*self.upstream;
        match state {
            State::Closed { .. } => {
                tracing::info!(upstream, "circuit breaker closed: the upstream answers again");
                self.metrics.upstream_breaker_state(upstream, CLOSED);
            }
            State::Probing => self.metrics.upstream_breaker_state(upstream, HALF_OPEN),
            State::Open { until } => {
                tracing::warn!(upstream, %until, "circuit breaker open: the upstream is not called until then");
                self.metrics.upstream_breaker_state(upstream, OPEN);
            }
        }
    }
}

/// A call the breaker let through; a probe that ends without an outcome lets the next call
/// probe at once.
struct Pass {
    guard: Arc<Guard>,
    probe_since: Option<UnixTime>,
}

impl Pass {
    fn record(mut self, outcome: Outcome, now: UnixTime) {
        let probe = self.probe_since.take().is_some();
        if let Some(breaker) = &self.guard.breaker
            && let Some(state) = breaker.record(probe, outcome, now)
        {
            self.guard.show(state);
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if let (Some(since), Some(breaker)) = (self.probe_since.take(), &self.guard.breaker)
            && breaker.abandon_probe(since)
        {
            self.guard.metrics.upstream_breaker_state(&self.guard.upstream, OPEN);
        }
    }
}

/// A call under way: it holds its slot, and counts in `token_exchange_upstream_calls_in_flight`.
struct InFlight {
    guard: Arc<Guard>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.guard.metrics.upstream_calls_in_flight(&self.guard.upstream, -1.0);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    /// No call until then; the first call after it is the probe.
    Open {
        until: UnixTime,
    },
    /// Half-open: the probe is out, everyone else is refused until it answers.
    Probing,
}

/// Consecutive failures open it; after `cool_down`, exactly one probe decides: an answer
/// closes it, a failure opens it again.
struct Breaker {
    failure_threshold: u32,
    cool_down: Duration,
    state: Mutex<State>,
}

impl Breaker {
    fn new(settings: &UpstreamProtection) -> Self {
        Self {
            failure_threshold: settings.failure_threshold,
            cool_down: settings.cool_down,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Ok(true)` for the probe, `Ok(false)` for an ordinary call, `Err` with how long to
    /// wait; and the new state when this changed it.
    fn admit(&self, now: UnixTime) -> (Result<bool, Duration>, Option<State>) {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => (Ok(false), None),
            State::Open { until } if now < until => (Err(now.until(until)), None),
            State::Open { .. } => {
                *state = State::Probing;
                (Ok(true), Some(State::Probing))
            }
            State::Probing => (Err(BRIEF_WAIT), None),
        }
    }

    /// The new state, when the outcome changed it. Calls admitted before the breaker opened
    /// may still answer after: only the probe speaks while it is open or half-open.
    fn record(&self, probe: bool, outcome: Outcome, now: UnixTime) -> Option<State> {
        let mut state = self.lock();
        let next = match (*state, probe, outcome) {
            (State::Probing, true, Outcome::Answered) | (State::Closed { .. }, false, Outcome::Answered) => {
                State::Closed { failures: 0 }
            }
            (State::Probing, true, Outcome::Unwell { retry_after }) => self.open(now, retry_after),
            (State::Closed { failures }, false, Outcome::Unwell { retry_after }) => {
                let failures = failures.saturating_add(1);
                if failures >= self.failure_threshold {
                    self.open(now, retry_after)
                } else {
                    State::Closed { failures }
                }
            }
            (unchanged, _, _) => unchanged,
        };
        let changed = std::mem::discriminant(&next) != std::mem::discriminant(&*state);
        *state = next;
        changed.then_some(next)
    }

    /// Open for the cool-down, or longer when the upstream asked for longer (its `Retry-After`
    /// is capped where it is read).
    fn open(&self, now: UnixTime, retry_after: Option<Duration>) -> State {
        State::Open { until: now + self.cool_down.max(retry_after.unwrap_or_default()) }
    }

    /// A probe that never answered: open, but due, so the next call probes. Whether it was
    /// still the one out.
    fn abandon_probe(&self, since: UnixTime) -> bool {
        let mut state = self.lock();
        let probing = *state == State::Probing;
        if probing {
            *state = State::Open { until: since };
        }
        probing
    }
}

/// Per client, upstream calls for tokens never seen before: governor's GCRA on the app's clock.
struct FirstSightBudget {
    limiter: RateLimiter<String, DefaultKeyedStateStore<String>, AppClock, NoOpMiddleware<Nanos>>,
}

impl FirstSightBudget {
    fn new(quota: Quota, clock: SharedClock) -> Self {
        // Keys are authenticated client ids only, so the state stays as small as the registry.
        Self { limiter: RateLimiter::new(quota, DefaultKeyedStateStore::default(), AppClock(clock)) }
    }

    fn spend(&self, client: &str) -> Result<(), ValidationError> {
        self.limiter.check_key(&client.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(self.limiter.clock()));
            ValidationError::OverBudget { retry_after: whole_seconds_up(wait) }
        })
    }
}

/// Whole seconds, rounded up, at least one: what `Retry-After` can say.
/// The app's clock as governor reads one. Whole seconds are fine grain enough for a budget
/// counted per minute, and a test that pins the clock pins the budget.
struct AppClock(SharedClock);

impl governor::clock::Clock for AppClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        let seconds = u64::try_from(self.0.now().as_secs()).unwrap_or(0);
        Nanos::new(seconds.saturating_mul(1_000_000_000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failure_threshold: u32, cool_down: u64) -> Breaker {
        Breaker::new(&UpstreamProtection {
            failure_threshold,
            cool_down: Duration::from_secs(cool_down),
            ..UpstreamProtection::default()
        })
    }

    const UNWELL: Outcome = Outcome::Unwell { retry_after: None };

    fn at(secs: i64) -> UnixTime {
        UnixTime::from_secs(secs)
    }

    #[test]
    fn consecutive_failures_open_the_breaker_and_an_answer_in_between_starts_the_count_again() {
        let breaker = breaker(3, 30);
        breaker.record(false, UNWELL, at(0));
        breaker.record(false, UNWELL, at(0));
        breaker.record(false, Outcome::Answered, at(0));
        breaker.record(false, UNWELL, at(0));
        breaker.record(false, UNWELL, at(0));
        assert_eq!(breaker.admit(at(0)).0, Ok(false), "two in a row since the answer");

        assert_eq!(breaker.record(false, UNWELL, at(0)), Some(State::Open { until: at(30) }));
        assert_eq!(breaker.admit(at(10)).0, Err(Duration::from_secs(20)), "Retry-After is the rest of the cool-down");
    }

    #[test]
    fn after_the_cool_down_exactly_one_probe_goes_and_its_answer_closes_the_breaker() {
        let breaker = breaker(1, 30);
        breaker.record(false, UNWELL, at(0));

        assert_eq!(breaker.admit(at(30)), (Ok(true), Some(State::Probing)));
        assert_eq!(breaker.admit(at(30)).0, Err(BRIEF_WAIT), "one probe at a time");
        breaker.record(false, Outcome::Answered, at(31));
        assert_eq!(breaker.admit(at(31)).0, Err(BRIEF_WAIT), "a straggler's answer is not the probe's");
        assert_eq!(breaker.record(true, Outcome::Answered, at(31)), Some(State::Closed { failures: 0 }));
        assert_eq!(breaker.admit(at(31)).0, Ok(false));
    }

    #[test]
    fn a_failed_probe_opens_the_breaker_for_another_cool_down_or_the_upstreams_longer_wish() {
        let breaker = breaker(1, 30);
        breaker.record(false, UNWELL, at(0));
        assert_eq!(breaker.admit(at(30)).0, Ok(true), "the probe");

        let wish = Outcome::Unwell { retry_after: Some(Duration::from_secs(120)) };
        assert_eq!(breaker.record(true, wish, at(32)), Some(State::Open { until: at(152) }));
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_call_probe() {
        let breaker = breaker(1, 30);
        breaker.record(false, UNWELL, at(0));
        assert_eq!(breaker.admit(at(30)).0, Ok(true), "the probe");

        assert!(breaker.abandon_probe(at(30)));

        assert_eq!(breaker.admit(at(31)).0, Ok(true));
    }

    #[test]
    fn a_budget_refuses_past_its_quota_until_the_app_clock_refills_it() {
        let clock = crate::clock::FixedClock::at(1_000);
        let two_a_minute = std::num::NonZeroU32::new(2).unwrap();
        let quota = Quota::with_period(Duration::from_secs(30)).unwrap().allow_burst(two_a_minute);
        let budget = FirstSightBudget::new(quota, Arc::new(clock.clone()));
        assert!(budget.spend("a").is_ok() && budget.spend("a").is_ok());

        assert_eq!(budget.spend("a"), Err(ValidationError::OverBudget { retry_after: Duration::from_secs(30) }));
        assert!(budget.spend("b").is_ok(), "every client has its own");
        clock.advance(Duration::from_secs(30));
        assert!(budget.spend("a").is_ok());
    }
}
