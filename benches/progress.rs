//! What progress costs: the same runs with bars off, with bars on, and with a
//! `ProgressSink` watching, side by side in one run.
//!
//! A bar is only drawn when stderr is a terminal, so when it is not, the
//! bench runs itself again under `script`, which gives it a pseudo-terminal
//! (`MAPREDUCE_BENCH_NO_PTY=1` stops that; the first line printed says
//! whether bars are drawn):
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/bench-target cargo bench --bench progress
//! python3 benches/ratios.py /tmp/bench-target
//! MAPREDUCE_BENCH_PAIRS=15 cargo bench --bench progress   # interleaved pairs instead
//! ```
//!
//! A bar shows once a run has lasted 0.4 s, so the 2×10^7-item group and
//! the in-order search of 5×10^7 items measure the watching machinery of a
//! run too short for a bar (on a terminal, bars on; off is what a run whose
//! stderr is not a terminal does), and the 2×10^9-item group and the
//! in-order search of 3×10^9 items runs that draw a live bar for most of
//! their time.

use std::hint::black_box;
use std::io::IsTerminal;
use std::ops::ControlFlow::{self, Continue};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{busy, MixUntil};
use criterion::{criterion_group, Criterion, SamplingMode};
use mapreduce::rayon::prelude::*;
use mapreduce::{par_map_reduce, par_map_reduce_in_order, Config, MapReduce, ProgressSink};

/// Items of the in-order search that shows a bar (about 0.8 s on 2 workers).
const LONG_SEARCH_ITEMS: u64 = 3_000_000_000;
/// Items of the in-order search that ends before a bar could show.
const SHORT_SEARCH_ITEMS: u64 = 50_000_000;

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

/// The in-order search of `items` items under the config in force.
fn search(items: u64) -> u64 {
    let indexed = (0..black_box(items) as usize).into_par_iter().map(|i| i as u64);
    par_map_reduce_in_order(indexed, &(), MixUntil { at: items / 3 }).unwrap()
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

/// The in-order search (`par_map_reduce_in_order`) of `items` items,
/// breaking at a third of them.
fn search_group(c: &mut Criterion, name: &str, items: u64, measurement: Duration) {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(measurement);
    let answers: Vec<u64> = configs()
        .into_iter()
        .map(|(_, config)| config.scope(|| search(items)))
        .collect();
    assert!(answers.windows(2).all(|w| w[0] == w[1]));
    for (label, config) in configs() {
        group.bench_function(label, |b| config.clone().scope(|| b.iter(|| search(items))));
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
    search_group(
        c,
        "bars_in_order_search_5e7",
        SHORT_SEARCH_ITEMS,
        Duration::from_secs(3),
    );
    search_group(
        c,
        "bars_in_order_search_3e9",
        LONG_SEARCH_ITEMS,
        Duration::from_secs(10),
    );
}

/// Bars are drawn only where stderr is a terminal: when it is not, run this
/// bench again under `script -qfec`, which gives it a pseudo-terminal, and
/// exit with its status. `MAPREDUCE_BENCH_NO_PTY` (set for the run under
/// `script`) stops this; so does a missing `script`.
fn on_a_terminal() {
    if std::io::stderr().is_terminal() || std::env::var_os("MAPREDUCE_BENCH_NO_PTY").is_some() {
        return;
    }
    let quote = |arg: String| format!("'{}'", arg.replace('\'', "'\\''"));
    let command: Vec<String> = std::env::args().map(quote).collect();
    let status = std::process::Command::new("script")
        .args(["-qfec", &command.join(" "), "/dev/null"])
        .env("MAPREDUCE_BENCH_NO_PTY", "1")
        .status();
    match status {
        Ok(status) => std::process::exit(status.code().unwrap_or(1)),
        Err(err) => eprintln!("progress benches: cannot run `script` ({err}): no pseudo-terminal"),
    }
}

/// One figure of the paired mode: bars off, and a watched variant.
struct Pair {
    figure: &'static str,
    target: f64,
    run: fn() -> u64,
    variant: Config,
}

/// The time of one call of `run` under `config`.
fn timed(config: &Config, run: fn() -> u64) -> f64 {
    config.clone().scope(|| {
        let started = Instant::now();
        black_box(run());
        started.elapsed().as_secs_f64()
    })
}

/// `MAPREDUCE_BENCH_PAIRS=n`: instead of criterion, time the figures of
/// issue #13 as `n` interleaved pairs (bars off then the variant, then the
/// variant then bars off, ...), and print per figure the median and min–max
/// of the pairs' ratios: on a shared machine whose load moves within
/// seconds, two timings taken back to back compare better than criterion
/// medians taken a minute apart.
fn paired(pairs: usize) {
    let [(_, off), (_, on), (_, sink)] = configs();
    let figures = [
        Pair {
            figure: "bars_in_order_search_3e9: bars_on / bars_off",
            target: 1.03,
            run: || search(LONG_SEARCH_ITEMS),
            variant: on.clone(),
        },
        Pair {
            figure: "bars_in_order_search_5e7: bars_on / bars_off",
            target: 1.03,
            run: || search(SHORT_SEARCH_ITEMS),
            variant: on.clone(),
        },
        Pair {
            figure: "bars_tiny_2e9: bars_on / bars_off",
            target: 1.02,
            run: || par_map_reduce(0..black_box(2_000_000_000u64), &(), &Mix { rounds: 1 }).unwrap(),
            variant: on,
        },
        Pair {
            figure: "bars_in_order_search_3e9: sink / bars_off",
            target: 1.03,
            run: || search(LONG_SEARCH_ITEMS),
            variant: sink,
        },
    ];
    for pair in &figures {
        let mut ratios: Vec<f64> = (0..pairs)
            .map(|i| {
                if i % 2 == 0 {
                    let base = timed(&off, pair.run);
                    timed(&pair.variant, pair.run) / base
                } else {
                    let variant = timed(&pair.variant, pair.run);
                    variant / timed(&off, pair.run)
                }
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        let median = ratios[ratios.len() / 2];
        println!(
            "paired {}: median x{median:.3} [{:.3} - {:.3}] n={}   target <= {:.2} {}",
            pair.figure,
            ratios[0],
            ratios[ratios.len() - 1],
            ratios.len(),
            pair.target,
            if median <= pair.target { "ok" } else { "OVER" }
        );
    }
}

criterion_group!(benches, progress, small_jobs);

fn main() {
    on_a_terminal();
    if let Some(pairs) = common::pairs_requested() {
        eprintln!(
            "progress benches: stderr {} a terminal",
            if std::io::stderr().is_terminal() {
                "is"
            } else {
                "is NOT (no bar is drawn)"
            }
        );
        paired(pairs);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
