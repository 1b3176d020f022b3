//! The engine against hand-written rayon (and plain loops), side by side.
//!
//! Every group measures its variants in the same run, so the ratios between
//! them mean something even on a noisy machine; `benches/ratios.py` prints
//! them from criterion's estimates:
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/bench-target cargo bench --bench engine
//! python3 benches/ratios.py /tmp/bench-target
//! ```
//!
//! `MAPREDUCE_BENCH_PAIRS=15 cargo bench --bench engine` skips criterion and
//! times the reproducible in-order figures as interleaved pairs instead (see
//! [`paired`]): steadier than criterion's medians when the machine's load
//! moves within seconds.
//!
//! Rayon runs on a pool of 2 threads built once; the engine runs under
//! `Config::current().with_workers(2).with_progress_bars(false)`, so both
//! have the same number of threads. Every group checks once, before it is
//! measured, that its variants compute the same answer.

use std::hint::black_box;
use std::ops::ControlFlow::{self, Break, Continue};
use std::ops::Range;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod common;

use common::{busy, splitmix64, Mix, MixUntil};
use criterion::{criterion_group, BenchmarkGroup, Criterion, SamplingMode};
use mapreduce::{par_map_reduce, par_map_reduce_in_order, par_map_reduce_iter, Config, MapReduce};
use rayon::prelude::*;
use rayon::ThreadPool;

/// Worker threads on both sides.
const WORKERS: usize = 2;

const TINY_ITEMS: u64 = 20_000_000;
const SHORTCIRCUIT_ITEMS: u64 = 50_000_000;
/// The item at which the shortcircuit group breaks: a third of the way.
const BREAK_AT: u64 = SHORTCIRCUIT_ITEMS / 3;
const SMALL_JOB_ITEMS: u64 = 8;
const SMALL_JOB_CALLS: usize = 5000;
const STREAM_ITEMS: u64 = 10_000_000;
/// Items of [`STREAM_ROUNDS`] splitmix64 rounds (~8 ns) in the streamed
/// figure of medium-fast items.
const STREAM_BUSY_ITEMS: u64 = 2_000_000;
const STREAM_ROUNDS: u64 = 16;
const ONE_WORKER_ITEMS: u64 = 10_000_000;
const MEDIUM_ITEMS: u64 = 200_000;
/// The target compute time of one medium item.
const MEDIUM_ITEM_TIME: Duration = Duration::from_micros(5);

/// Rounds of [`busy`] that take about [`MEDIUM_ITEM_TIME`] on this machine.
fn medium_rounds() -> u64 {
    static ROUNDS: OnceLock<u64> = OnceLock::new();
    *ROUNDS.get_or_init(|| {
        const PROBE: u64 = 200_000;
        let fastest = (0..20)
            .map(|i| {
                let start = Instant::now();
                black_box(busy(black_box(i), PROBE));
                start.elapsed()
            })
            .min()
            .unwrap_or(Duration::from_millis(1));
        let rounds = (MEDIUM_ITEM_TIME.as_secs_f64() / fastest.as_secs_f64() * PROBE as f64).round() as u64;
        let rounds = rounds.max(1);
        eprintln!(
            "medium_5us: {rounds} splitmix64 rounds per item ({:.2} ns each)",
            fastest.as_nanos() as f64 / PROBE as f64
        );
        rounds
    })
}

/// The rayon pool of the hand-written baselines, built once.
fn rayon_pool() -> &'static ThreadPool {
    static POOL: OnceLock<ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(WORKERS)
            .build()
            .expect("the benchmark's rayon pool")
    })
}

/// The engine's configuration for these benches.
fn engine_config(workers: usize) -> Config {
    Config::current()
        .with_workers(workers as isize)
        .with_progress_bars(false)
}

fn value(flow: ControlFlow<u64, u64>) -> u64 {
    match flow {
        Continue(acc) | Break(acc) => acc,
    }
}

