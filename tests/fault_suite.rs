//! Thousands of randomized fault runs: no hang, no wrong answer, nothing
//! leaked. Each case draws its item count (0 included), worker count (1–8,
//! more than the cores too), mode, input kind, `Break`s (in `process_result`
//! and, for adjacent pairs that straddle two stretches, found only by
//! `merge`), panics in `compute`, `process_result` and `merge` (also merges
//! that panic only right of the sequential answer), nested runs (parallel
//! and streamed) up to depth 3, `compute` that runs rayon work of its own
//! polling its task, runs started from the application's own rayon pool, and
//! slow items and leaf sizes from a seed, and is checked against `seq_map_reduce`:
//! deterministic runs must be identical (panics included), any-order runs
//! must end at a `Break` or be identical. A failure names its seed; replay
//! one with `MAPREDUCE_FAULT_SEED=<seed>`. `MAPREDUCE_FAULT_RUNS=20000`
//! makes a soak run (default: 5000). A watchdog fails the test with the
//! seed of a case that hangs. The OS thread count and peak memory are
//! compared before and after (this binary holds one test, so nothing else
//! runs meanwhile).

mod common;

use std::collections::BTreeSet;
use std::ops::ControlFlow::{self, Break, Continue};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{os_threads, peak_rss_kib, quiet_scripted_panics, Rng, SCRIPTED};
use mapreduce::prelude::*;
use mapreduce::{Outcome, ProgressSink};

/// Up to three items (of `len`, a few past it too), `percent` of the time.
fn draw_set(rng: &mut Rng, len: u64, percent: u64) -> BTreeSet<u64> {
    if !rng.chance(percent) {
        return BTreeSet::new();
    }
    (0..1 + rng.below(3)).map(|_| rng.below(len + len / 8 + 1)).collect()
}

#[derive(Clone, Copy, Debug)]
enum Input {
    Range,
    Vec,
    Unindexed,
    /// `flat_map`: one part split off per outer item.
    FlatMap,
    Streamed,
    InOrder,
}

impl Input {
    /// Run `job` over the items `0..len` given this way.
    fn run<J: MapReduce<u64> + ?Sized>(self, len: u64, job: &J) -> Result<J::Acc, Error> {
        match self {
            Input::Range => par_map_reduce(0..len, &(), job),
            Input::Vec => par_map_reduce((0..len).collect::<Vec<_>>(), &(), job),
            Input::Unindexed => (0..len).into_par_iter().filter(|_| true).map_reduce(&(), job),
            Input::FlatMap => (0..len.div_ceil(3))
                .into_par_iter()
                .flat_map(|x| (3 * x..(3 * x + 3).min(len)).into_par_iter())
                .map_reduce(&(), job),
            Input::Streamed => par_map_reduce_iter(0..len, &(), job),
            Input::InOrder => par_map_reduce_in_order((0..len).collect::<Vec<_>>(), &(), job),
        }
    }
}

/// An output is `item * SCALE + extra`: `extra` counts what `compute` saw.
const SCALE: u64 = 1_000_000;
/// In `extra`: one of these for each inner closure that saw its item's task
/// cancelled while the item was needed (never, when the answer is right).
const SAW_CANCELLED: u64 = 1000;

/// Collects items in order, with scripted faults; `compute` of a nested
/// job runs a run of its own, one level down.
#[derive(Debug)]
struct Faulty {
    breaks: BTreeSet<u64>,
    /// A `Break` at the second of two adjacent items that are both in this
    /// set; when the pair straddles two stretches, only `merge` finds it.
    pair_breaks: BTreeSet<u64>,
    compute_panics: BTreeSet<u64>,
    process_panics: BTreeSet<u64>,
    /// `merge` panics once both sides hold at least this many items.
    merge_panic_at: Option<usize>,
    /// `merge` panics when both sides start right of this item: right of
    /// the sequential answer, where a deterministic run never needs to go.
    merge_panic_right_of: Option<u64>,
    slow: BTreeSet<u64>,
    /// `compute` runs rayon work of its own that polls the item's task.
    inner_parallel: bool,
    depth: u32,
}

