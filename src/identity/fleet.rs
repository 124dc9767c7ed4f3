//! One upstream call per token across the fleet. Within a process, misses of one key already
//! share one load; across replicas, the first to miss takes a short lease in the shared cache
//! and asks the upstream, and the others wait for the verdict it stores there. A leader that
//! dies leaves a lease that expires, and the next waiter takes over; a waiter never waits
//! longer than a leader may take; a shared cache that fails leaves each process on its own.

use std::time::Duration;

use crate::cache::{CacheEntry, CacheError, CacheKey, IdentityCache, Lease, Lookup};
use crate::clock::{Clock as _, Stopwatch, SystemClock, UnixTime};

/// The first pause between two looks at the shared cache; it doubles up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(2);
const LONGEST_PAUSE: Duration = Duration::from_millis(25);

/// What the shared cache says of a key, and who asks the upstream when it says nothing.
pub(super) enum Found {
    Revoked(UnixTime),
    /// `waited` when another replica's call was waited for.
    Entry {
        entry: CacheEntry,
        waited: bool,
    },
    /// This replica asks; `leased` when it holds the fleet's lease (to give back on failure),
    /// `took_over` when it got it after waiting (the leader failed or died).
    Ask {
        leased: bool,
        took_over: bool,
    },
    /// Another replica held the lease past the time a leader may take.
    GaveUp,
}

/// This replica's part in the fleet's single flight.
pub(super) struct FleetFlight {
    /// Names this process as the holder of its leases.
    lessee: String,
    /// How long a lease is held: what one upstream call may take, and a margin.
    hold: Duration,
}

impl FleetFlight {
    pub(super) fn new(hold: Duration) -> Self {
        Self { lessee: uuid::Uuid::new_v4().to_string(), hold }
    }

    /// The shared cache's verdict on `key`; when it has none and `asks_provider` (the route
    /// calls an upstream per token), waits its turn with the other replicas.
    pub(super) async fn find(
        &self,
        shared: &dyn IdentityCache,
        key: &CacheKey,
        asks_provider: bool,
        now: UnixTime,
    ) -> Result<Found, CacheError> {
        if !asks_provider {
            // Offline verification costs less than any coordination would.
            let found = settled(shared.lookup(key, now).await?, now, false);
            return Ok(found.unwrap_or(Found::Ask { leased: false, took_over: false }));
        }
        let stopwatch = Stopwatch::start();
        let mut pause = FIRST_PAUSE;
        let mut waited = false;
        loop {
            let (lookup, lease) = shared.lookup_or_lease(key, &self.lessee, self.hold, now).await?;
            if let Some(found) = settled(lookup, now, waited) {
                return Ok(found);
            }
            // Something stale was found in the way (an entry past its time on our clock).
            let lease =
                if lease == Lease::NotAsked { shared.take_lease(key, &self.lessee, self.hold).await? } else { lease };
            if lease == Lease::Granted {
                return Ok(Found::Ask { leased: true, took_over: waited });
            }
            if stopwatch.elapsed() >= self.longest_wait() {
                return Ok(Found::GaveUp);
            }
            // Real time, not the app's clock: the lease expires in Redis's time.
            SystemClock.sleep(pause).await;
            pause = (pause * 2).min(LONGEST_PAUSE);
            waited = true;
        }
    }

    /// Gives the lease back so a waiting replica may try at once (this one's call failed).
    pub(super) async fn release(&self, shared: &dyn IdentityCache, key: &CacheKey) {
        let _ = shared.release_lease(key, &self.lessee).await;
    }

    /// A leader that dies is replaced when its lease expires; a waiter that has seen no
    /// verdict by then, plus one pause, stops waiting.
    fn longest_wait(&self) -> Duration {
        self.hold + LONGEST_PAUSE
    }
}

/// A verdict the shared cache holds for `now`, if any.
fn settled(lookup: Lookup, now: UnixTime, waited: bool) -> Option<Found> {
    if let Some(until) = lookup.revoked_until {
        return Some(Found::Revoked(until));
    }
    lookup.entry.filter(|entry| entry.is_usable_at(now)).map(|entry| Found::Entry { entry, waited })
}