/// Hand-written rayon: the wrapping sum of `f` over `items`, with the same
/// `try_fold`/`try_reduce` shape as the engine's fold and merge.
fn rayon_sum(items: Range<u64>, f: impl Fn(u64) -> u64 + Sync + Send) -> u64 {
    rayon_pool().install(|| {
        let flow = items
            .into_par_iter()
            .try_fold(
                || 0u64,
                |acc, i| ControlFlow::<u64, u64>::Continue(acc.wrapping_add(f(i))),
            )
            .try_reduce(|| 0, |a, b| Continue(a.wrapping_add(b)));
        value(flow)
    })
}

/// The indexed input of the in-order groups: `0..n` as a `usize` range (an
/// indexed parallel iterator; rayon's `u64` ranges are not), mapped to `u64`.
fn indexed(n: u64) -> impl IndexedParallelIterator<Item = u64> {
    (0..n as usize).into_par_iter().map(|i| i as u64)
}

/// [`rayon_sum`] over the same items as the in-order runs: [`indexed`].
fn rayon_sum_indexed(n: u64, f: impl Fn(u64) -> u64 + Sync + Send) -> u64 {
    rayon_pool().install(|| {
        let flow = indexed(n)
            .try_fold(
                || 0u64,
                |acc, i| ControlFlow::<u64, u64>::Continue(acc.wrapping_add(f(i))),
            )
            .try_reduce(|| 0, |a, b| Continue(a.wrapping_add(b)));
        value(flow)
    })
}

/// A plain sequential loop.
fn sequential_sum(items: Range<u64>, f: impl Fn(u64) -> u64) -> u64 {
    items.fold(0u64, |acc, i| acc.wrapping_add(f(i)))
}

/// The wrapping sum of [`busy`] over the items.
struct Busy {
    rounds: u64,
}

impl MapReduce<u64> for Busy {
    type Output = u64;
    type Acc = u64;

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

/// A group of long-running benchmarks: few samples, each of the same number
/// of iterations.
fn group<'c>(
    c: &'c mut Criterion,
    name: &str,
    measurement: Duration,
) -> BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(measurement);
    group
}

/// 2×10^7 tiny items: rayon, the engine, a sequential loop.
fn tiny(c: &mut Criterion) {
    let engine = engine_config(WORKERS);
    let run_engine = || {
        engine
            .clone()
            .scope(|| par_map_reduce(0..black_box(TINY_ITEMS), &(), Mix).unwrap())
    };
    let expected = sequential_sum(0..TINY_ITEMS, splitmix64);
    assert_eq!(rayon_sum(0..TINY_ITEMS, splitmix64), expected);
    assert_eq!(run_engine(), expected);

    let mut group = group(c, "tiny_2e7", Duration::from_secs(3));
    group.bench_function("rayon", |b| b.iter(|| rayon_sum(0..black_box(TINY_ITEMS), splitmix64)));
    group.bench_function("engine", |b| b.iter(run_engine));
    group.bench_function("sequential", |b| {
        b.iter(|| sequential_sum(0..black_box(TINY_ITEMS), splitmix64))
    });
    group.finish();
}

/// Hand-written rayon over `0..n`: the wrapping sum of `splitmix64`,
/// breaking at item `at`; whether it broke, and the sum.
fn rayon_break_at(n: u64, at: u64) -> (bool, u64) {
    rayon_pool().install(|| {
        let flow = (0..black_box(n))
            .into_par_iter()
            .try_fold(
                || 0u64,
                |acc, i| {
                    let acc = acc.wrapping_add(splitmix64(i));
                    if i == at {
                        Break(acc)
                    } else {
                        Continue(acc)
                    }
                },
            )
            .try_reduce(|| 0, |a, b| Continue(a.wrapping_add(b)));
        (flow.is_break(), value(flow))
    })
}

