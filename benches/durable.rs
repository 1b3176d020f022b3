//! What a checkpoint costs (feature `durable`): `par_map_reduce_durable`
//! against the same `par_map_reduce_in_order` run without one, side by side
//! in one run.
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/bench-target cargo bench --features durable --bench durable
//! python3 benches/ratios.py /tmp/bench-target
//! MAPREDUCE_BENCH_PAIRS=15 cargo bench --features durable --bench durable
//! ```
//!
//! The last line skips criterion and times the figures as interleaved pairs
//! (see [`paired`], as in `benches/engine.rs`). Both sides run 2×10^7 or
//! 2×10^9 tiny items (one splitmix64 each, a wrapping sum) on 2 workers,
//! bars off, with the automatic leaf size. A run of 2×10^7 items is far
//! shorter than either interval: it pays the lock, the writer thread and the
//! final write of its answer only. The 2×10^9-item runs (about a second)
//! save their prefix every 0.25 s or 1 s as well.
//!
//! Every durable run really computes: its checkpoint is `fresh` (any saved
//! file ignored) and the file is deleted before each run, outside the
//! timing, so that each one writes as a first run does; and every answer
//! is checked. Checkpoints go to a directory of their own under the system's
//! temporary directory, or under `MAPREDUCE_BENCH_CHECKPOINT_DIR`; the
//! paired mode also times them on `/dev/shm` (a tmpfs, where flushing to
//! disk costs nothing), which separates the disk's share from the rest.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::{splitmix64, Mix};
use criterion::{criterion_group, BenchmarkGroup, Criterion, SamplingMode};
use mapreduce::durable::{par_map_reduce_durable, Checkpoint};
use mapreduce::{par_map_reduce_in_order, Config};
use rayon::prelude::*;

/// Worker threads of every run.
const WORKERS: isize = 2;

/// A run much shorter than its interval.
const TINY_ITEMS: u64 = 20_000_000;
/// A run long enough for the interval to matter (spec §6, "Cost figures").
const LONG_ITEMS: u64 = 2_000_000_000;

/// The indexed input: `0..n` as a `usize` range mapped to `u64`.
fn indexed(n: u64) -> impl IndexedParallelIterator<Item = u64> {
    (0..n as usize).into_par_iter().map(|i| i as u64)
}

/// The configuration of every run.
fn config() -> Config {
    Config::current().with_workers(WORKERS).with_progress_bars(false)
}

/// The answer of `n` items, from a sequential loop.
fn expected(n: u64) -> u64 {
    (0..n).fold(0u64, |acc, i| acc.wrapping_add(splitmix64(i)))
}

/// A directory of this process's own for checkpoints, under `root`; removed
/// when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn under(root: &Path, name: &str) -> Scratch {
        let dir = root.join(format!("mapreduce-bench-durable-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("the checkpoints' directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where checkpoints go: `MAPREDUCE_BENCH_CHECKPOINT_DIR`, else the system's
/// temporary directory.
fn checkpoint_root() -> PathBuf {
    std::env::var_os("MAPREDUCE_BENCH_CHECKPOINT_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
}

/// One measured variant: what to do before each call, untimed, and the
/// call, which answers the run's sum.
struct Variant<'f> {
    setup: Box<dyn Fn() + 'f>,
    run: Box<dyn Fn() -> u64 + 'f>,
}

impl<'f> Variant<'f> {
    /// `par_map_reduce_in_order` over `n` items, no checkpoint.
    fn in_order(n: u64) -> Variant<'f> {
        let expected = expected_sum(n);
        Variant {
            setup: Box::new(|| {}),
            run: Box::new(move || {
                let sum = config().scope(|| par_map_reduce_in_order(indexed(black_box(n)), &(), Mix).unwrap());
                assert_eq!(sum, expected, "the in-order run answered wrong");
                sum
            }),
        }
    }

    /// `par_map_reduce_durable` over `n` items, saving every `interval` to a
    /// checkpoint in `dir`, deleted before each call.
    fn durable(n: u64, interval: Duration, dir: &Path) -> Variant<'f> {
        let expected = expected_sum(n);
        let path = dir.join(format!("mix-{n}-{}ms.ckpt", interval.as_millis()));
        let checkpoint = Checkpoint::new(&path, format!("splitmix64 sum of {n} items"))
            .every(interval)
            .fresh(true);
        Variant {
            setup: Box::new(move || match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => panic!("cannot delete {}: {err}", path.display()),
            }),
            run: Box::new(move || {
                let sum =
                    config().scope(|| par_map_reduce_durable(indexed(black_box(n)), &(), Mix, &checkpoint).unwrap());
                assert_eq!(sum, expected, "the durable run answered wrong");
                sum
            }),
        }
    }

    /// The time of `calls` calls, each after its setup (untimed).
    fn timed(&self, calls: usize) -> Duration {
        (0..calls)
            .map(|_| {
                (self.setup)();
                let started = Instant::now();
                black_box((self.run)());
                started.elapsed()
            })
            .sum()
    }
}

