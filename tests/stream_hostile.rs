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
