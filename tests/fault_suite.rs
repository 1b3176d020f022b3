//! Thousands of randomized fault runs: no hang, no wrong answer, nothing
//! leaked. Each case draws its item count (0 included), worker count (1–8,
//! more than the cores too), mode, input kind, `Break`s, panics in
//! `compute`, `process_result` and `merge`, nested runs (parallel and
//! streamed) up to depth 3 and
//! slow items from a seed, and is checked against `seq_map_reduce`:
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

use common::{os_threads, peak_rss_kib, quiet_scripted_panics, SCRIPTED};
use mapreduce::prelude::*;
use mapreduce::{Outcome, ProgressSink};
use rayon::prelude::*;

/// A tiny seeded generator, so that a seed replays its case exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn set(&mut self, len: u64, percent: u64) -> BTreeSet<u64> {
        if !self.chance(percent) {
            return BTreeSet::new();
        }
        (0..1 + self.below(3)).map(|_| self.below(len + len / 8 + 1)).collect()
    }
}

#[derive(Clone, Copy, Debug)]
enum Input {
    Range,
    Vec,
    Unindexed,
    Streamed,
    InOrder,
}

/// Collects items in order, with scripted faults; `compute` of a nested
/// job runs a run of its own, one level down.
#[derive(Debug)]
struct Faulty {
    breaks: BTreeSet<u64>,
    compute_panics: BTreeSet<u64>,
    process_panics: BTreeSet<u64>,
    /// `merge` panics once both sides hold at least this many items.
    merge_panic_at: Option<usize>,
    slow: BTreeSet<u64>,
    depth: u32,
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
        if self.depth > 0 && item % 7 == 0 {
            // No breaks inside: an any-order inner run may end at either of
            // two, and the outer answer would then differ from sequential.
            let inner = Faulty {
                breaks: BTreeSet::new(),
                compute_panics: BTreeSet::new(),
                process_panics: BTreeSet::new(),
                merge_panic_at: None,
                slow: BTreeSet::new(),
                depth: self.depth - 1,
            };
            // An inner run of a cancelled item may end `Cancelled`: its
            // output is discarded then, so any value will do.
            let inner_run = if item % 2 == 0 {
                par_map_reduce(0..item % 11, &(), &inner)
            } else {
                par_map_reduce_iter(0..item % 11, &(), &inner)
            };
            let nested = inner_run.map_or(0, |acc| acc.len() as u64);
            return item * 1000 + nested;
        }
        item * 1000
    }
    fn process_result(&self, new: u64, mut acc: Vec<u64>) -> ControlFlow<Vec<u64>, Vec<u64>> {
        let item = new / 1000;
        if self.process_panics.contains(&item) {
            panic!("{SCRIPTED} in process_result at {item}");
        }
        acc.push(new);
        if self.breaks.contains(&item) {
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
        left.append(&mut right);
        Continue(left)
    }
}

struct Case {
    seed: u64,
    len: u64,
    workers: isize,
    deterministic: bool,
    input: Input,
    job: Faulty,
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
            Input::Streamed,
            Input::InOrder,
        ][rng.below(5) as usize];
        let job = Faulty {
            breaks: rng.set(len, 50),
            compute_panics: rng.set(len, 25),
            process_panics: rng.set(len, 15),
            merge_panic_at: rng.chance(10).then(|| 1 + rng.below(200) as usize),
            slow: if rng.chance(10) {
                rng.set(len, 100)
            } else {
                BTreeSet::new()
            },
            depth: rng.below(4) as u32,
        };
        Case {
            seed,
            len,
            workers: 1 + rng.below(8) as isize,
            deterministic: rng.chance(60),
            input,
            job,
        }
    }

    fn run(&self) -> Result<Vec<u64>, Error> {
        let config = Config::current()
            .with_workers(self.workers)
            .with_deterministic(self.deterministic)
            .with_progress_bars(false);
        let (len, job) = (self.len, &self.job);
        config.scope(|| match self.input {
            Input::Range => par_map_reduce(0..len, &(), job),
            Input::Vec => par_map_reduce((0..len).collect::<Vec<_>>(), &(), job),
            Input::Unindexed => (0..len).into_par_iter().filter(|_| true).map_reduce(&(), job),
            Input::Streamed => par_map_reduce_iter(0..len, &(), job),
            Input::InOrder => par_map_reduce_in_order((0..len).collect::<Vec<_>>(), &(), job),
        })
    }

    /// Why `found` is not an answer this case may give, if it is not.
    fn check(&self, found: &Result<Vec<u64>, Error>) -> Result<(), String> {
        let expected = seq_map_reduce(0..self.len, &(), &self.job);
        let message = |result: &Result<Vec<u64>, Error>| match result {
            Err(Error::Panicked { message, .. }) => Some(message.clone()),
            _ => None,
        };
        // Sequential runs never merge: a merge panic is a valid failure.
        if message(found).is_some_and(|m| m.ends_with("in merge")) && self.job.merge_panic_at.is_some() {
            return Ok(());
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
                    let ends_at_break = acc.last().is_some_and(|last| self.job.breaks.contains(&(last / 1000)));
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
            "seed {}: {} items, {} workers, {}, {:?}, depth {}: found {}, sequential {}",
            self.seed,
            self.len,
            self.workers,
            if self.deterministic {
                "deterministic"
            } else {
                "any order"
            },
            self.input,
            self.job.depth,
            brief(found),
            brief(&expected)
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
            let _ = progress.send((seed, Some(case.check(&found))));
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
