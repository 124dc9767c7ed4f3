//! Rate limits: per authenticated client on `/token` and `/revoke`, per trusted proxy peer on
//! `/forward-auth`, and per peer address for failed client authentications on both client
//! endpoints. Each is a keyed GCRA limiter of the `governor` crate: a bucket of `count` requests
//! that refills evenly over `per`, so `"5000/s"` allows bursts of 5000 and 5000 a second.
//!
//! The failed-authentication limit complements the lockout in `clients/` (per client id and
//! peer): it counts every failure of a peer whatever client id it names, and once the peer is
//! over it, the peer's next requests are refused before any secret is verified (no argon2).
//!
//! `first_sight_per_client` is configured here and spent in `identity::protection`, the one
//! place that knows when a request turns into an upstream call; that budget runs on the app's
//! clock, since it guards calls and not request rates.
//!
//! Time: governor reads its own monotonic clock (quanta), not the application's [`Clock`].
//! A rate limiter measures real elapsed time between requests, which a pinned test clock
//! must not stop; only the clean-up timer ([`RateLimits::maintain`]) runs on the app's clock.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock, QuantaInstant, Reference as _};
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::Deserialize;

use crate::clock::SharedClock;
use crate::metrics::Metrics;

/// `[rate_limits]`. Every limit is `"<count>/<s|min|h>"`, or `0` / `"off"` to switch it off.
/// The defaults are far above what a gateway sends; they stop floods, not traffic.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// `POST /token` per authenticated client id.
    pub token_per_client: Rate,
    /// Requests a client may send at once on `/token`; defaults to the count of its rate.
    pub token_burst: Option<u32>,
    /// `POST /revoke` per authenticated client id.
    pub revoke_per_client: Rate,
    /// `/forward-auth` per trusted proxy address (every proxy shares nothing with the others).
    pub forward_auth_per_peer: Rate,
    /// Requests a proxy may send at once on `/forward-auth`; defaults to the count of its rate.
    pub forward_auth_burst: Option<u32>,
    /// Failed client authentications (`invalid_client`) per peer address on `/token` and
    /// `/revoke`, whatever client id they name; over it, the peer is answered 429 at once.
    pub unauthenticated_failures_per_peer: Rate,
    /// Upstream calls a client may cause for tokens no cache knows (`identity` spends it;
    /// forward-auth spends the route's client's); over it, 429 `slow_down`. The bucket holds
    /// the rate's count, and it refills on the app's clock.
    pub first_sight_per_client: Rate,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            token_per_client: Rate::new(200_000, Duration::from_secs(1)),
            token_burst: None,
            revoke_per_client: Rate::new(1000, Duration::from_secs(1)),
            forward_auth_per_peer: Rate::new(200_000, Duration::from_secs(1)),
            forward_auth_burst: None,
            unauthenticated_failures_per_peer: Rate::new(100, Duration::from_secs(60)),
            first_sight_per_client: Rate::new(6000, Duration::from_secs(60)),
        }
    }
}

impl RateLimitSettings {
    /// Problems that types alone cannot catch, by key below `rate_limits`.
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut problems = Vec::new();
        for (key, burst) in [("token_burst", self.token_burst), ("forward_auth_burst", self.forward_auth_burst)] {
            if burst == Some(0) {
                problems.push((key, "must be at least 1 (switch the limit off with its rate instead)"));
            }
        }
        for (key, rate) in [
            ("token_per_client", self.token_per_client),
            ("revoke_per_client", self.revoke_per_client),
            ("forward_auth_per_peer", self.forward_auth_per_peer),
            ("unauthenticated_failures_per_peer", self.unauthenticated_failures_per_peer),
            ("first_sight_per_client", self.first_sight_per_client),
        ] {
            if rate.count > 0 && rate.quota(None).is_none() {
                problems.push((key, "is more than one request per nanosecond"));
            }
        }
        problems
    }
}

/// `count` requests per `per`; a count of 0 is no limit.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    pub const OFF: Rate = Rate { count: 0, per: Duration::from_secs(1) };

    pub const fn new(count: u32, per: Duration) -> Self {
        Self { count, per }
    }

    /// The governor quota: one request back every `per / count`, `burst` (default `count`) at
    /// once. None when off (or finer than a nanosecond).
    pub fn quota(self, burst: Option<u32>) -> Option<Quota> {
        let count = NonZeroU32::new(self.count)?;
        let burst = burst.and_then(NonZeroU32::new).unwrap_or(count);
        Some(Quota::with_period(self.per / count.get())?.allow_burst(burst))
    }
}