/// [`expected`], remembered per `n` (the 2×10^9-item loop takes seconds).
fn expected_sum(n: u64) -> u64 {
    static KNOWN: std::sync::Mutex<Vec<(u64, u64)>> = std::sync::Mutex::new(Vec::new());
    let mut known = KNOWN.lock().unwrap();
    if let Some(&(_, sum)) = known.iter().find(|(items, _)| *items == n) {
        return sum;
    }
    let sum = expected(n);
    known.push((n, sum));
    sum
}

/// A group of few samples, each of the same number of iterations.
fn group<'c>(
    c: &'c mut Criterion,
    name: &str,
    samples: usize,
    measurement: Duration,
) -> BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(samples)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(measurement);
    group
}

/// Measure `variant` in `group` as `name`, its setup untimed.
fn bench(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, name: &str, variant: &Variant<'_>) {
    group.bench_function(name, |b| b.iter_custom(|iters| variant.timed(iters as usize)));
}

/// 2×10^7 tiny items, durable with intervals of 10 s and 1 s, against the
/// same run without a checkpoint.
fn durable_tiny(c: &mut Criterion) {
    let scratch = Scratch::under(&checkpoint_root(), "tiny");
    let in_order = Variant::in_order(TINY_ITEMS);
    let every_10s = Variant::durable(TINY_ITEMS, Duration::from_secs(10), &scratch.0);
    let every_1s = Variant::durable(TINY_ITEMS, Duration::from_secs(1), &scratch.0);
    let mut group = group(c, "durable_tiny_2e7", 10, Duration::from_secs(3));
    bench(&mut group, "in_order", &in_order);
    bench(&mut group, "durable_10s", &every_10s);
    bench(&mut group, "durable_1s", &every_1s);
    group.finish();
}

/// 2×10^9 tiny items (about a second), durable with intervals of 0.25 s and
/// 1 s, against the same run without a checkpoint.
fn durable_long(c: &mut Criterion) {
    let scratch = Scratch::under(&checkpoint_root(), "long");
    let in_order = Variant::in_order(LONG_ITEMS);
    let every_250ms = Variant::durable(LONG_ITEMS, Duration::from_millis(250), &scratch.0);
    let every_1s = Variant::durable(LONG_ITEMS, Duration::from_secs(1), &scratch.0);
    let mut group = group(c, "durable_long_2e9", 10, Duration::from_secs(15));
    bench(&mut group, "in_order", &in_order);
    bench(&mut group, "durable_250ms", &every_250ms);
    bench(&mut group, "durable_1s", &every_1s);
    group.finish();
}

criterion_group!(benches, durable_tiny, durable_long);

/// One figure of the paired mode: a baseline and a variant, how many calls
/// each timing spans, how many pairs, and the target ratio (variant /
/// baseline), if any.
struct Pair<'f> {
    figure: String,
    calls: usize,
    pairs: usize,
    target: Option<f64>,
    baseline: Variant<'f>,
    variant: Variant<'f>,
}