/// 5×10^7 tiny items, the run breaking at item 5×10^7/3: the engine in both
/// modes, rayon breaking at the same item, rayon's `find_first`, and the
/// ideal: rayon over the first third only.
fn shortcircuit(c: &mut Criterion) {
    let n = SHORTCIRCUIT_ITEMS;
    let deterministic = engine_config(WORKERS);
    let any_order = engine_config(WORKERS).with_deterministic(false);
    let job = MixUntil { at: BREAK_AT };
    let first_third = || rayon_sum(0..black_box(BREAK_AT) + 1, splitmix64);
    let rayon_break = |n: u64| rayon_break_at(n, BREAK_AT);
    // splitmix64 is a bijection: only item BREAK_AT hashes to this.
    let target = splitmix64(BREAK_AT);
    let find_first = || {
        rayon_pool().install(|| {
            (0..black_box(n))
                .into_par_iter()
                .find_first(|&i| splitmix64(i) == target)
        })
    };
    let expected = sequential_sum(0..BREAK_AT + 1, splitmix64);
    assert_eq!(first_third(), expected);
    assert_eq!(
        deterministic.clone().scope(|| par_map_reduce(0..n, &(), &job).unwrap()),
        expected
    );
    assert_eq!(
        deterministic
            .clone()
            .scope(|| par_map_reduce_iter(0..n, &(), &job).unwrap()),
        expected
    );
    any_order.clone().scope(|| par_map_reduce(0..n, &(), &job).unwrap());
    assert!(rayon_break(n).0);
    assert!(rayon_break(BREAK_AT + 1).0);
    assert_eq!(find_first(), Some(BREAK_AT));

    let mut group = group(c, "shortcircuit", Duration::from_secs(2));
    group.bench_function("rayon_first_third", |b| b.iter(first_third));
    // The same ideal with the same per-item work as the breaking job (the
    // `i == BREAK_AT` test), which a plain sum does not pay.
    group.bench_function("rayon_first_third_same_job", |b| b.iter(|| rayon_break(BREAK_AT + 1)));
    group.bench_function("engine_deterministic", |b| {
        deterministic
            .clone()
            .scope(|| b.iter(|| par_map_reduce(0..black_box(n), &(), &job).unwrap()))
    });
    group.bench_function("engine_any_order", |b| {
        any_order
            .clone()
            .scope(|| b.iter(|| par_map_reduce(0..black_box(n), &(), &job).unwrap()))
    });
    group.bench_function("rayon_try_fold_break", |b| b.iter(|| rayon_break(n)));
    group.bench_function("rayon_find_first", |b| b.iter(find_first));
    // Not in the brief: the streamed engine folds the input in growing
    // prefixes, which is how a deterministic shortcircuit avoids working
    // far right of the break.
    // Not in the brief: the in-order entry point for indexed inputs.
    group.bench_function("engine_in_order_deterministic", |b| {
        deterministic.clone().scope(|| {
            b.iter(|| {
                mapreduce::par_map_reduce_in_order(
                    (0..black_box(n) as usize).into_par_iter().map(|i| i as u64),
                    &(),
                    &job,
                )
                .unwrap()
            })
        })
    });
    group.bench_function("engine_iter_deterministic", |b| {
        deterministic
            .clone()
            .scope(|| b.iter(|| par_map_reduce_iter(0..black_box(n), &(), &job).unwrap()))
    });
    group.finish();
}

/// An 8-item job called 5000 times: the engine against `pool.install` of the
/// same reduction on a pool built once.
fn small_jobs(c: &mut Criterion) {
    let engine = engine_config(WORKERS);
    let engine_calls = || {
        (0..SMALL_JOB_CALLS).fold(0u64, |acc, _| {
            acc.wrapping_add(par_map_reduce(0..black_box(SMALL_JOB_ITEMS), &(), Mix).unwrap())
        })
    };
    let rayon_calls = || {
        (0..SMALL_JOB_CALLS).fold(0u64, |acc, _| {
            acc.wrapping_add(rayon_sum(0..black_box(SMALL_JOB_ITEMS), splitmix64))
        })
    };
    assert_eq!(engine.clone().scope(engine_calls), rayon_calls());

    let mut group = group(c, "small_jobs", Duration::from_secs(3));
    group.bench_function("rayon", |b| b.iter(rayon_calls));
    group.bench_function("engine", |b| engine.clone().scope(|| b.iter(engine_calls)));
    group.finish();
}

