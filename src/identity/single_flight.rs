//! Single flight in one process: of the requests that miss the cache for one token at the same
//! time, one asks (the leader) and the others wait for its answer, success or failure alike.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
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
    pub async fn run(&self, key: &K, load: impl Future<Output = V>) -> (V, bool) {
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

impl<K: Hash + Eq + Clone, V: Clone, S: BuildHasher + Default> Default for SingleFlight<K, V, S> {
    fn default() -> Self {
        Self::new()
    }
}

/// Ends the flight when the first of its callers is done (or dropped), so a later miss asks
/// again instead of reading an old answer; a newer flight for the same key is left alone.
struct Landing<'a, K: Hash + Eq, V, S: BuildHasher> {
    flights: &'a SingleFlight<K, V, S>,
    key: &'a K,
    flight: &'a Arc<OnceCell<V>>,
}

impl<K: Hash + Eq, V, S: BuildHasher> Drop for Landing<'_, K, V, S> {
    fn drop(&mut self) {
        let mut flights = self.flights.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if flights.get(self.key).is_some_and(|current| Arc::ptr_eq(current, self.flight)) {
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

        let answers = futures_util::future::join_all((0..10).map(|_| flights.run(&"token", load()))).await;

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

        let answers = futures_util::future::join_all((0..3).map(|_| flights.run(&"token", failing()))).await;
        let (later, led) = flights.run(&"token", async { Ok(1) }).await;

        assert!(answers.iter().all(|(value, _)| value.is_err()));
        assert_eq!((later, led), (Ok(1), true));
    }

    #[tokio::test]
    async fn a_leader_that_goes_away_hands_the_flight_to_a_waiter() {
        let flights = Flights::new();
        let abandoned = flights.run(&"token", std::future::pending());
        let gone = tokio::time::timeout(Duration::from_millis(10), abandoned);
        let waiter = async {
            tokio::task::yield_now().await;
            flights.run(&"token", async { Ok(2) }).await
        };

        let (timed_out, (value, led)) = tokio::join!(gone, waiter);

        assert!(timed_out.is_err());
        assert_eq!((value, led), (Ok(2), true));
    }
}