/// `MAPREDUCE_BENCH_PAIRS=n`: instead of criterion, time each figure as `n`
/// interleaved pairs (baseline then variant, then variant then baseline,
/// ...; the 2×10^9-item figures `n / 3` pairs, at least 3), and print per
/// figure the median and min–max of the pairs' ratios. On a shared machine
/// whose load moves within seconds, a ratio of two timings taken back to
/// back is steadier than a ratio of criterion medians taken a minute apart.
fn paired(pairs: usize) {
    let disk = Scratch::under(&checkpoint_root(), "paired");
    // A tmpfs, where `fsync` returns at once: what a checkpoint costs
    // besides the disk.
    let shm = Path::new("/dev/shm");
    let tmpfs = shm.is_dir().then(|| Scratch::under(shm, "paired"));
    let long_pairs = (pairs / 3).max(3);
    let (s10, s1, ms250) = (
        Duration::from_secs(10),
        Duration::from_secs(1),
        Duration::from_millis(250),
    );
    // The figures: (name, items, interval, checkpoint on tmpfs, target).
    #[rustfmt::skip]
    let specs = [
        ("durable_tiny_2e7: every 10 s / in order", TINY_ITEMS, s10, false, Some(1.01)),
        ("durable_tiny_2e7: every 1 s / in order", TINY_ITEMS, s1, false, Some(1.03)),
        ("durable_long_2e9: every 0.25 s / in order", LONG_ITEMS, ms250, false, None),
        ("durable_long_2e9: every 1 s / in order", LONG_ITEMS, s1, false, Some(1.03)),
        ("durable_tiny_2e7: every 10 s on tmpfs / in order (control)", TINY_ITEMS, s10, true, None),
        ("durable_long_2e9: every 0.25 s on tmpfs / in order (control)", LONG_ITEMS, ms250, true, None),
    ];
    let figures: Vec<Pair<'_>> = specs
        .into_iter()
        .filter_map(|(figure, n, interval, on_tmpfs, target)| {
            let dir = if on_tmpfs { &tmpfs.as_ref()?.0 } else { &disk.0 };
            Some(Pair {
                figure: figure.to_owned(),
                calls: if n == LONG_ITEMS { 1 } else { 5 },
                pairs: if n == LONG_ITEMS { long_pairs } else { pairs },
                target,
                baseline: Variant::in_order(n),
                variant: Variant::durable(n, interval, dir),
            })
        })
        .collect();
    println!("checkpoints in {}", disk.0.display());
    for pair in &figures {
        // Warm up both sides (and check their answers) before timing.
        pair.baseline.timed(1);
        pair.variant.timed(1);
        // Per pair: (variant / baseline, variant − baseline per call in ms).
        let mut pairs: Vec<(f64, f64)> = (0..pair.pairs)
            .map(|i| {
                let (base, variant) = if i % 2 == 0 {
                    let base = pair.baseline.timed(pair.calls);
                    (base, pair.variant.timed(pair.calls))
                } else {
                    let variant = pair.variant.timed(pair.calls);
                    (pair.baseline.timed(pair.calls), variant)
                };
                let (base, variant) = (base.as_secs_f64(), variant.as_secs_f64());
                (variant / base, (variant - base) * 1e3 / pair.calls as f64)
            })
            .collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let median = pairs[pairs.len() / 2].0;
        let mut extra: Vec<f64> = pairs.iter().map(|pair| pair.1).collect();
        extra.sort_by(f64::total_cmp);
        let verdict = match pair.target {
            Some(target) => format!("target <= {target:.3} {}", if median <= target { "ok" } else { "OVER" }),
            None => String::new(),
        };
        println!(
            "paired {}: median x{median:.3} [{:.3} - {:.3}] n={}, {:+.3} ms per run   {verdict}",
            pair.figure,
            pairs[0].0,
            pairs[pairs.len() - 1].0,
            pairs.len(),
            extra[extra.len() / 2],
        );
    }
}

fn main() {
    common::run(paired, benches);
}