impl fmt::Debug for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return f.write_str("off");
        }
        match self.per.as_secs() {
            3600 => write!(f, "{}/h", self.count),
            60 => write!(f, "{}/min", self.count),
            _ => write!(f, "{}/s", self.count),
        }
    }
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text == "off" || text == "0" {
            return Ok(Self::OFF);
        }
        let invalid = || format!("`{text}` is not a rate such as \"100/s\", \"10/min\" or \"5/h\" (or \"off\")");
        let (count, unit) = text.split_once('/').ok_or_else(invalid)?;
        let count: u32 = count.trim().parse().map_err(|_| invalid())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(invalid()),
        };
        Ok(if count == 0 { Self::OFF } else { Self::new(count, per) })
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Rate;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate such as \"100/s\", \"10/min\" or \"5/h\", or 0 or \"off\"")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Rate, E> {
                text.parse().map_err(E::custom)
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Rate, E> {
                if value == 0 { Ok(Rate::OFF) } else { Err(E::custom("a number alone may only be 0 (off)")) }
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Rate, E> {
                self.visit_u64(u64::try_from(value).map_err(|_| E::custom("a rate cannot be negative"))?)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The endpoints that are limited, as the metrics label them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Token,
    Revoke,
    ForwardAuth,
}

impl Endpoint {
    pub fn label(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Revoke => "revoke",
            Self::ForwardAuth => "forward_auth",
        }
    }
}

/// Over a limit: come back after `retry_after` (whole seconds, at least one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
}

impl Limited {
    fn after(wait: Duration) -> Self {
        Self { retry_after: crate::clock::whole_seconds_up(wait) }
    }
}

/// What a metrics label says the limit was counted per.
const PER_CLIENT: &str = "client";
const PER_PEER: &str = "peer";
const PER_FAILING_PEER: &str = "unauthenticated_peer";

/// Every limiter of one application.
pub struct RateLimits {
    token: Option<DefaultKeyedRateLimiter<String>>,
    revoke: Option<DefaultKeyedRateLimiter<String>>,
    forward_auth: Option<DefaultKeyedRateLimiter<IpAddr>>,
    failures: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Peers over the failure limit, until when: refused before their credentials are checked.
    cut_off: Mutex<HashMap<IpAddr, QuantaInstant>>,
    clock: DefaultClock,
    metrics: Metrics,
}

/// A keyed limiter for `rate`, none when it is off.
fn limiter<K: Clone + Eq + std::hash::Hash>(rate: Rate, burst: Option<u32>) -> Option<DefaultKeyedRateLimiter<K>> {
    rate.quota(burst).map(DefaultKeyedRateLimiter::keyed)
}

/// How often limiter state of keys that are back to a full bucket is dropped.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

impl RateLimits {
    pub fn new(settings: &RateLimitSettings, metrics: Metrics) -> Self {
        let limits = Self {
            token: limiter(settings.token_per_client, settings.token_burst),
            revoke: limiter(settings.revoke_per_client, None),
            forward_auth: limiter(settings.forward_auth_per_peer, settings.forward_auth_burst),
            failures: limiter(settings.unauthenticated_failures_per_peer, None),
            cut_off: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
            metrics,
        };
        // The series of every limit in force exist from the start, at zero.
        let mut active = Vec::new();
        if limits.token.is_some() {
            active.push((Endpoint::Token, PER_CLIENT));
        }
        if limits.revoke.is_some() {
            active.push((Endpoint::Revoke, PER_CLIENT));
        }
        if limits.forward_auth.is_some() {
            active.push((Endpoint::ForwardAuth, PER_PEER));
        }
        if limits.failures.is_some() {
            active.extend([(Endpoint::Token, PER_FAILING_PEER), (Endpoint::Revoke, PER_FAILING_PEER)]);
        }
        for (endpoint, scope) in active {
            limits.metrics.rate_limits_in_force(endpoint.label(), scope);
        }
        limits
    }

    /// One request of an authenticated client on `/token` or `/revoke`.
    pub fn client(&self, endpoint: Endpoint, client_id: &str) -> Result<(), Limited> {
        let limiter = match endpoint {
            Endpoint::Token => &self.token,
            Endpoint::Revoke => &self.revoke,
            Endpoint::ForwardAuth => return Ok(()),
        };
        let Some(limiter) = limiter else { return Ok(()) };
        limiter.check_key(&client_id.to_owned()).map_err(|not_until| {
            self.metrics.rate_limited(endpoint.label(), PER_CLIENT);
            Limited::after(not_until.wait_time_from(self.clock.now()))
        })
    }

