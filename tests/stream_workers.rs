//! A stream is as busy as its workers, not more: while the calling thread
//! folds fast items itself (reading them in place), it counts as one of
//! them, and the pool folds its batches on the others.
//!
//! One exception, not tested here: the rest of a leaf that a batch began
//! is folded by the calling thread once that batch is done, while the pool
//! folds the next one. Leaves of one item never span batches.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, ThreadId};

use mapreduce::prelude::*;

/// What a run's `compute` saw: how many threads were inside it at once, at
/// most, and how many items the calling thread computed.
struct Seen {
    inside: AtomicUsize,
    most: AtomicUsize,
    by_caller: AtomicUsize,
    caller: ThreadId,
}

impl Seen {
    fn new() -> Seen {
        Seen {
            inside: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            by_caller: AtomicUsize::new(0),
            caller: thread::current().id(),
        }
    }

    fn compute(&self, x: u64) -> u64 {
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        if thread::current().id() == self.caller {
            self.by_caller.fetch_add(1, Ordering::Relaxed);
        }
        // Most of the item's time is spent inside (a thread descheduled
        // here still counts as inside), far under the 10 µs of items the
        // calling thread folds in place.
        let mut spin = x;
        for _ in 0..100 {
            spin = std::hint::black_box(spin.rotate_left(5) ^ 0x5555);
        }
        std::hint::black_box(spin);
        let mixed = mix(x);
        self.inside.fetch_sub(1, Ordering::SeqCst);
        mixed
    }
}

const N: u64 = 200_000;

/// An item's value: under 2^40, so that the items sum without
/// overflow.
fn mix(x: u64) -> u64 {
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 24
}

fn stream_on(workers: isize, seen: &Seen) -> u64 {
    let job = jobs::sum(|x: u64, _: &()| seen.compute(x));
    Config::current()
        .with_workers(workers)
        .with_oversubscription(true)
        .with_progress_bars(false)
        .with_leaf_size(1)
        .scope(|| par_map_reduce_iter(0..N, &(), job))
        .unwrap()
}

#[test]
fn a_fast_stream_computes_on_at_most_its_workers_threads_the_caller_among_them() {
    let expected: u64 = (0..N).map(mix).sum();
    for workers in [2usize, 3] {
        let seen = Seen::new();
        assert_eq!(stream_on(workers as isize, &seen), expected, "{workers} workers");
        let most = seen.most.load(Ordering::SeqCst);
        let by_caller = seen.by_caller.load(Ordering::Relaxed) as u64;
        assert!(most <= workers, "{workers} workers: {most} threads computed at once");
        // Both roles did work: the calling thread folded items in place,
        // the pool folded its batches.
        assert!(by_caller > 0, "{workers} workers: the calling thread folded nothing");
        assert!(by_caller < N, "{workers} workers: the pool folded nothing");
    }
}
