//! What progress costs: the same runs with bars off, with bars on, and with a
//! `ProgressSink` watching, side by side in one run.
//!
//! A bar is only drawn when stderr is a terminal, so run this under one to
//! measure live bars (the first line printed says which it is):
//!
//! ```text
//! script -qec "cargo bench --bench progress" /dev/null
//! python3 benches/ratios.py
//! ```
//!
//! A bar shows once a run has lasted 0.4 s, so the 2×10^7-item group
//! measures the watching machinery of a run too short for a bar, and the
//! 2×10^9-item group one that draws a live bar for most of its time.

use std::hint::black_box;
use std::io::IsTerminal;
use std::ops::ControlFlow::{self, Continue};
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::busy;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use mapreduce::{par_map_reduce, Config, MapReduce, ProgressSink};

/// `rounds` dependent splitmix64 steps per item, wrapping sum.
struct Mix {
    rounds: u64,
}

impl MapReduce<u64> for Mix {
    type Output = u64;
    type Acc = u64;

    fn description(&self) -> &str {
        "Benchmarking"
    }
    fn empty_result(&self, _: &()) -> u64 {
        0
    }
    fn compute(&self, item: u64, _: &()) -> u64 {
        busy(item, self.rounds)
    }
    fn process_result(&self, new: u64, acc: u64) -> ControlFlow<u64, u64> {
        Continue(acc.wrapping_add(new))
    }
    fn merge(&self, left: u64, right: u64) -> ControlFlow<u64, u64> {
        Continue(left.wrapping_add(right))
    }
}

/// A sink that only counts what it is told.
struct Quiet;
impl ProgressSink for Quiet {}

fn configs() -> [(&'static str, Config); 3] {
    let base = Config::current().with_workers(2).without_progress_sink();
    [
        ("bars_off", base.clone().with_progress_bars(false)),
        ("bars_on", base.clone().with_progress_bars(true)),
        (
            "sink",
            base.with_progress_bars(false).with_progress_sink(Arc::new(Quiet)),
        ),
    ]
}

fn bench_group(c: &mut Criterion, name: &str, items: u64, rounds: u64, measurement: Duration) {
    let job = Mix { rounds };
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(measurement);
    let answers: Vec<u64> = configs()
        .into_iter()
        .map(|(_, config)| config.scope(|| par_map_reduce(0..items, &(), &job).unwrap()))
        .collect();
    assert!(answers.windows(2).all(|w| w[0] == w[1]));
    for (label, config) in configs() {
        group.bench_function(label, |b| {
            config
                .clone()
                .scope(|| b.iter(|| par_map_reduce(0..black_box(items), &(), &job).unwrap()))
        });
    }
    group.finish();
}

/// 5000 runs of 8 items: a bar must not flash up, nor its machinery cost,
/// for runs that end in microseconds.
fn small_jobs(c: &mut Criterion) {
    let job = Mix { rounds: 1 };
    let mut group = c.benchmark_group("bars_small_jobs");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (label, config) in configs() {
        group.bench_function(label, |b| {
            config.clone().scope(|| {
                b.iter(|| {
                    (0..5000u64).fold(0u64, |sum, call| {
                        sum.wrapping_add(par_map_reduce(call..call + 8, &(), &job).unwrap())
                    })
                })
            })
        });
    }
    group.finish();
}

fn progress(c: &mut Criterion) {
    eprintln!(
        "progress benches: stderr {} a terminal",
        if std::io::stderr().is_terminal() {
            "is"
        } else {
            "is NOT (no bar is drawn)"
        }
    );
    bench_group(c, "bars_tiny_2e7", 20_000_000, 1, Duration::from_secs(3));
    bench_group(c, "bars_tiny_2e9", 2_000_000_000, 1, Duration::from_secs(10));
    // ~1640 rounds is ~5 µs on the reference machine.
    bench_group(c, "bars_medium_5us", 200_000, 1640, Duration::from_secs(8));
}

criterion_group!(benches, progress, small_jobs);
criterion_main!(benches);
