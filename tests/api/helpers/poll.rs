//! Waiting for what happens asynchronously (a message between replicas, a server coming up):
//! ask again until it holds, within a deadline. Never a sleep sized after the code's timers;
//! those are driven by moving the app's clock.

use std::time::Duration;

/// How long an asynchronous effect may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);
const POLL_EVERY: Duration = Duration::from_millis(20);

/// What a probe answers: `true`/`Some(value)` once the effect is there.
pub trait Settled {
    type Value;
    fn settled(self) -> Option<Self::Value>;
}

impl Settled for bool {
    type Value = ();
    fn settled(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Settled for Option<T> {
    type Value = T;
    fn settled(self) -> Option<T> {
        self
    }
}

/// Runs `probe` until it reports the effect `what` describes, and returns what it found;
/// fails the test when that takes longer than the deadline.
pub async fn eventually<T: Settled>(what: &str, mut probe: impl AsyncFnMut() -> T) -> T::Value {
    let attempts = async {
        loop {
            if let Some(value) = probe().await.settled() {
                return value;
            }
            pause().await;
        }
    };
    match tokio::time::timeout(DEADLINE, attempts).await {
        Ok(value) => value,
        Err(_) => panic!("not within {DEADLINE:?}: {what}"),
    }
}

#[expect(clippy::disallowed_methods, reason = "a bounded poll of a real-time effect, not a stand-in for a timer")]
async fn pause() {
    tokio::time::sleep(POLL_EVERY).await;
}