    /// One `/forward-auth` request of a trusted proxy.
    pub fn forward_auth(&self, peer: Option<IpAddr>) -> Result<(), Limited> {
        let (Some(limiter), Some(peer)) = (&self.forward_auth, peer) else { return Ok(()) };
        limiter.check_key(&peer.to_canonical()).map_err(|not_until| {
            self.metrics.rate_limited(Endpoint::ForwardAuth.label(), PER_PEER);
            Limited::after(not_until.wait_time_from(self.clock.now()))
        })
    }

    /// Before client authentication: refused while the peer is over its failure limit.
    pub fn may_authenticate(&self, endpoint: Endpoint, peer: Option<IpAddr>) -> Result<(), Limited> {
        let Some(peer) = peer.filter(|_| self.failures.is_some()) else { return Ok(()) };
        let cut_off = self.cut_off.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(until) = cut_off.get(&peer.to_canonical()) else { return Ok(()) };
        let wait: Duration = until.duration_since(self.clock.now()).into();
        if wait.is_zero() {
            return Ok(());
        }
        drop(cut_off);
        self.metrics.rate_limited(endpoint.label(), PER_FAILING_PEER);
        Err(Limited::after(wait))
    }

    /// A failed client authentication from `peer`; over the limit, the peer is cut off until
    /// its bucket has room again, and this request is refused as well.
    pub fn authentication_failed(&self, endpoint: Endpoint, peer: Option<IpAddr>) -> Result<(), Limited> {
        let (Some(limiter), Some(peer)) = (&self.failures, peer) else { return Ok(()) };
        let peer = peer.to_canonical();
        limiter.check_key(&peer).map_err(|not_until| {
            self.cut_off.lock().unwrap_or_else(PoisonError::into_inner).insert(peer, not_until.earliest_possible());
            self.metrics.rate_limited(endpoint.label(), PER_FAILING_PEER);
            Limited::after(not_until.wait_time_from(self.clock.now()))
        })
    }

    /// Keys never expire in governor: every [`MAINTENANCE_INTERVAL`] of the app's clock, the
    /// state of keys whose bucket is full again, and cut-offs that have ended, are dropped.
    pub async fn maintain(self: Arc<Self>, clock: SharedClock) {
        loop {
            clock.sleep(MAINTENANCE_INTERVAL).await;
            self.forget_idle();
        }
    }

    fn forget_idle(&self) {
        for limiter in [&self.token, &self.revoke].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        for limiter in [&self.forward_auth, &self.failures].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let now = self.clock.now();
        let mut cut_off = self.cut_off.lock().unwrap_or_else(PoisonError::into_inner);
        cut_off.retain(|_, until| *until > now);
        cut_off.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_from_text_and_zero_is_off() {
        assert_eq!("100/s".parse::<Rate>(), Ok(Rate::new(100, Duration::from_secs(1))));
        assert_eq!(" 10 / min ".parse::<Rate>(), Ok(Rate::new(10, Duration::from_secs(60))));
        assert_eq!("5/h".parse::<Rate>(), Ok(Rate::new(5, Duration::from_secs(3600))));
        for off in ["off", "0", "0/s"] {
            assert_eq!(off.parse::<Rate>(), Ok(Rate::OFF), "{off}");
        }
        for bad in ["", "ten/s", "10", "10/day", "-1/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
        assert_eq!(format!("{:?}", Rate::new(7, Duration::from_secs(60))), "7/min");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(Limited::after(Duration::ZERO).retry_after, Duration::from_secs(1));
        assert_eq!(Limited::after(Duration::from_millis(1500)).retry_after, Duration::from_secs(2));
        assert_eq!(Limited::after(Duration::from_secs(60)).retry_after, Duration::from_secs(60));
    }

    #[test]
    fn a_failing_peer_is_cut_off_and_others_are_not() {
        let settings = RateLimitSettings {
            unauthenticated_failures_per_peer: Rate::new(2, Duration::from_secs(3600)),
            ..RateLimitSettings::default()
        };
        let limits = RateLimits::new(&settings, Metrics::new());
        let (peer, other) = (Some(IpAddr::from([10, 0, 0, 1])), Some(IpAddr::from([10, 0, 0, 2])));
        assert!(limits.authentication_failed(Endpoint::Token, peer).is_ok());
        assert!(limits.authentication_failed(Endpoint::Token, peer).is_ok());
        assert!(limits.may_authenticate(Endpoint::Token, peer).is_ok());
        let limited = limits.authentication_failed(Endpoint::Token, peer).unwrap_err();
        assert!(limited.retry_after > Duration::from_secs(1000), "{limited:?}");
        assert!(limits.may_authenticate(Endpoint::Revoke, peer).is_err());
        assert!(limits.may_authenticate(Endpoint::Token, other).is_ok());
        limits.forget_idle();
        assert!(limits.may_authenticate(Endpoint::Token, peer).is_err(), "still cut off after maintenance");
    }
}
