//! Shortcircuits are prompt: items right of a known `Break` are not started,
//! in-flight ones see `is_cancelled()`, and the call returns soon after.

mod common;

use std::ops::ControlFlow::{self, Break, Continue};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mapreduce::prelude::*;

/// A search for item `stop` whose items take `millis` each; counts the
/// items it computes in `computed`.
fn search(stop: u64, millis: u64, computed: &AtomicUsize) -> impl MapReduce<u64, Acc = Option<u64>> + '_ {
    jobs::find_first(move |item: &u64, _: &()| {
        computed.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(millis));
        *item == stop
    })
}

#[test]
fn break_at_item_60_of_5000_returns_promptly_in_both_modes() {
    for deterministic in [true, false] {
        let computed = AtomicUsize::new(0);
        let job = search(60, 1, &computed);
        let started = Instant::now();
        let found = Config::current()
            .with_workers(2)
            .with_deterministic(deterministic)
            .with_progress_bars(false)
            .scope(|| par_map_reduce(0..5000u64, &(), &job))
            .unwrap();
        let elapsed = started.elapsed();
        let computed = computed.load(Ordering::Relaxed);
        assert_eq!(found, Some(60));
        eprintln!("deterministic {deterministic}: {computed} items computed in {elapsed:?}");
        // A full run computes 5000 items (≥ 2.5 s on 2 workers); the search
        // needs the first 61 and, at most, as many again on the other worker.
        assert!((61..1000).contains(&computed), "computed {computed} items");
        assert!(elapsed < Duration::from_millis(2000), "took {elapsed:?}");
    }
}

#[test]
fn streamed_break_stops_reading_and_computing() {
    let computed = AtomicUsize::new(0);
    let job = search(60, 1, &computed);
    let read = AtomicUsize::new(0);
    let items = (0u64..).inspect(|_| {
        read.fetch_add(1, Ordering::Relaxed);
    });
    let found = Config::current()
        .with_workers(2)
        .scope(|| par_map_reduce_iter(items, &(), &job))
        .unwrap();
    assert_eq!(found, Some(60));
    assert!(computed.load(Ordering::Relaxed) < 1000);
    // The two batches read before the first one is folded; nothing after
    // the break is known.
    assert!(
        read.load(Ordering::Relaxed) <= 128 + 256,
        "read {}",
        read.load(Ordering::Relaxed)
    );
}

#[test]
fn items_right_of_a_known_break_are_not_started() {
    // Item 0 breaks at once; a worker may already hold one more item, but
    // nothing is started after the break is known.
    let computed = AtomicUsize::new(0);
    let job = search(0, 20, &computed);
    let found = Config::current()
        .with_workers(2)
        .scope(|| par_map_reduce(0..1000u64, &(), &job))
        .unwrap();
    assert_eq!(found, Some(0));
    let computed = computed.load(Ordering::Relaxed);
    assert!(computed <= 4, "computed {computed}");
}

/// Item `stop` breaks once another item is in flight; every item right of it waits (polling
/// `is_cancelled`) until cancelled or 10 s pass, and records what it saw.
struct Patient {
    stop: u64,
    in_flight: AtomicUsize,
    cancelled_seen: AtomicUsize,
    cancelled_left_of_stop: AtomicUsize,
}

impl MapReduce<u64> for Patient {
    type Output = u64;
    type Acc = Vec<u64>;

    fn empty_result(&self, _: &()) -> Vec<u64> {
        Vec::new()
    }
    fn compute(&self, item: u64, _: &()) -> u64 {
        if item < self.stop {
            // Left of the break: must never be told to give up.
            if is_cancelled() {
                self.cancelled_left_of_stop.fetch_add(1, Ordering::Relaxed);
            }
            return item;
        }
        if item == self.stop {
            // Break only once an item right of us is in flight (the pool may
            // be busy with other tests for a moment).
            let started = Instant::now();
            while self.in_flight.load(Ordering::Relaxed) == 0 && started.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(20));
            return item;
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if is_cancelled() {
                self.cancelled_seen.fetch_add(1, Ordering::Relaxed);
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        item
    }
    fn process_result(&self, item: u64, mut acc: Vec<u64>) -> ControlFlow<Vec<u64>, Vec<u64>> {
        acc.push(item);
        if item == self.stop {
            Break(acc)
        } else {
            Continue(acc)
        }
    }
    fn merge(&self, mut left: Vec<u64>, mut right: Vec<u64>) -> ControlFlow<Vec<u64>, Vec<u64>> {
        left.append(&mut right);
        Continue(left)
    }
}

#[test]
fn in_flight_items_observe_is_cancelled() {
    for deterministic in [true, false] {
        let job = Patient {
            stop: 3,
            in_flight: AtomicUsize::new(0),
            cancelled_seen: AtomicUsize::new(0),
            cancelled_left_of_stop: AtomicUsize::new(0),
        };
        let started = Instant::now();
        let acc = Config::current()
            .with_workers(2)
            .with_deterministic(deterministic)
            .scope(|| par_map_reduce(0..64u64, &(), &job))
            .unwrap();
        assert_eq!(acc.last(), Some(&3));
        if deterministic {
            assert_eq!(acc, [0, 1, 2, 3]);
            assert_eq!(job.cancelled_left_of_stop.load(Ordering::Relaxed), 0);
        }
        assert!(
            job.cancelled_seen.load(Ordering::Relaxed) >= 1,
            "no in-flight item saw the cancellation"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }
    assert!(!is_cancelled(), "outside a run nothing is cancelled");
}

/// Item 0 ends the search after 30 ms; every other item runs an inner
/// search that would take ~100 s unless cancelled with it.
fn outer_item(item: u64) -> bool {
    if item == 0 {
        std::thread::sleep(Duration::from_millis(30));
        return true;
    }
    let inner = jobs::count(|_: &u64, _: &()| {
        std::thread::sleep(Duration::from_millis(10));
        true
    });
    // Cancelled with its task, the inner run ends in `Error::Cancelled`.
    let _ = par_map_reduce(0..10_000u64, &(), inner);
    false
}

#[test]
fn nested_runs_of_a_cancelled_task_stop_with_it() {
    let started = Instant::now();
    let found = Config::current()
        .with_workers(2)
        .with_deterministic(false)
        .scope(|| par_map_reduce(0..4u64, &(), jobs::find_first(|item: &u64, _: &()| outer_item(*item))))
        .unwrap();
    assert_eq!(found, Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}
