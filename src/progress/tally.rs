//! Counting items done without slowing the per-item loop.
//!
//! A task of the pool counts in a register and publishes when its stretch
//! of items ends, or when the watcher asks for fresh counts
//! ([`Tally::refresh`], ten times a second while a bar or a sink looks):
//! its per-item loop then checks the run's pulse in place of the horizon
//! (see [`crate::cancel`]), the same one relaxed load, so a watched task
//! folds at the speed of an unwatched one and never reads the clock.
//! Publications go to the publishing worker's own cache line, which the
//! watcher sums.
//!
//! A thread that folds *and* draws (a sequential run) cannot be asked: it
//! folds in batches that a [`Publisher`] sizes by the clock.

use crate::cancel::Shortcircuit;
use crate::sync::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

/// Publishing more often than this doubles the batch.
const TOO_OFTEN: Duration = Duration::from_millis(20);
/// Publishing less often than this halves the batch.
const TOO_RARELY: Duration = Duration::from_millis(100);

/// How many counters a tally keeps: a worker adds to the one of its index,
/// modulo this (other threads to the first), so that workers never write
/// the same cache line.
const SLOTS: usize = 8;

/// The shared count of items done in one run.
pub(crate) struct Tally {
    /// Items done and published, in [`SLOTS`] counters. `Relaxed`: only
    /// read for display; the last publications happen before the run's
    /// final `join`, which orders them before the reader's final read.
    done: [CachePadded<AtomicU64>; SLOTS],
    /// The run whose tasks publish here, asked for fresh counts by
    /// [`refresh`](Self::refresh).
    run: Mutex<Option<Arc<Shortcircuit>>>,
}

impl Tally {
    pub(crate) fn new() -> Tally {
        Tally {
            done: std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))),
            run: Mutex::new(None),
        }
    }

    /// Items done so far.
    pub(crate) fn done(&self) -> u64 {
        self.done
            .iter()
            .fold(0u64, |sum, slot| sum.wrapping_add(slot.load(Ordering::Relaxed)))
    }

    /// Count `items` done, by this thread or elsewhere (on another rank).
    #[inline]
    pub(crate) fn add(&self, items: u64) {
        let slot = rayon::current_thread_index().map_or(0, |index| index % SLOTS);
        self.done[slot].fetch_add(items, Ordering::Relaxed);
    }

    /// The tasks of `run` publish here: [`refresh`](Self::refresh) asks
    /// them.
    pub(crate) fn follow(&self, run: &Arc<Shortcircuit>) {
        *self.run.lock() = Some(Arc::clone(run));
    }

    /// Ask the run's tasks to publish what they have counted, for the next
    /// look at [`done`](Self::done): each leaves its per-item loop once.
    pub(crate) fn refresh(&self) {
        if let Some(run) = &*self.run.lock() {
            run.nudge();
        }
    }
}

/// Batches for a thread that folds and draws by turns (a sequential run):
/// how many items to fold before the next look at the display, sized so
/// that the clock is read a few times a second whatever the items cost.
pub(crate) struct Publisher<'t> {
    tally: &'t Tally,
    published: usize,
    stride: usize,
    last: Option<Instant>,
}

impl<'t> Publisher<'t> {
    pub(crate) fn new(tally: &'t Tally) -> Publisher<'t> {
        Publisher {
            tally,
            published: 0,
            stride: 1,
            last: None,
        }
    }

    /// How many items to fold before the next [`publish`](Self::publish).
    pub(crate) fn next_run(&self) -> usize {
        self.stride
    }

    /// Publish the items counted since the last call (`counted` is the
    /// running total) and adapt the batch size to the time it took.
    #[cold]
    pub(crate) fn publish(&mut self, counted: usize) {
        self.flush(counted);
        let now = Instant::now();
        if let Some(last) = self.last {
            let took = now - last;
            if took < TOO_OFTEN {
                self.stride = self.stride.saturating_mul(2);
            } else if took > TOO_RARELY {
                self.stride = (self.stride / 2).max(1);
            }
        }
        self.last = Some(now);
    }

    /// Publish whatever is left at the end of the items.
    pub(crate) fn flush(&mut self, counted: usize) {
        if counted > self.published {
            self.tally.add((counted - self.published) as u64);
            self.published = counted;
        }
    }
}

/// Model check: two threads publishing at once lose no item.
/// `RUSTFLAGS="--cfg loom" cargo test --release --lib loom`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    #[test]
    fn loom_concurrent_publications_count_exactly() {
        loom::model(|| {
            let tally = std::sync::Arc::new(Tally::new());
            let other = std::sync::Arc::clone(&tally);
            let worker = loom::thread::spawn(move || {
                let mut publisher = Publisher::new(&other);
                publisher.publish(3);
                publisher.flush(5);
            });
            let mut publisher = Publisher::new(&tally);
            publisher.flush(4);
            worker.join().unwrap();
            assert_eq!(tally.done(), 9);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_items_grow_the_batch_and_the_count_stays_exact() {
        let tally = Tally::new();
        let mut publisher = Publisher::new(&tally);
        let mut counted = 0;
        while counted < 1_000_000 {
            counted = (counted + publisher.next_run()).min(1_000_000);
            publisher.publish(counted);
        }
        publisher.flush(counted);
        assert_eq!(tally.done(), 1_000_000);
        assert!(publisher.stride > 1000, "stride {}", publisher.stride);
    }

    #[test]
    fn slow_items_publish_every_item() {
        let tally = Tally::new();
        let mut publisher = Publisher::new(&tally);
        for counted in 1..=5 {
            std::thread::sleep(TOO_RARELY + Duration::from_millis(5));
            assert_eq!(publisher.next_run(), 1);
            publisher.publish(counted);
            assert_eq!(tally.done(), counted as u64, "each slow item is visible at once");
        }
    }

    #[test]
    fn workers_count_apart_and_the_sum_is_exact() {
        let tally = Tally::new();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(SLOTS + 3).build().unwrap();
        pool.broadcast(|_| {
            for _ in 0..1000 {
                tally.add(1);
            }
        });
        tally.add(7);
        assert_eq!(tally.done(), (SLOTS as u64 + 3) * 1000 + 7);
    }

    #[test]
    fn refresh_nudges_the_followed_run() {
        let tally = Tally::new();
        tally.refresh();
        let run = Shortcircuit::new(true, None);
        tally.follow(&run);
        let before = run.pulse().load(Ordering::Relaxed);
        tally.refresh();
        assert_ne!(run.pulse().load(Ordering::Relaxed), before);
        assert!(!run.has_event(), "a nudge cancels nothing");
    }
}