impl Faulty {
    fn calm(depth: u32) -> Faulty {
        Faulty {
            breaks: BTreeSet::new(),
            pair_breaks: BTreeSet::new(),
            compute_panics: BTreeSet::new(),
            process_panics: BTreeSet::new(),
            merge_panic_at: None,
            merge_panic_right_of: None,
            slow: BTreeSet::new(),
            inner_parallel: false,
            depth,
        }
    }

    /// The item where a sequential run ends early, if it does.
    fn first_event(&self, len: u64) -> Option<u64> {
        let pair = (1..len).find(|&i| self.pair_breaks.contains(&(i - 1)) && self.pair_breaks.contains(&i));
        [
            self.breaks.first().copied(),
            self.compute_panics.first().copied(),
            self.process_panics.first().copied(),
            pair,
        ]
        .into_iter()
        .flatten()
        .filter(|&item| item < len)
        .min()
    }
}

impl MapReduce<u64> for Faulty {
    type Output = u64;
    type Acc = Vec<u64>;

    fn empty_result(&self, _: &()) -> Vec<u64> {
        Vec::new()
    }
    fn compute(&self, item: u64, _: &()) -> u64 {
        if self.slow.contains(&item) {
            std::thread::sleep(Duration::from_millis(2));
        }
        if self.compute_panics.contains(&item) {
            panic!("{SCRIPTED} in compute at {item}");
        }
        let mut extra = 0;
        if self.inner_parallel && item % 3 == 0 {
            let task = mapreduce::current_task();
            let saw = (0..64u64)
                .into_par_iter()
                .map(move |_| u64::from(task.is_cancelled()))
                .sum::<u64>();
            // What a cancelled item returns is discarded: only a needed
            // item that saw itself cancelled changes the answer.
            extra += saw * SAW_CANCELLED;
        }
        if self.depth > 0 && item % 7 == 0 {
            // No breaks inside: an any-order inner run may end at either of
            // two, and the outer answer would then differ from sequential.
            let inner = Faulty::calm(self.depth - 1);
            // An inner run of a cancelled item may end `Cancelled`: its
            // output is discarded then, so any value will do.
            let inner_run = if item % 2 == 0 {
                par_map_reduce(0..item % 11, &(), &inner)
            } else {
                par_map_reduce_iter(0..item % 11, &(), &inner)
            };
            extra += inner_run.map_or(0, |acc| acc.len() as u64);
        }
        item * SCALE + extra
    }
    fn process_result(&self, new: u64, mut acc: Vec<u64>) -> ControlFlow<Vec<u64>, Vec<u64>> {
        let item = new / SCALE;
        if self.process_panics.contains(&item) {
            panic!("{SCRIPTED} in process_result at {item}");
        }
        let pair = acc.last().is_some_and(|last| self.is_pair(last / SCALE, item));
        acc.push(new);
        if self.breaks.contains(&item) || pair {
            Break(acc)
        } else {
            Continue(acc)
        }
    }
    fn merge(&self, mut left: Vec<u64>, mut right: Vec<u64>) -> ControlFlow<Vec<u64>, Vec<u64>> {
        if self
            .merge_panic_at
            .is_some_and(|at| left.len() >= at && right.len() >= at)
        {
            panic!("{SCRIPTED} in merge");
        }
        let starts_right = |acc: &[u64]| {
            let first = acc.first().map(|value| value / SCALE);
            first
                .zip(self.merge_panic_right_of)
                .is_some_and(|(first, of)| first > of)
        };
        if starts_right(&left) && starts_right(&right) {
            panic!("{SCRIPTED} in a merge right of the answer");
        }
        if let (Some(last), Some(&first)) = (left.last(), right.first()) {
            if self.is_pair(last / SCALE, first / SCALE) {
                // The pair straddles the two stretches: the run ends there.
                left.push(first);
                return Break(left);
            }
        }
        left.append(&mut right);
        Continue(left)
    }
}

impl Faulty {
    /// Whether `item` right after `previous` makes a pair that breaks.
    fn is_pair(&self, previous: u64, item: u64) -> bool {
        previous + 1 == item && self.pair_breaks.contains(&previous) && self.pair_breaks.contains(&item)
    }
}