/// A plain iterator over `0..n` (not a range any more: `par_map_reduce_iter`
/// reads it on the calling thread), with an exact `size_hint`.
#[allow(clippy::map_identity)] // on purpose: not a range any more
fn plain(n: u64) -> impl Iterator<Item = u64> {
    (0..n).map(|i| i)
}

/// Issue #13's stream rows: `par_map_reduce_iter` over a plain iterator
/// against `par_map_reduce_in_order` over the same items as an indexed
/// range (the same leaves, so the same bits), 10^7 tiny items (one
/// splitmix64 each) and 2×10^6 items of 16 rounds (~8 ns).
fn stream_in_order(c: &mut Criterion) {
    let engine = engine_config(WORKERS);
    let tiny_in_order = || {
        engine
            .clone()
            .scope(|| par_map_reduce_in_order(indexed(black_box(STREAM_ITEMS)), &(), Mix).unwrap())
    };
    let tiny_iter = || {
        engine
            .clone()
            .scope(|| par_map_reduce_iter(plain(black_box(STREAM_ITEMS)), &(), Mix).unwrap())
    };
    let job = Busy { rounds: STREAM_ROUNDS };
    let busy_in_order = || {
        engine
            .clone()
            .scope(|| par_map_reduce_in_order(indexed(black_box(STREAM_BUSY_ITEMS)), &(), &job).unwrap())
    };
    let busy_iter = || {
        engine
            .clone()
            .scope(|| par_map_reduce_iter(plain(black_box(STREAM_BUSY_ITEMS)), &(), &job).unwrap())
    };
    assert_eq!(tiny_iter(), tiny_in_order());
    assert_eq!(busy_iter(), busy_in_order());
    let mut group = group(c, "stream_in_order_tiny", Duration::from_secs(3));
    group.bench_function("engine_in_order", |b| b.iter(tiny_in_order));
    group.bench_function("engine_iter", |b| b.iter(tiny_iter));
    group.finish();
    let mut busy = self::group(c, "stream_in_order_16_rounds", Duration::from_secs(3));
    busy.bench_function("engine_in_order", |b| b.iter(busy_in_order));
    busy.bench_function("engine_iter", |b| b.iter(busy_iter));
    busy.finish();
}

/// 10^7 tiny items streamed from a plain iterator, against the same items as
/// a parallel range.
fn stream(c: &mut Criterion) {
    let engine = engine_config(WORKERS);
    let range = || par_map_reduce(0..black_box(STREAM_ITEMS), &(), Mix).unwrap();
    #[allow(clippy::map_identity)] // on purpose: not a range any more
    let iter = || par_map_reduce_iter((0..black_box(STREAM_ITEMS)).map(|i| i), &(), Mix).unwrap();
    assert_eq!(engine.clone().scope(range), sequential_sum(0..STREAM_ITEMS, splitmix64));
    assert_eq!(engine.clone().scope(iter), engine.clone().scope(range));

    let mut group = group(c, "stream", Duration::from_secs(3));
    group.bench_function("engine_range", |b| engine.clone().scope(|| b.iter(range)));
    group.bench_function("engine_iter", |b| engine.clone().scope(|| b.iter(iter)));
    group.finish();
}

/// 10^7 tiny items on one worker, against a sequential loop.
fn one_worker(c: &mut Criterion) {
    let engine = engine_config(1);
    let run_engine = || {
        engine
            .clone()
            .scope(|| par_map_reduce(0..black_box(ONE_WORKER_ITEMS), &(), Mix).unwrap())
    };
    assert_eq!(run_engine(), sequential_sum(0..ONE_WORKER_ITEMS, splitmix64));

    let mut group = group(c, "one_worker", Duration::from_secs(3));
    group.bench_function("sequential", |b| {
        b.iter(|| sequential_sum(0..black_box(ONE_WORKER_ITEMS), splitmix64))
    });
    group.bench_function("engine", |b| b.iter(run_engine));
    // For context: LLVM vectorizes the plain loop with SSE2, which emulates
    // 64-bit multiplies and is slower here than scalar code.
    group.bench_function("sequential_scalar", |b| {
        b.iter(|| sequential_sum(0..black_box(ONE_WORKER_ITEMS), |i| splitmix64(black_box(i))))
    });
    group.finish();
}

