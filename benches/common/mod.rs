//! Work items shared by the benches.
// Each bench uses some of these.
#![allow(dead_code)]

use std::hint::black_box;
use std::ops::ControlFlow::{self, Break, Continue};

use mapreduce::MapReduce;

/// `MAPREDUCE_BENCH_PAIRS=n`: how many interleaved pairs a bench times
/// instead of running its criterion groups.
pub fn pairs_requested() -> Option<usize> {
    std::env::var("MAPREDUCE_BENCH_PAIRS").ok().and_then(|n| n.parse().ok())
}

/// A bench's `main`: `paired(n)` under `MAPREDUCE_BENCH_PAIRS=n`, else the
/// criterion groups `benches`.
pub fn run(paired: fn(usize), benches: fn()) {
    if let Some(pairs) = pairs_requested() {
        paired(pairs);
        return;
    }
    benches();
    criterion::Criterion::default().configure_from_args().final_summary();
}

/// The standard splitmix64 finalizer (Steele, Lea and Flood): a bijection.
#[inline]
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// About `rounds` dependent splitmix64 steps of busy work.
#[inline]
pub fn busy(item: u64, rounds: u64) -> u64 {
    let mut x = item;
    for _ in 0..rounds {
        x = splitmix64(black_box(x));
    }
    x
}

/// The wrapping sum of `splitmix64` over the items.
pub struct Mix;

impl MapReduce<u64> for Mix {
    type Output = u64;
    type Acc = u64;

    fn empty_result(&self, _: &()) -> u64 {
        0
    }
    fn compute(&self, item: u64, _: &()) -> u64 {
        splitmix64(item)
    }
    fn process_result(&self, new: u64, acc: u64) -> ControlFlow<u64, u64> {
        Continue(acc.wrapping_add(new))
    }
    fn merge(&self, left: u64, right: u64) -> ControlFlow<u64, u64> {
        Continue(left.wrapping_add(right))
    }
}

/// A search: the wrapping sum of `splitmix64` over the items, breaking at
/// item `at`.
pub struct MixUntil {
    pub at: u64,
}

impl MapReduce<u64> for MixUntil {
    type Output = (u64, u64);
    type Acc = u64;

    fn description(&self) -> &str {
        "Searching"
    }
    fn empty_result(&self, _: &()) -> u64 {
        0
    }
    fn compute(&self, item: u64, _: &()) -> (u64, u64) {
        (item, splitmix64(item))
    }
    fn process_result(&self, (item, hash): (u64, u64), acc: u64) -> ControlFlow<u64, u64> {
        let acc = acc.wrapping_add(hash);
        if item == self.at {
            Break(acc)
        } else {
            Continue(acc)
        }
    }
    fn merge(&self, left: u64, right: u64) -> ControlFlow<u64, u64> {
        Continue(left.wrapping_add(right))
    }
}