struct Case {
    seed: u64,
    len: u64,
    workers: isize,
    deterministic: bool,
    input: Input,
    /// Started from a thread of the application's own rayon pool.
    foreign_pool: bool,
    /// Items per leaf of the in-order and streamed runs (0: automatic).
    leaf_size: usize,
    job: Faulty,
    /// Also search the items' float keys (NaN, ±0, ±inf among them) for the
    /// smallest, stopping at a bound, with `jobs::min_by_key`.
    float_keys: Option<FloatKeys>,
}

/// Float keys drawn from a seed: a NaN (with its item in the payload), a
/// signed zero, an infinity or an ordinary number per item.
#[derive(Clone, Copy, Debug)]
struct FloatKeys {
    seed: u64,
    stop_at: Option<f64>,
}

impl FloatKeys {
    fn key(&self, item: u64) -> f64 {
        let mut rng = Rng(self.seed ^ item.wrapping_mul(0x9E37_79B9));
        match rng.below(10) {
            0 | 1 => f64::from_bits(f64::NAN.to_bits() | (item & 0xFFFF)),
            2 => -0.0,
            3 => 0.0,
            4 => f64::INFINITY,
            5 => f64::NEG_INFINITY,
            _ => (rng.below(200) as f64 - 100.0) / 4.0,
        }
    }

    /// The `(key bits, item)` a run finds.
    fn search(
        &self,
        run: impl FnOnce(
            &dyn MapReduce<u64, Output = (f64, u64), Acc = Option<(f64, u64)>>,
        ) -> Result<Option<(f64, u64)>, Error>,
    ) -> Result<Option<(u64, u64)>, String> {
        let job = jobs::min_by_key(|item: u64, _: &()| (self.key(item), item));
        let job = match self.stop_at {
            Some(bound) => job.stop_at(bound),
            None => job,
        };
        run(&job)
            .map(|found| found.map(|(key, item)| (key.to_bits(), item)))
            .map_err(|err| err.to_string())
    }
}

/// The application's own rayon pool, for runs started from its threads.
fn foreign_pool() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .thread_name(|i| format!("application-{i}"))
            .build()
            .unwrap()
    })
}

impl Case {
    fn draw(seed: u64) -> Case {
        let mut rng = Rng(seed);
        let len = match rng.below(4) {
            0 => rng.below(4),
            1 => rng.below(64),
            _ => rng.below(3000),
        };
        let input = [
            Input::Range,
            Input::Vec,
            Input::Unindexed,
            Input::FlatMap,
            Input::Streamed,
            Input::InOrder,
        ][rng.below(6) as usize];
        let mut job = Faulty {
            breaks: draw_set(&mut rng, len, 50),
            pair_breaks: if rng.chance(25) {
                // Pairs, some of them adjacent: `(k, k + 1)`.
                (0..1 + rng.below(3))
                    .map(|_| rng.below(len + 1))
                    .flat_map(|k| [k, k + 1])
                    .collect()
            } else {
                BTreeSet::new()
            },
            compute_panics: draw_set(&mut rng, len, 25),
            process_panics: draw_set(&mut rng, len, 15),
            merge_panic_at: rng.chance(10).then(|| 1 + rng.below(200) as usize),
            merge_panic_right_of: None,
            slow: if rng.chance(10) {
                draw_set(&mut rng, len, 100)
            } else {
                BTreeSet::new()
            },
            inner_parallel: rng.chance(15),
            depth: rng.below(4) as u32,
        };
        let float_keys = rng.chance(20).then(|| FloatKeys {
            seed: rng.next(),
            stop_at: rng.chance(50).then(|| (rng.below(40) as f64 - 30.0) / 4.0),
        });
        if rng.chance(20) {
            job.merge_panic_right_of = job.first_event(len);
        }
        Case {
            seed,
            len,
            workers: 1 + rng.below(8) as isize,
            deterministic: rng.chance(60),
            input,
            foreign_pool: rng.chance(15),
            leaf_size: if rng.chance(50) { 0 } else { 1 + rng.below(64) as usize },
            job,
            float_keys,
        }
    }

    fn run(&self) -> Result<Vec<u64>, Error> {
        let config = Config::current()
            .with_workers(self.workers)
            .with_deterministic(self.deterministic)
            .with_leaf_size(self.leaf_size)
            .with_progress_bars(false);
        self.start_where_drawn(|| config.scope(|| self.input.run(self.len, &self.job)))
    }

