//! One value per thread, for clients whose connections are driven by a task: a thread that
//! keeps to its own value awaits replies on the thread that drives its connection, with no
//! wake-up crossing to another worker.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Enough for the threads of a service (its HTTP workers and its runtime's); threads beyond
/// them share values.
const SLOTS: usize = 8;

/// A fixed set of values, each handed to the threads of one slot.
pub struct PerThread<T> {
    values: Box<[T]>,
}

impl<T> PerThread<T> {
    pub fn new(make: impl FnMut(usize) -> T) -> Self {
        Self { values: (0..SLOTS).map(make).collect() }
    }

    pub fn try_new<E>(make: impl FnMut(usize) -> Result<T, E>) -> Result<Self, E> {
        Ok(Self { values: (0..SLOTS).map(make).collect::<Result<_, E>>()? })
    }

    /// The value of the calling thread.
    pub fn get(&self) -> &T {
        &self.values[slot_of_this_thread()]
    }

    pub fn all(&self) -> impl Iterator<Item = &T> {
        self.values.iter()
    }
}

/// The slot of the calling thread, handed out in turn on its first call.
fn slot_of_this_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS;
    }
    SLOT.with(|slot| *slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_to_one_value() {
        let values = PerThread::new(|slot| slot);
        let here = *values.get();
        assert_eq!(*values.get(), here);
        let there = std::thread::scope(|s| s.spawn(|| [*values.get(), *values.get()]).join().unwrap());
        assert_eq!(there[0], there[1]);
        assert_eq!(values.all().count(), SLOTS);
    }
}
