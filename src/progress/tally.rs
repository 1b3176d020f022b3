//! Counting items done without slowing the per-item loop: each task counts
//! locally and publishes to the run's shared counter in batches, sized so
//! that a task publishes a few times a second whatever its items cost.

use crate::sync::{AtomicU64, AtomicUsize, Ordering};
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

    /// Count `items` done elsewhere (on another rank).
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) fn add(&self, items: u64) {
        self.done.fetch_add(items, Ordering::Relaxed);
    }
}

/// A task's side of the tally: what it counted, what it has published.
pub(crate) struct Publisher<'t> {
    tally: Option<&'t Tally>,
    published: usize,
    stride: usize,
    last: Option<Instant>,
    /// Seconds per item over the last batch, once measured.
    per_item: Option<f64>,
}

impl<'t> Publisher<'t> {
    pub(crate) fn new(tally: Option<&'t Tally>) -> Publisher<'t> {
        let stride = tally.map_or(usize::MAX, |tally| tally.stride.load(Ordering::Relaxed).max(1));
        Publisher {
            tally,
            published: 0,
            stride,
            last: None,
            per_item: None,
        }
    }

    /// Whether anyone watches the run (else publishing does nothing).
    pub(crate) fn is_watching(&self) -> bool {
        self.tally.is_some()
    }

    /// How many items to fold before the next [`publish`]: `None` when the
    /// `left` items of the stretch will take too little time to need one
    /// (fast items, where the last part of a stretch then runs unbatched).
    ///
    /// [`publish`]: Self::publish
    pub(crate) fn next_run(&self, left: Option<usize>) -> Option<usize> {
        match (left, self.per_item) {
            (Some(left), Some(per_item)) if left as f64 * per_item < TOO_RARELY.as_secs_f64() => None,
            _ => Some(self.stride),
        }
    }

    /// Publish the items counted since the last call (`counted` is the
    /// task's running total) and adapt the batch size to the time it took.
    #[cold]
    pub(crate) fn publish(&mut self, counted: usize) {
        let Some(tally) = self.tally else { return };
        let batch = counted - self.published;
        tally.done.fetch_add(batch as u64, Ordering::Relaxed);
        self.published = counted;
        let now = Instant::now();
        if let Some(last) = self.last {
            let took = now - last;
            self.per_item = Some(took.as_secs_f64() / batch.max(1) as f64);
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

/// Model check: two tasks publishing at once lose no item.
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
                let mut publisher = Publisher::new(Some(&other));
                publisher.publish(3);
                publisher.flush(5);
            });
            let mut publisher = Publisher::new(Some(&tally));
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
    fn unwatched_runs_never_publish() {
        let publisher = Publisher::new(None);
        assert!(!publisher.is_watching());
        assert_eq!(publisher.next_run(None), Some(usize::MAX));
    }

    #[test]
    fn fast_items_grow_the_batch_and_the_count_stays_exact() {
        let tally = Tally::new();
        let mut publisher = Publisher::new(Some(&tally));
        let mut counted = 0;
        while counted < 1_000_000 {
            counted = (counted + publisher.next_run(None).unwrap()).min(1_000_000);
            publisher.publish(counted);
        }
        publisher.flush(counted);
        assert_eq!(tally.done(), 1_000_000);
        assert!(publisher.stride > 1000, "stride {}", publisher.stride);
        assert!(tally.stride.load(Ordering::Relaxed) > 1000);
    }

    #[test]
    fn fast_items_finish_their_stretch_unbatched_and_slow_ones_never() {
        let tally = Tally::new();
        let mut publisher = Publisher::new(Some(&tally));
        assert_eq!(publisher.next_run(Some(1_000_000)), Some(1), "nothing measured yet");
        publisher.publish(1);
        publisher.publish(2);
        assert_eq!(
            publisher.next_run(Some(1_000)),
            None,
            "a thousand fast items need no batches"
        );
        assert!(publisher.next_run(None).is_some(), "an unknown rest is batched");
        let mut slow = Publisher::new(Some(&tally));
        slow.publish(1);
        std::thread::sleep(Duration::from_millis(30));
        slow.publish(2);
        assert!(slow.next_run(Some(10)).is_some(), "ten items of 30 ms need updates");
    }

    #[test]
    fn slow_items_publish_every_item() {
        let tally = Tally::new();
        let mut publisher = Publisher::new(Some(&tally));
        for counted in 1..=5 {
            std::thread::sleep(TOO_RARELY + Duration::from_millis(5));
            assert_eq!(publisher.next_run(None), Some(1));
            publisher.publish(counted);
            assert_eq!(tally.done(), counted as u64, "each slow item is visible at once");
        }
    }
}