    /// Run `run` on this thread, or on the application's pool.
    fn start_where_drawn<R: Send>(&self, run: impl FnOnce() -> R + Send) -> R {
        if self.foreign_pool {
            foreign_pool().install(run)
        } else {
            run()
        }
    }

    /// Why the float-key search is wrong, if it is: deterministic runs, and
    /// any-order runs without a bound, find the sequential key and item, to
    /// the bit; an any-order run that stopped found a key within the bound.
    fn check_float_keys(&self) -> Result<(), String> {
        let Some(keys) = self.float_keys else {
            return Ok(());
        };
        let config = Config::current()
            .with_workers(self.workers)
            .with_deterministic(self.deterministic)
            .with_progress_bars(false);
        let expected = keys.search(|job| seq_map_reduce(0..self.len, &(), job));
        let found = keys.search(|job| self.start_where_drawn(|| config.scope(|| self.input.run(self.len, job))));
        let within_bound = |found: &Result<Option<(u64, u64)>, String>| match (found, keys.stop_at) {
            (Ok(Some((bits, _))), Some(bound)) => f64::from_bits(*bits) <= bound,
            _ => false,
        };
        if found == expected || (!self.deterministic && within_bound(&found)) {
            Ok(())
        } else {
            Err(format!(
                "seed {}: float keys {keys:?}, {} items, {} workers, {:?}: found {found:?}, sequential {expected:?}",
                self.seed, self.len, self.workers, self.input
            ))
        }
    }

    /// Why `found` is not an answer this case may give, if it is not.
    fn check(&self, found: &Result<Vec<u64>, Error>) -> Result<(), String> {
        let expected = seq_map_reduce(0..self.len, &(), &self.job);
        let message = |result: &Result<Vec<u64>, Error>| match result {
            Err(Error::Panicked { message, .. }) => Some(message.clone()),
            _ => None,
        };
        // Sequential runs never merge: a merge panic is a valid failure
        // (but never one that only merges right of the answer make).
        if message(found).is_some_and(|m| m.ends_with("in merge")) && self.job.merge_panic_at.is_some() {
            return Ok(());
        }
        // The documented limit: a panic in `process_result` consumes its
        // task's accumulator, so a pair `Break` that only a merge with that
        // task's earlier items would find is not found.
        // (Unindexed inputs know no index: the scripted message names the item.)
        let process_panic_at = message(found)
            .and_then(|m| m.rsplit_once("in process_result at ").map(|(_, item)| item.to_owned()))
            .and_then(|item| item.parse::<u64>().ok());
        if let (Some(panic_at), Ok(acc)) = (process_panic_at, &expected) {
            let ends_at_pair = match acc.as_slice() {
                [.., before, last] => self.job.is_pair(before / SCALE, last / SCALE),
                _ => false,
            };
            let pair_end = acc.last().map(|last| last / SCALE);
            if ends_at_pair && pair_end.is_some_and(|end| end < panic_at) {
                return Ok(());
            }
        }
        let same = match (found, &expected) {
            (Ok(a), Ok(b)) => a == b,
            (Err(Error::Panicked { index: i, .. }), Err(Error::Panicked { index: j, .. })) => {
                message(found) == message(&expected) && (i == j || i.is_none())
            }
            _ => false,
        };
        if same {
            return Ok(());
        }
        if !self.deterministic {
            match found {
                Ok(acc) => {
                    let ends_at_break = acc.last().is_some_and(|&last| {
                        let last_item = last / SCALE;
                        let before = acc.len().checked_sub(2).map(|i| acc[i] / SCALE);
                        self.job.breaks.contains(&last_item)
                            || before.is_some_and(|before| self.job.is_pair(before, last_item))
                    });
                    let ordered = acc.windows(2).all(|w| w[0] < w[1]);
                    if ends_at_break && ordered {
                        return Ok(());
                    }
                }
                Err(Error::Panicked { message, .. }) if message.starts_with(SCRIPTED) => return Ok(()),
                Err(_) => {}
            }
        }
        Err(format!(
            "seed {}: {} items, {} workers, {}, {:?}{}, depth {}: found {}, sequential {}; {:?}",
            self.seed,
            self.len,
            self.workers,
            if self.deterministic {
                "deterministic"
            } else {
                "any order"
            },
            self.input,
            if self.foreign_pool { " from a foreign pool" } else { "" },
            self.job.depth,
            brief(found),
            brief(&expected),
            self.job
        ))
    }
}