/// 200,000 items of about 5 µs each: the engine against rayon.
fn medium(c: &mut Criterion) {
    let rounds = medium_rounds();
    let engine = engine_config(WORKERS);
    let run_engine = || {
        engine
            .clone()
            .scope(|| par_map_reduce(0..black_box(MEDIUM_ITEMS), &(), Busy { rounds }).unwrap())
    };
    let run_rayon = || rayon_sum(0..black_box(MEDIUM_ITEMS), |i| busy(i, rounds));
    assert_eq!(run_engine(), run_rayon());

    let mut group = group(c, "medium_5us", Duration::from_secs(5));
    group.bench_function("rayon", |b| b.iter(run_rayon));
    group.bench_function("engine", |b| b.iter(run_engine));
    group.finish();
}

/// Any-order break at item 2.5×10^7−1 of 5×10^7: the engine against rayon's
/// `try_fold` breaking at the same item.
fn shortcircuit_middle(c: &mut Criterion) {
    let n = SHORTCIRCUIT_ITEMS;
    let at = n / 2 - 1;
    let any_order = engine_config(WORKERS).with_deterministic(false);
    let job = MixUntil { at };
    let rayon_break = || rayon_break_at(n, at);
    assert!(rayon_break().0);
    any_order.clone().scope(|| par_map_reduce(0..n, &(), &job).unwrap());

    let mut group = group(c, "shortcircuit_middle", Duration::from_secs(2));
    group.bench_function("rayon_try_fold_break", |b| b.iter(rayon_break));
    group.bench_function("engine_any_order", |b| {
        any_order
            .clone()
            .scope(|| b.iter(|| par_map_reduce(0..black_box(n), &(), &job).unwrap()))
    });
    group.finish();
}

/// 400 items of ~1 ms: the engine's speedup over a sequential loop on two
/// workers (the ratio engine / sequential must stay at or below 1/1.95).
fn coarse(c: &mut Criterion) {
    let rounds = medium_rounds() * 200;
    let engine = engine_config(WORKERS);
    let run_engine = || {
        engine
            .clone()
            .scope(|| par_map_reduce(0..black_box(400u64), &(), Busy { rounds }).unwrap())
    };
    let run_sequential = || sequential_sum(0..black_box(400u64), |i| busy(i, rounds));
    assert_eq!(run_engine(), run_sequential());

    let mut group = group(c, "coarse_1ms", Duration::from_secs(6));
    group.bench_function("sequential", |b| b.iter(run_sequential));
    group.bench_function("engine", |b| b.iter(run_engine));
    group.finish();
}

/// A tiny `f64` item: random sign, exponents over 2^-40..2^23.
fn tiny_float(i: u64) -> f64 {
    let h = splitmix64(i);
    let magnitude = f64::from_bits((h >> 12) | ((1023 - 40 + (h & 63)) << 52));
    if h & 64 == 0 {
        magnitude
    } else {
        -magnitude
    }
}

/// 2×10^7 tiny `f64` items on the engine: `jobs::exact_sum` against
/// `jobs::sum` (the target: exact_sum / sum ≤ 3).
fn exact_sum(c: &mut Criterion) {
    let engine = engine_config(WORKERS);
    let sum = mapreduce::jobs::sum(|i: u64, _: &()| tiny_float(i));
    let exact = mapreduce::jobs::exact_sum(|i: u64, _: &()| tiny_float(i));
    let run_sum = || {
        engine
            .clone()
            .scope(|| par_map_reduce(0..black_box(TINY_ITEMS), &(), &sum).unwrap())
    };
    let run_exact = || {
        engine
            .clone()
            .scope(|| par_map_reduce(0..black_box(TINY_ITEMS), &(), &exact).unwrap().to_f64())
    };
    let scale: f64 = (0..TINY_ITEMS).map(|i| tiny_float(i).abs()).sum();
    assert!((run_sum() - run_exact()).abs() <= scale * 1e-12, "the sums disagree");
    assert_eq!(run_exact().to_bits(), run_exact().to_bits());

    let mut group = group(c, "exact_sum_2e7", Duration::from_secs(3));
    group.bench_function("sum", |b| b.iter(run_sum));
    group.bench_function("exact_sum", |b| b.iter(run_exact));
    group.finish();
}

