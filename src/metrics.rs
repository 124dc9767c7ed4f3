//! Prometheus metrics. Each application has its own recorder (nothing process-global), handed
//! to the parts that count; this module is the only place that names a metric, so the set of
//! series is visible in one screen.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// What reads a gauge off its owner when `/metrics` is scraped.
type Observer = Box<dyn Fn(&Metrics) + Send + Sync>;

/// The recorder of one application. Cloning shares it.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    observers: Arc<std::sync::Mutex<Vec<Observer>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new();
        let builder = match builder.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS) {
            Ok(with_buckets) => with_buckets,
            Err(_) => PrometheusBuilder::new(),
        };
        Self { recorder: Arc::new(builder.build_recorder()), observers: Arc::default() }
    }

    /// Runs `observe` at every scrape, for gauges that are cheaper to read than to keep up to
    /// date on every change. It gets the recorder, so it need not hold (and cycle back to) it.
    pub fn observe_at_scrape(&self, observe: impl Fn(&Metrics) + Send + Sync + 'static) {
        self.observers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Box::new(observe));
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        for observe in self.observers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            observe(self);
        }
        let handle = self.recorder.handle();
        handle.run_upkeep();
        handle.render()
    }

    fn record(&self, count: impl FnOnce()) {
        metrics::with_local_recorder(&*self.recorder, count);
    }

    /// The outcome of one call to the token endpoint: `issued` or the OAuth error code. Only
    /// authenticated client ids become label values, so strangers cannot inflate the series.
    pub fn exchange(&self, outcome: &'static str, client: Option<&str>) {
        let client = client.unwrap_or("unauthenticated").to_owned();
        self.record(|| {
            metrics::counter!("token_exchange_exchanges_total", "outcome" => outcome, "client" => client).increment(1);
        });
    }

    /// `tier` is `l1` (in process) or `l2` (Redis); `result` is `hit`, `negative_hit` or `miss`.
    pub fn cache_lookup(&self, tier: &'static str, result: &'static str) {
        self.record(|| {
            metrics::counter!("token_exchange_cache_lookups_total", "tier" => tier, "result" => result).increment(1);
        });
    }

    /// A miss of an opaque token through the shared cache: this replica `led` the upstream
    /// call, `took_over` from a leader that failed or died, was `answered_by_another`, or
    /// `gave_up` waiting.
    pub fn fleet_single_flight(&self, outcome: &'static str) {
        self.record(|| {
            metrics::counter!("token_exchange_fleet_single_flight_total", "outcome" => outcome).increment(1)
        });
    }

    /// How full the in-process identity cache is: records (tokens with a verdict or a holder),
    /// their estimated bytes, and the bound on those bytes (`cache.max_bytes`, its share).
    pub fn identity_cache_size(&self, records: u64, bytes: u64, max_bytes: u64) {
        self.record(|| {
            metrics::gauge!("token_exchange_identity_cache_records").set(records as f64);
            metrics::gauge!("token_exchange_identity_cache_bytes").set(bytes as f64);
            metrics::gauge!("token_exchange_identity_cache_max_bytes").set(max_bytes as f64);
        });
    }

    /// A request that waited for another request's upstream call for the same token.
    pub fn coalesced_wait(&self) {
        self.record(|| metrics::counter!("token_exchange_singleflight_waits_total").increment(1));
    }

    /// One forward-auth decision: the route (or `none`), `allowed` or the refusal, and its time.
    pub fn forward_auth_decision(&self, route: &str, outcome: &'static str, elapsed: Duration) {
        let route = route.to_owned();
        self.record(|| {
            metrics::counter!("token_exchange_forward_auth_decisions_total", "route" => route.clone(), "outcome" => outcome)
                .increment(1);
            metrics::histogram!("token_exchange_forward_auth_decision_duration_seconds", "route" => route)
                .record(elapsed.as_secs_f64());
        });
    }

    /// The signing keys as the scrape sees them: whether one may sign, how long it has, and
    /// how many keys are published.
    pub fn signing_keys(&self, signing_for: Option<Duration>, published: usize) {
        self.record(|| {
            metrics::gauge!("token_exchange_signing_key_active").set(if signing_for.is_some() { 1.0 } else { 0.0 });
            metrics::gauge!("token_exchange_signing_key_age_seconds")
                .set(signing_for.unwrap_or_default().as_secs_f64());
            metrics::gauge!("token_exchange_published_keys").set(published as f64);
        });
    }

    /// A request refused by a rate limit: `endpoint` is `token`, `revoke` or `forward_auth`;
    /// `scope` what the limit counts per (`client`, `peer`, `unauthenticated_peer`).
    pub fn rate_limited(&self, endpoint: &'static str, scope: &'static str) {
        self.record(|| {
            metrics::counter!("token_exchange_rate_limited_total", "endpoint" => endpoint, "scope" => scope)
                .increment(1);
        });
    }

    /// A rate limit in force: its series is exported from the start, at zero.
    pub fn rate_limits_in_force(&self, endpoint: &'static str, scope: &'static str) {
        self.record(|| {
            metrics::counter!("token_exchange_rate_limited_total", "endpoint" => endpoint, "scope" => scope)
                .increment(0);
        });
    }

    /// 1 while an upstream refuses us (our credentials, a missing endpoint, unusable answers),
    /// 0 once it answers again; every upstream starts at 0.
    pub fn upstream_misconfigured(&self, upstream: &str, misconfigured: bool) {
        let upstream = upstream.to_owned();
        self.record(|| {
            metrics::gauge!("token_exchange_upstream_misconfigured", "upstream" => upstream).set(if misconfigured {
                1.0
            } else {
                0.0
            });
        });
    }

    /// The circuit breaker of an upstream: 0 closed, 1 half-open (one probe out), 2 open.
    pub fn upstream_breaker_state(&self, upstream: &str, state: f64) {
        let upstream = upstream.to_owned();
        self.record(|| metrics::gauge!("token_exchange_upstream_breaker_state", "upstream" => upstream).set(state));
    }

    /// A call to an upstream refused before it was made: `reason` is `breaker_open` or
    /// `concurrency_limit`. `count` 0 exports the series before the first refusal.
    pub fn upstream_calls_refused(&self, upstream: &str, reason: &'static str, count: u64) {
        let upstream = upstream.to_owned();
        self.record(|| {
            metrics::counter!("token_exchange_upstream_calls_refused_total", "upstream" => upstream, "reason" => reason)
                .increment(count);
        });
    }

    /// Calls to an upstream under way: `change` is +1 when one starts, -1 when it ends, and
    /// 0 exports the series.
    pub fn upstream_calls_in_flight(&self, upstream: &str, change: f64) {
        let upstream = upstream.to_owned();
        self.record(|| {
            metrics::gauge!("token_exchange_upstream_calls_in_flight", "upstream" => upstream).increment(change)
        });
    }

    /// A request refused because its client spent its budget of upstream calls for tokens
    /// never seen before. Only authenticated client ids become label values; `count` 0
    /// exports the series of a client before its first refusal.
    pub fn first_sight_refusals(&self, client: &str, count: u64) {
        let client = client.to_owned();
        self.record(|| {
            metrics::counter!("token_exchange_first_sight_refusals_total", "client" => client).increment(count);
        });
    }

    pub fn redis_error(&self, operation: &'static str) {
        self.record(|| {
            metrics::counter!("token_exchange_redis_errors_total", "operation" => operation).increment(1);
        });
    }

    pub fn upstream_request(&self, upstream: &str, kind: &'static str, status: String, elapsed: Duration) {
        let upstream = upstream.to_owned();
        self.record(|| {
            metrics::counter!("token_exchange_upstream_requests_total", "upstream" => upstream.clone(), "kind" => kind, "status" => status)
                .increment(1);
            metrics::histogram!("token_exchange_upstream_request_duration_seconds", "upstream" => upstream, "kind" => kind)
                .record(elapsed.as_secs_f64());
        });
    }
}
