//! Hostile streams: configurations and inputs a user may throw at
//! `par_map_reduce_iter` while the calling thread folds fast items in place
//! and the pool's batches go through a lane.

use mapreduce::prelude::*;
use mapreduce::{jobs, par_map_reduce_iter};

/// `with_leaf_size(usize::MAX)` ("one leaf, whatever the length") on a fast
/// stream with 2+ workers: sizing the pool's batch to two whole leaves
/// overflowed (`attempt to add with overflow`, a panic of ours in debug
/// builds) once the items were known to be fast.
#[test]
fn a_leaf_size_near_usize_max_neither_panics_nor_changes_the_answer() {
    for leaf in [usize::MAX, usize::MAX / 2 + 1] {
        for workers in [1, 2, 3] {
            let config = Config::current()
                .with_progress_bars(false)
                .with_workers(workers)
                .with_oversubscription(true)
                .with_leaf_size(leaf);
            let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                config.scope(|| par_map_reduce_iter(0..200_000u64, &(), jobs::count(|x: &u64, _: &()| x % 3 == 0)))
            }))
            .unwrap_or_else(|_| panic!("leaf {leaf}, {workers} workers: the run panicked"));
            assert_eq!(got.unwrap(), 66_667, "leaf {leaf}, {workers} workers");
        }
    }
}

/// A stream called from a thread of another rayon pool: at the end of the
/// input, the calling thread folds the batch still waiting in the lane
/// itself. It split that batch with `rayon::join`, which on a thread of a
/// foreign pool runs on that pool: items were computed on the foreign
/// pool's threads, beyond the run's workers and outside its pool.
#[test]
fn a_stream_from_a_foreign_pool_computes_only_on_the_caller_and_its_own_pool() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let foreign = mapreduce::rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .thread_name(|i| format!("foreign-{i}"))
        .build()
        .unwrap();
    let strays = AtomicUsize::new(0);
    for round in 0..30u64 {
        let len = 50_000 + round * 1000;
        let counted = foreign.install(|| {
            let caller = std::thread::current().id();
            let job = jobs::count(|x: &u64, _: &()| {
                let me = std::thread::current();
                if me.id() != caller && !me.name().unwrap_or("").starts_with("mapreduce") {
                    strays.fetch_add(1, Ordering::Relaxed);
                }
                // A fast item (well under 10 µs), folded in place too.
                let mut spin = *x;
                for _ in 0..100 {
                    spin = std::hint::black_box(spin.rotate_left(5) ^ 0x5555);
                }
                std::hint::black_box(spin);
                true
            });
            Config::current()
                .with_progress_bars(false)
                .with_workers(3)
                .with_oversubscription(true)
                .scope(|| par_map_reduce_iter(0..len, &(), job))
                .unwrap()
        });
        assert_eq!(counted as u64, len);
    }
    assert_eq!(
        strays.load(Ordering::Relaxed),
        0,
        "items computed on the foreign pool's threads"
    );
}