/// Reproducible in-order runs (`par_map_reduce_in_order`: leaves, the fixed
/// tree, blocks of whole leaves) of 2×10^7 tiny items, against hand-written
/// rayon over the same indexed items (and over a `u64` range, as `tiny_2e7`).
fn in_order_tiny(c: &mut Criterion) {
    let engine = engine_config(WORKERS);
    let run_in_order = || {
        engine
            .clone()
            .scope(|| par_map_reduce_in_order(indexed(black_box(TINY_ITEMS)), &(), Mix).unwrap())
    };
    let expected = sequential_sum(0..TINY_ITEMS, splitmix64);
    assert_eq!(rayon_sum_indexed(TINY_ITEMS, splitmix64), expected);
    assert_eq!(run_in_order(), expected);

    let mut group = group(c, "in_order_tiny_2e7", Duration::from_secs(3));
    group.bench_function("rayon", |b| {
        b.iter(|| rayon_sum_indexed(black_box(TINY_ITEMS), splitmix64))
    });
    group.bench_function("engine_in_order", |b| b.iter(run_in_order));
    group.bench_function("rayon_u64_range", |b| {
        b.iter(|| rayon_sum(0..black_box(TINY_ITEMS), splitmix64))
    });
    group.finish();
}

/// 200,000 items of about 5 µs each, in order, against rayon.
fn in_order_medium(c: &mut Criterion) {
    let rounds = medium_rounds();
    let engine = engine_config(WORKERS);
    let run_in_order = || {
        engine
            .clone()
            .scope(|| par_map_reduce_in_order(indexed(black_box(MEDIUM_ITEMS)), &(), Busy { rounds }).unwrap())
    };
    let run_rayon = || rayon_sum_indexed(black_box(MEDIUM_ITEMS), |i| busy(i, rounds));
    assert_eq!(run_in_order(), run_rayon());

    let mut group = group(c, "in_order_medium_5us", Duration::from_secs(5));
    group.bench_function("rayon", |b| b.iter(run_rayon));
    group.bench_function("engine_in_order", |b| b.iter(run_in_order));
    group.finish();
}

/// 400 items of ~1 ms, in order on two workers, against a sequential loop
/// (the ratio in order / sequential must stay at or below 1/1.95).
fn in_order_coarse(c: &mut Criterion) {
    let rounds = medium_rounds() * 200;
    let engine = engine_config(WORKERS);
    let run_in_order = || {
        engine
            .clone()
            .scope(|| par_map_reduce_in_order(indexed(black_box(400)), &(), Busy { rounds }).unwrap())
    };
    let run_sequential = || sequential_sum(0..black_box(400u64), |i| busy(i, rounds));
    assert_eq!(run_in_order(), run_sequential());

    let mut group = group(c, "in_order_coarse_1ms", Duration::from_secs(6));
    group.bench_function("sequential", |b| b.iter(run_sequential));
    group.bench_function("engine_in_order", |b| b.iter(run_in_order));
    // A control: what two rayon threads get out of the machine.
    group.bench_function("rayon", |b| {
        b.iter(|| rayon_sum_indexed(black_box(400), |i| busy(i, rounds)))
    });
    group.finish();
}

criterion_group!(
    benches,
    tiny,
    shortcircuit,
    shortcircuit_middle,
    small_jobs,
    stream,
    stream_in_order,
    one_worker,
    medium,
    coarse,
    exact_sum,
    in_order_tiny,
    in_order_medium,
    in_order_coarse
);

