//! Streams are bounded in bytes, not only in items: large owned records
//! stream in bounded memory (the time rule), `Config::with_stream_buffer`
//! caps the items alive at once, results stay those of `seq_map_reduce`
//! under both rules, and a panic anywhere in the user's iterator is an
//! `Error::Panicked`.
//!
//! Peak memory is a process-wide high-water mark, so each memory test runs
//! its body (an ignored test) in a child process of its own.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{peak_rss_kib, quiet_scripted_panics, Scripted, SCRIPTED};
use mapreduce::prelude::*;

/// Records of 64 KiB: 60,000 of them are 3.75 GiB in all.
const RECORD: usize = 64 << 10;
const RECORDS: usize = 60_000;

/// Run the ignored test `name` alone in a fresh process: its peak memory is
/// its own.
fn run_alone(name: &str) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("MAPREDUCE_PROGRESS", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprint!("{stderr}");
    assert!(output.status.success(), "{name} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{name} did not run:\n{stdout}");
}

/// Stream `records` through a cheap fold on 2 workers; the growth of the
/// peak resident memory over the run, in MiB.
fn peak_growth_mib(records: impl Iterator<Item = Vec<u8>>) -> usize {
    let job = jobs::sum(|record: Vec<u8>, _: &()| record[RECORD - 1] as u64);
    let config = Config::current().with_workers(2).with_progress_bars(false);
    // Warm up the pool and the allocator.
    config
        .clone()
        .scope(|| {
            par_map_reduce_iter(
                (0..100).map(|_| vec![0u8; 8]),
                &(),
                jobs::count(|_: &Vec<u8>, _: &()| true),
            )
        })
        .unwrap();
    let before = peak_rss_kib();
    let total = config.scope(|| par_map_reduce_iter(records, &(), &job)).unwrap();
    let growth = (peak_rss_kib() - before) / 1024;
    assert_eq!(total, (0..RECORDS).map(|i| (i % 256) as u64).sum::<u64>());
    growth
}

/// The bound for records read as fast as memory allows. The time rule hands
/// a batch over after 4 ms of reading (plus a chunk of about 0.25 ms), and
/// at most 2 batches are alive: 2 × 4.25 ms of writing 64 KiB records. At a
/// generous 20 GB/s of fresh writes (one core) that is 170 MB, plus the
/// records inside `compute` (2) and allocator slack. Before the time rule,
/// batches grew to 32,768 records (2 GiB) and this run peaked at 1.7 GB.
const FAST_BOUND_MIB: usize = 512;

/// The bound for records that take at least 25 µs each to build: at most
/// 4.25 ms / 25 µs = 170 records per batch, 2 batches: 22 MB, with room
/// for allocator slack.
const SLOW_BOUND_MIB: usize = 128;

#[test]
fn fast_large_records_stream_in_bounded_memory() {
    run_alone("fast_large_records_alone");
}

#[test]
#[ignore = "run alone by fast_large_records_stream_in_bounded_memory"]
fn fast_large_records_alone() {
    let growth = peak_growth_mib((0..RECORDS).map(|i| vec![i as u8; RECORD]));
    eprintln!("peak memory growth over {RECORDS} fast records of 64 KiB: {growth} MiB");
    assert!(growth < FAST_BOUND_MIB, "peak memory grew by {growth} MiB");
}

#[test]
fn slow_large_records_stream_in_bounded_memory() {
    run_alone("slow_large_records_alone");
}

#[test]
#[ignore = "run alone by slow_large_records_stream_in_bounded_memory"]
fn slow_large_records_alone() {
    let records = (0..RECORDS).map(|i| {
        // Building a record takes 25 µs: reading is the bottleneck.
        let until = Instant::now() + Duration::from_micros(25);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        vec![i as u8; RECORD]
    });
    let growth = peak_growth_mib(records);
    eprintln!("peak memory growth over {RECORDS} slow records of 64 KiB: {growth} MiB");
    assert!(growth < SLOW_BOUND_MIB, "peak memory grew by {growth} MiB");
}