/// A result, short enough for a failure message.
fn brief(result: &Result<Vec<u64>, Error>) -> String {
    match result {
        Ok(acc) if acc.len() > 8 => format!(
            "Ok({} items: {:?} .. {:?})",
            acc.len(),
            &acc[..4],
            &acc[acc.len() - 4..]
        ),
        other => format!("{other:?}"),
    }
}

#[test]
fn randomized_fault_runs_match_sequential_and_leak_nothing() {
    quiet_scripted_panics();
    let runs: u64 = std::env::var("MAPREDUCE_FAULT_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5000);
    let seeds: Vec<u64> = match std::env::var("MAPREDUCE_FAULT_SEED").ok().and_then(|n| n.parse().ok()) {
        Some(seed) => vec![seed],
        None => (0..runs)
            .map(|i| i.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5EED)
            .collect(),
    };
    let warm_up = 50.min(seeds.len());
    // The cases run on their own thread; this one is the watchdog.
    let (progress, started) = mpsc::channel::<(u64, Option<Result<(), String>>)>();
    let seeds_for_runner = seeds.clone();
    std::thread::spawn(move || {
        let mut baseline = None;
        for (i, seed) in seeds_for_runner.into_iter().enumerate() {
            if i == warm_up {
                baseline = Some((os_threads(), peak_rss_kib()));
            }
            let _ = progress.send((seed, None));
            let case = Case::draw(seed);
            let found = case.run();
            let checked = case.check(&found).and_then(|()| case.check_float_keys());
            let _ = progress.send((seed, Some(checked)));
        }
        let _ = progress.send((u64::MAX, baseline.map(|(threads, kib)| check_drift(threads, kib))));
    });
    let (mut breaks, mut panics, mut current) = (0, 0, None);
    let started_at = Instant::now();
    loop {
        match started.recv_timeout(Duration::from_secs(60)) {
            Ok((u64::MAX, Some(Err(drift)))) => panic!("{drift}"),
            Ok((u64::MAX, _)) => break,
            Ok((seed, None)) => current = Some(seed),
            Ok((seed, Some(Ok(())))) => {
                let case = Case::draw(seed);
                breaks += usize::from(!case.job.breaks.is_empty());
                panics += usize::from(!case.job.compute_panics.is_empty() || !case.job.process_panics.is_empty());
            }
            Ok((_, Some(Err(failure)))) => panic!("{failure}"),
            Err(_) => panic!("hang: case with seed {current:?} has run for 60 s (replay with MAPREDUCE_FAULT_SEED)"),
        }
    }
    eprintln!(
        "{} randomized runs ({breaks} with breaks, {panics} with panics) in {:.1} s",
        seeds.len(),
        started_at.elapsed().as_secs_f64()
    );
}

/// After the suite: the thread count is back to what it was after warm-up
/// and peak memory has not grown much; then a watched run starts clean.
fn check_drift(threads: usize, kib: usize) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while os_threads() != threads && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let grown_mib = peak_rss_kib().saturating_sub(kib) / 1024;
    eprintln!(
        "after warm-up: threads {threads} -> {}, peak memory +{grown_mib} MiB",
        os_threads()
    );
    if os_threads() != threads {
        return Err(format!("threads leaked: {threads} -> {}", os_threads()));
    }
    if grown_mib >= 64 {
        return Err(format!("peak memory grew by {grown_mib} MiB"));
    }
    struct Counts(std::sync::Mutex<Vec<u64>>);
    impl ProgressSink for Counts {
        fn finish(&self, done: u64, _: Outcome) {
            self.0.lock().unwrap().push(done);
        }
    }
    let sink = std::sync::Arc::new(Counts(std::sync::Mutex::new(Vec::new())));
    let total = Config::current()
        .with_progress_sink(sink.clone())
        .scope(|| par_map_reduce(0..1000u64, &(), jobs::count(|_: &u64, _: &()| true)))
        .map_err(|err| err.to_string())?;
    let counts = sink.0.lock().unwrap().clone();
    if total != 1000 || counts != [1000] {
        return Err(format!(
            "the next run did not start clean: {total} items, finished with {counts:?}"
        ));
    }
    Ok(())
}