/// One figure of the paired mode: a baseline and a variant, with how many
/// calls each timing spans and the target ratio (variant / baseline).
struct Pair<'f> {
    figure: &'static str,
    calls: usize,
    target: f64,
    baseline: Box<dyn Fn() -> u64 + 'f>,
    variant: Box<dyn Fn() -> u64 + 'f>,
}

/// The time of `calls` calls of `f`, wall clock and CPU (of all the
/// process's threads).
fn timed(calls: usize, f: &dyn Fn() -> u64) -> (f64, f64) {
    let cpu_started = process_cpu_time();
    let started = Instant::now();
    for _ in 0..calls {
        black_box(f());
    }
    (started.elapsed().as_secs_f64(), process_cpu_time() - cpu_started)
}

/// The CPU time this process has used, in seconds: on a machine shared
/// with other work, a ratio of CPU times says what a variant costs even
/// when the wall clock says mostly how the machine was shared.
fn process_cpu_time() -> f64 {
    let mut time = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `clock_gettime` writes the `timespec` it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut time) };
    time.tv_sec as f64 + time.tv_nsec as f64 * 1e-9
}

/// The median, min and max of `values`.
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 2], values[0], values[values.len() - 1])
}

/// `MAPREDUCE_BENCH_PAIRS=n`: instead of criterion, time the reproducible
/// in-order figures as `n` interleaved pairs (baseline then variant, then
/// variant then baseline, ...), and print per figure the median and min–max
/// of the pairs' ratios. On a shared machine whose load moves within
/// seconds, a ratio of two timings taken back to back is steadier than a
/// ratio of criterion medians taken a minute apart.
fn paired(pairs: usize) {
    let engine = engine_config(WORKERS);
    let rounds = medium_rounds();
    let job = MixUntil { at: BREAK_AT };
    let in_order = |f: &dyn Fn() -> u64| engine.clone().scope(f);
    let first_third_sum = sequential_sum(0..BREAK_AT + 1, splitmix64);
    let stream_job = Busy { rounds: STREAM_ROUNDS };
    let figures = [
        Pair {
            figure: "stream_in_order_tiny: engine_iter / engine_in_order",
            calls: 5,
            target: 1.25,
            baseline: Box::new(|| {
                in_order(&|| par_map_reduce_in_order(indexed(black_box(STREAM_ITEMS)), &(), Mix).unwrap())
            }),
            variant: Box::new(|| in_order(&|| par_map_reduce_iter(plain(black_box(STREAM_ITEMS)), &(), Mix).unwrap())),
        },
        Pair {
            figure: "stream_in_order_16_rounds: engine_iter / engine_in_order",
            calls: 5,
            target: 1.03,
            baseline: Box::new(|| {
                in_order(&|| par_map_reduce_in_order(indexed(black_box(STREAM_BUSY_ITEMS)), &(), &stream_job).unwrap())
            }),
            variant: Box::new(|| {
                in_order(&|| par_map_reduce_iter(plain(black_box(STREAM_BUSY_ITEMS)), &(), &stream_job).unwrap())
            }),
        },
        Pair {
            figure: "in_order_tiny_2e7: engine_in_order / rayon",
            calls: 5,
            target: 1.05,
            baseline: Box::new(|| rayon_sum_indexed(black_box(TINY_ITEMS), splitmix64)),
            variant: Box::new(|| {
                in_order(&|| par_map_reduce_in_order(indexed(black_box(TINY_ITEMS)), &(), Mix).unwrap())
            }),
        },
        Pair {
            figure: "in_order_medium_5us: engine_in_order / rayon",
            calls: 1,
            target: 1.01,
            baseline: Box::new(|| rayon_sum_indexed(black_box(MEDIUM_ITEMS), |i| busy(i, rounds))),
            variant: Box::new(|| {
                in_order(&|| par_map_reduce_in_order(indexed(black_box(MEDIUM_ITEMS)), &(), Busy { rounds }).unwrap())
            }),
        },
        Pair {
            figure: "in_order_coarse_1ms: engine_in_order / sequential",
            calls: 1,
            target: 1.0 / 1.95,
            baseline: Box::new(|| sequential_sum(0..black_box(400u64), |i| busy(i, rounds * 200))),
            variant: Box::new(|| {
                in_order(&|| {
                    par_map_reduce_in_order(indexed(black_box(400)), &(), Busy { rounds: rounds * 200 }).unwrap()
                })
            }),
        },
        // Controls for the coarse speedup, which needs two free cores: what
        // rayon gets out of the machine in the same seconds, and the engine
        // against it.
        Pair {
            figure: "in_order_coarse_1ms: rayon / sequential (control)",
            calls: 1,
            target: 1.0 / 1.95,
            baseline: Box::new(|| sequential_sum(0..black_box(400u64), |i| busy(i, rounds * 200))),
            variant: Box::new(|| rayon_sum_indexed(black_box(400), |i| busy(i, rounds * 200))),
        },
        Pair {
            figure: "in_order_coarse_1ms: engine_in_order / rayon (control)",
            calls: 1,
            target: 1.0,
            baseline: Box::new(|| rayon_sum_indexed(black_box(400), |i| busy(i, rounds * 200))),
            variant: Box::new(|| {
                in_order(&|| {
                    par_map_reduce_in_order(indexed(black_box(400)), &(), Busy { rounds: rounds * 200 }).unwrap()
                })
            }),
        },
        Pair {
            figure: "shortcircuit: engine_in_order_deterministic / rayon_first_third",
            calls: 5,
            target: 1.25,
            baseline: Box::new(|| rayon_sum(0..black_box(BREAK_AT) + 1, splitmix64)),
            variant: Box::new(|| {
                in_order(&|| par_map_reduce_in_order(indexed(black_box(SHORTCIRCUIT_ITEMS)), &(), &job).unwrap())
            }),
        },
        // The same ideal with the breaking job's per-item work (the item
        // carried along and compared), which the plain sum does not pay.
        Pair {
            figure: "shortcircuit: engine_in_order_deterministic / rayon_first_third_same_job",
            calls: 5,
            target: 1.25,
            // Rayon's `try_reduce` keeps only the broken piece's sum, so
            // this baseline checks that it broke and answers the full sum.
            baseline: Box::new(|| {
                assert!(rayon_break_at(black_box(BREAK_AT) + 1, BREAK_AT).0);
                first_third_sum
            }),
            variant: Box::new(|| {
                in_order(&|| par_map_reduce_in_order(indexed(black_box(SHORTCIRCUIT_ITEMS)), &(), &job).unwrap())
            }),
        },
    ];
    // `MAPREDUCE_BENCH_FIGURES=stream`: only the figures whose name holds it.
    let only = std::env::var("MAPREDUCE_BENCH_FIGURES").unwrap_or_default();
    for pair in figures.iter().filter(|pair| pair.figure.contains(&only)) {
        assert_eq!(
            (pair.baseline)(),
            (pair.variant)(),
            "{}: the variants disagree",
            pair.figure
        );
        let (ratios, cpu_ratios): (Vec<f64>, Vec<f64>) = (0..pairs)
            .map(|i| {
                let (base, variant) = if i % 2 == 0 {
                    let base = timed(pair.calls, &*pair.baseline);
                    (base, timed(pair.calls, &*pair.variant))
                } else {
                    let variant = timed(pair.calls, &*pair.variant);
                    (timed(pair.calls, &*pair.baseline), variant)
                };
                (variant.0 / base.0, variant.1 / base.1)
            })
            .unzip();
        let (median, min, max) = spread(ratios);
        let (cpu_median, cpu_min, cpu_max) = spread(cpu_ratios);
        println!(
            "paired {}: median x{median:.3} [{min:.3} - {max:.3}] n={pairs}   target <= {:.3} {}   (CPU time: x{cpu_median:.3} [{cpu_min:.3} - {cpu_max:.3}])",
            pair.figure,
            pair.target,
            if median <= pair.target { "ok" } else { "OVER" }
        );
    }
}

fn main() {
    common::run(paired, benches);
}
