//! Counting items done without slowing the per-item loop: each task counts
//! locally and publishes to the run's shared counter in batches, sized so
//! that a task publishes a few times a second whatever its items cost.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

/// Publishing more often than this doubles the batch.
const TOO_OFTEN: Duration = Duration::from_millis(20);
/// Publishing less often than this halves the batch.
const TOO_RARELY: Duration = Duration::from_millis(100);

/// The shared count of items done in one run.
pub(crate) struct Tally {
    /// Items done and published. `Relaxed`: only read for display; the last
    /// publications happen before the run's final `join`, which orders them
    /// before the reader's final read.
    done: CachePadded<AtomicU64>,
    /// The batch size tasks start with: the last size a task settled on.
    stride: AtomicUsize,
}

impl Tally {
    pub(crate) fn new() -> Tally {
        Tally {
            done: CachePadded::new(AtomicU64::new(0)),
            stride: AtomicUsize::new(1),
        }
    }

    /// Items done so far.
    pub(crate) fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

/// A task's side of the tally: what it counted, what it has published.
pub(crate) struct Publisher<'t> {
    tally: Option<&'t Tally>,
    published: usize,
    stride: usize,
    last: Option<Instant>,
}

impl<'t> Publisher<'t> {
    pub(crate) fn new(tally: Option<&'t Tally>) -> Publisher<'t> {
        let stride = tally.map_or(usize::MAX, |tally| tally.stride.load(Ordering::Relaxed).max(1));
        Publisher {
            tally,
            published: 0,
            stride,
            last: None,
        }
    }

    /// Whether anyone watches the run (else publishing does nothing).
    pub(crate) fn is_watching(&self) -> bool {
        self.tally.is_some()
    }

    /// The local count at which the task should next call [`publish`]; never
    /// reached when nobody watches the run.
    ///
    /// [`publish`]: Self::publish
    #[inline]
    pub(crate) fn next_at(&self) -> usize {
        self.published.saturating_add(self.stride)
    }

    /// Publish the items counted since the last call (`counted` is the
    /// task's running total) and adapt the batch size to the time it took.
    #[cold]
    pub(crate) fn publish(&mut self, counted: usize) {
        let Some(tally) = self.tally else { return };
        tally
            .done
            .fetch_add((counted - self.published) as u64, Ordering::Relaxed);
        self.published = counted;
        let now = Instant::now();
        if let Some(last) = self.last {
            let took = now - last;
            if took < TOO_OFTEN {
                self.stride = self.stride.saturating_mul(2);
            } else if took > TOO_RARELY {
                self.stride = (self.stride / 2).max(1);
            }
            tally.stride.store(self.stride, Ordering::Relaxed);
        }
        self.last = Some(now);
    }

    /// Publish whatever is left at the end of a stretch of items.
    pub(crate) fn flush(&mut self, counted: usize) {
        if let Some(tally) = self.tally {
            if counted > self.published {
                tally
                    .done
                    .fetch_add((counted - self.published) as u64, Ordering::Relaxed);
                self.published = counted;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwatched_runs_never_publish() {
        let publisher = Publisher::new(None);
        assert_eq!(publisher.next_at(), usize::MAX);
    }

    #[test]
    fn fast_items_grow_the_batch_and_the_count_stays_exact() {
        let tally = Tally::new();
        let mut publisher = Publisher::new(Some(&tally));
        let mut counted = 0;
        for _ in 0..1_000_000 {
            counted += 1;
            if counted == publisher.next_at() {
                publisher.publish(counted);
            }
        }
        publisher.flush(counted);
        assert_eq!(tally.done(), 1_000_000);
        assert!(publisher.stride > 1000, "stride {}", publisher.stride);
        assert!(tally.stride.load(Ordering::Relaxed) > 1000);
    }

    #[test]
    fn slow_items_publish_every_item() {
        let tally = Tally::new();
        let mut publisher = Publisher::new(Some(&tally));
        for counted in 1..=5 {
            std::thread::sleep(TOO_RARELY + Duration::from_millis(5));
            assert_eq!(counted, publisher.next_at());
            publisher.publish(counted);
            assert_eq!(tally.done(), counted as u64, "each slow item is visible at once");
        }
    }
}
