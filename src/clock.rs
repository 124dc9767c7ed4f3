//! Time, and the one place that reads it. Instants are [`UnixTime`], lengths are
//! [`std::time::Duration`]; they meet only through the saturating arithmetic below. Everything
//! else takes `now` as an argument, or asks a [`Clock`] for it and for sleeps, so tests move
//! time forward instead of waiting for it (clippy's `disallowed-methods` enforces this).

use std::fmt;
use std::future::Future;
use std::ops::{Add, Sub};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An instant, in whole seconds since the Unix epoch (a JWT NumericDate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixTime(i64);

impl UnixTime {
    pub const fn from_secs(secs: i64) -> Self {
        Self(secs)
    }

    pub const fn as_secs(self) -> i64 {
        self.0
    }

    /// How long from `self` until `later`; zero when `later` is not after `self`.
    pub fn until(self, later: UnixTime) -> Duration {
        Duration::from_secs(u64::try_from(later.0.saturating_sub(self.0)).unwrap_or(0))
    }
}

/// `wait` rounded up to whole seconds, and at least one: what a `Retry-After` header can say.
pub fn whole_seconds_up(wait: Duration) -> Duration {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Duration::from_secs(seconds.max(1))
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The one conversion from a length to seconds: saturating, whole seconds.
fn whole_secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

impl Add<Duration> for UnixTime {
    type Output = UnixTime;

    fn add(self, duration: Duration) -> UnixTime {
        UnixTime(self.0.saturating_add(whole_secs(duration)))
    }
}

impl Sub<Duration> for UnixTime {
    type Output = UnixTime;

    fn sub(self, duration: Duration) -> UnixTime {
        UnixTime(self.0.saturating_sub(whole_secs(duration)))
    }
}

type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A source of the current time, and of sleeps measured in that time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> UnixTime;

    /// Resolves once this clock has moved `duration` past the moment of the call.
    fn sleep(&self, duration: Duration) -> Sleep<'_>;
}

pub type SharedClock = Arc<dyn Clock>;

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(clippy::disallowed_methods, reason = "the system clock is the one reader of wall-clock time")]
    fn now(&self) -> UnixTime {
        UnixTime(chrono::Utc::now().timestamp())
    }

    #[expect(clippy::disallowed_methods, reason = "the system clock's sleeps are real ones")]
    fn sleep(&self, duration: Duration) -> Sleep<'_> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A clock that only moves when told to; shared by clones. Sleeps end when it is advanced past
/// their deadline, so a test drives timers by moving time.
#[derive(Debug, Clone)]
pub struct FixedClock(Arc<tokio::sync::watch::Sender<i64>>);

impl FixedClock {
    pub fn at(now: i64) -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(now)))
    }

    pub fn advance(&self, duration: Duration) {
        self.0.send_modify(|now| *now = now.saturating_add(whole_secs(duration)));
    }

    pub fn set(&self, now: UnixTime) {
        self.0.send_replace(now.0);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> UnixTime {
        UnixTime(*self.0.borrow())
    }

    fn sleep(&self, duration: Duration) -> Sleep<'_> {
        let deadline = self.now() + duration;
        let mut moves = self.0.subscribe();
        Box::pin(async move {
            // The sender lives as long as this clock, so the wait ends only by the deadline.
            let _ = moves.wait_for(|now| *now >= deadline.0).await;
        })
    }
}

/// Elapsed real time for latency figures (metrics, access log), from the monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(std::time::Instant);

impl Stopwatch {
    #[expect(clippy::disallowed_methods, reason = "latency is measured on the monotonic clock, here only")]
    pub fn start() -> Self {
        Self(std::time::Instant::now())
    }

    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

/// Durations as operators write them in configuration: `"5m"`, `"30s"`, `"1h 30m"`, or a whole
/// number of seconds. For `#[serde(with = "crate::clock::written")]`.
pub mod written {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de::Error};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Seconds(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        match Written::deserialize(deserializer)? {
            Written::Seconds(secs) => Ok(Duration::from_secs(secs)),
            Written::Text(text) => match text.trim().parse::<u64>() {
                Ok(secs) => Ok(Duration::from_secs(secs)),
                Err(_) => humantime::parse_duration(text.trim())
                    .map_err(|e| D::Error::custom(format!("`{text}` is not a duration like \"30s\" or \"5m\": {e}"))),
            },
        }
    }

    /// An optional duration, for `#[serde(default, with = "crate::clock::written::optional")]`.
    pub mod optional {
        use std::time::Duration;

        use serde::Deserializer;

        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(deserializer).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instant_arithmetic_saturates() {
        let end = UnixTime::from_secs(i64::MAX - 1) + Duration::from_secs(u64::MAX);
        assert_eq!(end, UnixTime::from_secs(i64::MAX));
        assert_eq!(UnixTime::from_secs(10).until(UnixTime::from_secs(4)), Duration::ZERO);
        assert_eq!(UnixTime::from_secs(4).until(UnixTime::from_secs(10)), Duration::from_secs(6));
    }

    #[tokio::test]
    async fn a_fixed_clock_sleep_ends_when_time_is_moved_past_it() {
        let clock = FixedClock::at(100);
        let sleeper = clock.clone();
        let sleep = tokio::spawn(async move { sleeper.sleep(Duration::from_secs(60)).await });
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(59));
        tokio::task::yield_now().await;
        assert!(!sleep.is_finished());
        clock.advance(Duration::from_secs(1));
        assert!(tokio::time::timeout(Duration::from_secs(5), sleep).await.is_ok());
    }
}
