//! Streaming keeps memory flat: 6×10^7 lazily generated items, parallel,
//! with peak memory growth under 64 MB. Alone in its test binary so that no
//! other test's allocations count.

mod common;

use common::peak_rss_kib;
use mapreduce::prelude::*;

#[test]
fn streaming_60_million_items_keeps_peak_memory_flat() {
    const N: u64 = 60_000_000;
    let job = jobs::sum(|x: u64, _: &()| x & 0xFF);
    // Warm up the pool and the allocator.
    par_map_reduce_iter(0..1000u64, &(), &job).unwrap();
    let before = peak_rss_kib();
    let items = (0..N).map(|x| x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7);
    let total = Config::current()
        .with_workers(2)
        .scope(|| par_map_reduce_iter(items, &(), &job))
        .unwrap();
    let growth_mib = (peak_rss_kib() - before) / 1024;
    let expected: u64 = (0..N)
        .map(|x| (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7) & 0xFF)
        .sum();
    assert_eq!(total, expected);
    assert!(growth_mib < 64, "peak memory grew by {growth_mib} MiB");
    eprintln!("peak memory growth streaming {N} items: {growth_mib} MiB");
}