/// Counts the items alive: created by the iterator, dropped by `compute`
/// (or by the stream, unfolded).
#[derive(Default)]
struct Census {
    alive: AtomicUsize,
    most: AtomicUsize,
    created: AtomicUsize,
}

struct Counted<'a> {
    index: u64,
    census: &'a Census,
}

impl<'a> Counted<'a> {
    fn new(index: u64, census: &'a Census) -> Self {
        let alive = census.alive.fetch_add(1, Ordering::SeqCst) + 1;
        census.most.fetch_max(alive, Ordering::SeqCst);
        census.created.fetch_add(1, Ordering::SeqCst);
        Counted { index, census }
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.census.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The most items alive at once when `n` items, read fast and computed
/// slowly, stream under a cap of `cap` items.
fn most_alive(cap: usize, n: u64) -> usize {
    let census = Census::default();
    let items = (0..n).map(|i| Counted::new(i, &census));
    let job = jobs::sum(|item: Counted<'_>, _: &()| {
        // Folding is the bottleneck: the reader always waits for a batch.
        let until = Instant::now() + Duration::from_micros(20);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        item.index
    });
    let total = Config::current()
        .with_workers(2)
        .with_progress_bars(false)
        .with_stream_buffer(cap)
        .scope(|| par_map_reduce_iter(items, &(), &job))
        .unwrap();
    assert_eq!(total, n * (n - 1) / 2);
    assert_eq!(census.created.load(Ordering::SeqCst), n as usize);
    assert_eq!(census.alive.load(Ordering::SeqCst), 0, "items leaked");
    census.most.load(Ordering::SeqCst)
}

#[test]
fn a_stream_buffer_caps_the_items_alive_at_once() {
    // The rule: at most min(2, cap) batches of at most cap / min(2, cap)
    // items, and an item is dropped by the `compute` that takes it from its
    // batch: never more than `cap` items alive, whatever the workers hold.
    for cap in [64, 1, 2, 7] {
        let most = most_alive(cap, 3000);
        assert!(most <= cap, "cap {cap}: {most} items alive at once");
    }
    // The census does see what the cap prevents: without one, the reader
    // runs ahead of the folding by a whole batch.
    let most = most_alive(0, 3000);
    assert!(most > 64, "uncapped: only {most} items alive at once");
}

/// `seq_map_reduce`'s answer, as (value or error index, message).
type Answer = Result<Vec<u64>, (Option<usize>, String)>;

fn answer(result: Result<Vec<u64>, Error>) -> Answer {
    result.map_err(|err| (err.index(), err.to_string()))
}

fn scripted(breaks: &[u64], compute_panics: &[u64]) -> Scripted {
    Scripted {
        breaks: breaks.iter().copied().collect(),
        compute_panics: compute_panics.iter().copied().collect(),
        process_panics: BTreeSet::new(),
    }
}

#[test]
fn small_buffers_and_the_time_rule_keep_the_sequential_answer() {
    quiet_scripted_panics();
    let jobs = [
        scripted(&[], &[]),
        scripted(&[37], &[]),
        scripted(&[500, 900], &[]),
        scripted(&[700], &[300]),
        scripted(&[5], &[600]),
    ];
    for job in &jobs {
        for n in [0u64, 1, 50, 1000] {
            let expected = answer(seq_map_reduce(0..n, &(), job));
            for cap in [0, 1, 2, 7] {
                for deterministic in [true, false] {
                    let config = Config::current()
                        .with_workers(2)
                        .with_progress_bars(false)
                        .with_deterministic(deterministic)
                        .with_stream_buffer(cap);
                    // Plain reading, and reading that pauses now and then so
                    // that the time rule hands batches over part-full.
                    let plain = answer(config.clone().scope(|| par_map_reduce_iter(0..n, &(), job)));
                    let paused = (0..n).inspect(|i| {
                        if i % 97 == 13 {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    });
                    let paused = answer(config.scope(|| par_map_reduce_iter(paused, &(), job)));
                    for got in [plain, paused] {
                        let what = format!("n {n}, cap {cap}, deterministic {deterministic}, {job:?}");
                        if deterministic || job.breaks.is_empty() {
                            assert_eq!(got, expected, "{what}");
                        } else if let Ok(acc) = &got {
                            // Any order: an answer that ends at a break.
                            assert!(job.ends_at_break(acc) || got == expected, "{what}: {got:?}");
                        }
                    }
                }
            }
        }
    }
}

/// An iterator over `0..n` whose `size_hint` panics from its
/// `hint_panics_from`-th call on, and whose `drop` panics if `panicky_drop`.
struct Hostile {
    next: u64,
    n: u64,
    hint_calls: std::cell::Cell<usize>,
    hint_panics_from: usize,
    panicky_drop: bool,
}

impl Hostile {
    fn new(n: u64) -> Self {
        Hostile {
            next: 0,
            n,
            hint_calls: Default::default(),
            hint_panics_from: usize::MAX,
            panicky_drop: false,
        }
    }
}

impl Iterator for Hostile {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        (self.next < self.n).then(|| {
            self.next += 1;
            self.next - 1
        })
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let calls = self.hint_calls.get();
        self.hint_calls.set(calls + 1);
        if calls >= self.hint_panics_from {
            panic!("{SCRIPTED}: size_hint");
        }
        let left = (self.n - self.next) as usize;
        (left, Some(left))
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        if self.panicky_drop && !std::thread::panicking() {
            panic!("{SCRIPTED}: drop");
        }
    }
}

/// Builds a `Hostile` iterator; `into_iter` panics if asked to.
struct HostileSource(Option<Hostile>);

impl IntoIterator for HostileSource {
    type Item = u64;
    type IntoIter = Hostile;
    fn into_iter(self) -> Hostile {
        self.0.unwrap_or_else(|| panic!("{SCRIPTED}: into_iter"))
    }
}

fn stream_hostile(items: HostileSource, parallel: bool) -> Result<u64, Error> {
    Config::current()
        .with_workers(2)
        .with_progress_bars(false)
        .with_parallel(parallel)
        .scope(|| par_map_reduce_iter(items, &(), jobs::sum(|x: u64, _: &()| x)))
}

fn assert_panicked(result: Result<u64, Error>, message: &str) -> Option<usize> {
    match result {
        Err(err @ Error::Panicked { .. }) => {
            assert!(err.to_string().contains(message), "{err}");
            err.index()
        }
        other => panic!("expected a panic in {message}, got {other:?}"),
    }
}

#[test]
fn a_panic_in_size_hint_is_an_error_without_an_index() {
    quiet_scripted_panics();
    let mut items = Hostile::new(10_000);
    items.hint_panics_from = 0;
    let index = assert_panicked(stream_hostile(HostileSource(Some(items)), true), "size_hint");
    assert_eq!(index, None);
    // The pool is fine: the next run succeeds.
    assert_eq!(
        stream_hostile(HostileSource(Some(Hostile::new(100))), true).unwrap(),
        4950
    );
}

#[test]
fn a_panic_in_into_iter_or_drop_is_an_error() {
    quiet_scripted_panics();
    for parallel in [true, false] {
        assert_panicked(stream_hostile(HostileSource(None), parallel), "into_iter");
        let mut items = Hostile::new(1000);
        items.panicky_drop = true;
        assert_panicked(stream_hostile(HostileSource(Some(items)), parallel), "drop");
    }
    // In a parallel run, the drop is no item's.
    let mut items = Hostile::new(1000);
    items.panicky_drop = true;
    assert_eq!(
        assert_panicked(stream_hostile(HostileSource(Some(items)), true), "drop"),
        None
    );
}
