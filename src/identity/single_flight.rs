//! Single flight in one process: of the requests that miss the cache for one token at the same
//! time, one asks (the leader) and the others wait for its answer, success or failure alike.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OnceCell;

pub struct SingleFlight<K, V, S> {
    flights: Mutex<HashMap<K, Arc<OnceCell<V>>, S>>,
}

impl<K: Hash + Eq + Clone, V: Clone, S: BuildHasher + Default> SingleFlight<K, V, S> {
    pub fn new() -> Self {
        Self { flights: Mutex::new(HashMap::default()) }
    }

    /// The value `load` produces for `key`, or the one a call already under way for `key`
    /// produces; and whether this call ran `load`. A leader that is dropped before it finishes
    /// (its request went away) hands the flight to one of the waiters.
    ///
    /// `load` comes boxed: a load is the slow, rare path, and held inline it would sit twice
    /// in this future and so in every caller's, which actix copies into the heap on every
    /// request, cache hits included.
    pub async fn run<F: Future<Output = V>>(&self, key: &K, load: Pin<Box<F>>) -> (V, bool) {
        let flight = Arc::clone(self.lock().entry(key.clone()).or_default());
        let _landing = Landing { flights: self, key, flight: &flight };
        let mut led = false;
        let value = flight
            .get_or_init(|| {
                led = true;
                load
            })
            .await
            .clone();
        (value, led)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Arc<OnceCell<V>>, S>> {
        self.flights.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Ends the flight once it has its answer, so a later miss asks again instead of reading an old
/// one, or when its last caller went away without one. A caller that goes away while others
/// still wait leaves it to them: a new request joins them rather than asking a second time.
/// A newer flight for the same key is left alone.
struct Landing<'a, K: Hash + Eq + Clone, V: Clone, S: BuildHasher + Default> {
    flights: &'a SingleFlight<K, V, S>,
    key: &'a K,
    flight: &'a Arc<OnceCell<V>>,
}

impl<K: Hash + Eq + Clone, V: Clone, S: BuildHasher + Default> Drop for Landing<'_, K, V, S> {
    fn drop(&mut self) {
        let mut flights = self.flights.lock();
        // Callers join under this lock: two references are the map's and this caller's.
        let over = self.flight.initialized() || Arc::strong_count(self.flight) <= 2;
        if over && flights.get(self.key).is_some_and(|current| Arc::ptr_eq(current, self.flight)) {
            flights.remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::RandomState;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    type Flights = SingleFlight<&'static str, Result<u32, String>, RandomState>;

    #[tokio::test]
    async fn concurrent_callers_for_one_key_share_one_load() {
        let flights = Flights::new();
        let loads = AtomicUsize::new(0);
        let load = || async {
            loads.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(7)
        };

        let answers = futures_util::future::join_all((0..10).map(|_| flights.run(&"token", Box::pin(load())))).await;

        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert!(answers.iter().all(|(value, _)| *value == Ok(7)));
        assert_eq!(answers.iter().filter(|(_, led)| *led).count(), 1);
    }

    #[tokio::test]
    async fn a_failure_is_shared_with_the_waiters_and_not_kept() {
        let flights = Flights::new();
        let failing = || async {
            tokio::task::yield_now().await;
            Err::<u32, _>("upstream down".to_owned())
        };

        let answers = futures_util::future::join_all((0..3).map(|_| flights.run(&"token", Box::pin(failing())))).await;
        let (later, led) = flights.run(&"token", Box::pin(async { Ok(1) })).await;

        assert!(answers.iter().all(|(value, _)| value.is_err()));
        assert_eq!((later, led), (Ok(1), true));
    }

    #[tokio::test]
    async fn a_waiter_that_goes_away_leaves_the_flight_to_the_others() {
        let flights = Flights::new();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let loads = AtomicUsize::new(0);
        let leader = flights.run(
            &"token",
            Box::pin(async {
                loads.fetch_add(1, Ordering::SeqCst);
                let _ = released.await;
                Ok(3)
            }),
        );
        let impatient = async {
            tokio::task::yield_now().await;
            let waiting = flights.run(&"token", Box::pin(async { Ok(0) }));
            // Polled once, so it joins the flight, then dropped.
            let _ = futures_util::poll!(Box::pin(waiting));
        };
        let latecomer = async {
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            let answer = flights.run(&"token", Box::pin(async { Ok(4) }));
            let _ = release.send(());
            answer.await
        };

        let ((first, led), (), (late, late_led)) = tokio::join!(leader, impatient, latecomer);

        assert_eq!((first, led), (Ok(3), true));
        assert_eq!((late, late_led), (Ok(3), false), "the latecomer started a second flight");
    }

    #[tokio::test]
    async fn a_leader_that_goes_away_hands_the_flight_to_a_waiter() {
        let flights = Flights::new();
        let abandoned = flights.run(&"token", Box::pin(std::future::pending()));
        let gone = tokio::time::timeout(Duration::from_millis(10), abandoned);
        let waiter = async {
            tokio::task::yield_now().await;
            flights.run(&"token", Box::pin(async { Ok(2) })).await
        };

        let (timed_out, (value, led)) = tokio::join!(gone, waiter);

        assert!(timed_out.is_err());
        assert_eq!((value, led), (Ok(2), true));
    }
}
