//! Scratch probes of the durable feature (not kept: see durable_hostile.rs).
#![cfg(feature = "durable")]
#![allow(dead_code, clippy::all)]

mod common;

use std::ops::ControlFlow::{self, Break, Continue};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mapreduce::durable::{par_map_reduce_durable, par_map_reduce_iter_durable, Checkpoint};
use mapreduce::{indexed_range, par_map_reduce_in_order, par_map_reduce_iter, Config, Error, MapReduce, StopHandle};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

static SER_CALLS: AtomicU64 = AtomicU64::new(0);
/// Serialize panics from this call on (-1: never).
static SER_PANIC_FROM: AtomicI64 = AtomicI64::new(-1);
/// 0 fine, 1 error, 2 panic
static DE_MODE: AtomicU8 = AtomicU8::new(0);
static MERGE_PANIC: AtomicBool = AtomicBool::new(false);
static EMPTY_PANIC: AtomicBool = AtomicBool::new(false);
static COMPUTED: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, Debug, PartialEq)]
struct HAcc(f64);
impl Serialize for HAcc {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = SER_CALLS.fetch_add(1, SeqCst) as i64;
        let from = SER_PANIC_FROM.load(SeqCst);
        if from >= 0 && n >= from {
            panic!("serialize panics (call {n})");
        }
        s.serialize_f64(self.0)
    }
}
impl<'de> Deserialize<'de> for HAcc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        match DE_MODE.load(SeqCst) {
            1 => Err(serde::de::Error::custom("deserialize refuses")),
            2 => panic!("deserialize panics"),
            _ => Ok(HAcc(v)),
        }
    }
}

#[derive(Clone)]
struct HJob {
    stop_at: Option<(u64, StopHandle)>,
    slow: Option<Duration>,
    break_above: Option<f64>,
}
fn hjob() -> HJob {
    HJob {
        stop_at: None,
        slow: None,
        break_above: None,
    }
}
impl MapReduce<u64, ()> for HJob {
    type Output = f64;
    type Acc = HAcc;
    fn empty_result(&self, _: &()) -> HAcc {
        if EMPTY_PANIC.load(SeqCst) {
            panic!("empty_result panics");
        }
        HAcc(0.0)
    }
    fn compute(&self, x: u64, _: &()) -> f64 {
        COMPUTED.fetch_add(1, SeqCst);
        if let Some((at, h)) = &self.stop_at {
            if x == *at {
                h.stop();
            }
        }
        if let Some(d) = self.slow {
            std::thread::sleep(d);
        }
        common::float_value(x)
    }
    fn process_result(&self, new: f64, acc: HAcc) -> ControlFlow<HAcc, HAcc> {
        let a = HAcc(acc.0 + new);
        match self.break_above {
            Some(t) if a.0 > t => Break(a),
            _ => Continue(a),
        }
    }
    fn merge(&self, l: HAcc, r: HAcc) -> ControlFlow<HAcc, HAcc> {
        if MERGE_PANIC.load(SeqCst) {
            panic!("merge panics");
        }
        let a = HAcc(l.0 + r.0);
        match self.break_above {
            Some(t) if a.0 > t => Break(a),
            _ => Continue(a),
        }
    }
}

fn cfg(leaf: usize) -> Config {
    Config::current().with_progress_bars(false).with_leaf_size(leaf)
}

fn reference(n: u64, leaf: usize) -> f64 {
    cfg(leaf)
        .scope(|| par_map_reduce_in_order(indexed_range(0..n), &(), hjob()))
        .unwrap()
        .0
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mr-probe-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Stop at item `at` (via compute), then resume with a fresh checkpoint: the bits.
fn stop_resume(path: &Path, n: u64, leaf: usize, at: u64, key: &str) -> Result<f64, Error> {
    let cp = Checkpoint::new(path, key).every(Duration::from_millis(1));
    let job = HJob {
        stop_at: Some((at, cp.stop_handle())),
        ..hjob()
    };
    let first = cfg(leaf).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), job, &cp));
    match first {
        Err(Error::Stopped { .. }) => {}
        Ok(_) if at >= n => {}
        other => panic!("first run: {other:?}"),
    }
    cfg(leaf).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), hjob(), &Checkpoint::new(path, key))).map(|a| a.0)
}

fn ok() {
    println!("PROBE-OK");
}

fn run(name: &str) {
    let dir = scratch(name);
    let path = dir.join("p.ckpt");
    match name {
        "zero" => {
            let r = cfg(10).scope(|| par_map_reduce_durable(indexed_range(0..0u64), &(), hjob(), &Checkpoint::new(&path, "z")));
            assert_eq!(r.unwrap(), HAcc(0.0));
            let r = cfg(10).scope(|| par_map_reduce_durable(indexed_range(0..0u64), &(), hjob(), &Checkpoint::new(&path, "z")));
            assert_eq!(r.unwrap(), HAcc(0.0));
            let cp = Checkpoint::new(dir.join("z2"), "z");
            cp.stop_handle().stop();
            let r = cfg(10).scope(|| par_map_reduce_durable(indexed_range(0..0u64), &(), hjob(), &cp));
            println!("zero stopped-before: {r:?}");
            let r = cfg(10).scope(|| par_map_reduce_durable(indexed_range(0..0u64), &(), hjob(), &Checkpoint::new(dir.join("z2"), "z")));
            assert_eq!(r.unwrap(), HAcc(0.0));
            let r = cfg(10).scope(|| par_map_reduce_iter_durable(0..0u64, &(), hjob(), &Checkpoint::new(dir.join("z3"), "z")));
            assert_eq!(r.unwrap(), HAcc(0.0));
            let cp = Checkpoint::new(dir.join("z4"), "z");
            cp.stop_handle().stop();
            let r = cfg(10).scope(|| par_map_reduce_iter_durable(0..0u64, &(), hjob(), &cp));
            println!("zero iter stopped-before: {r:?}");
            let r = cfg(10).scope(|| par_map_reduce_iter_durable(0..0u64, &(), hjob(), &Checkpoint::new(dir.join("z4"), "z")));
            assert_eq!(r.unwrap(), HAcc(0.0));
            ok();
        }
        "one" => {
            let r = stop_resume(&path, 1, 10, 0, "one").unwrap();
            assert_eq!(r.to_bits(), reference(1, 10).to_bits());
            ok();
        }
        "ragged" => {
            for (n, leaf, at) in [(1003u64, 100usize, 550u64), (1003, 100, 1002), (7, 3, 5), (10, 1000, 4), (99_999, 7, 50_000)] {
                let p = dir.join(format!("r{n}-{leaf}-{at}"));
                let r = stop_resume(&p, n, leaf, at, "ragged").unwrap();
                assert_eq!(r.to_bits(), reference(n, leaf).to_bits(), "{n} {leaf} {at}");
            }
            ok();
        }
        "leaf1_1e6" => {
            let t = Instant::now();
            let r = stop_resume(&path, 1_000_000, 1, 600_000, "leaf1").unwrap();
            println!("leaf1 took {:?}", t.elapsed());
            assert_eq!(r.to_bits(), reference(1_000_000, 1).to_bits());
            ok();
        }
        "huge" => {
            let n: u64 = 1 << 40;
            let key = "huge";
            for round in 0..3 {
                let cp = Checkpoint::new(&path, key).every(Duration::from_millis(10));
                let h = cp.stop_handle();
                let t = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(700));
                    h.stop();
                });
                let t0 = Instant::now();
                let r = Config::current()
                    .with_progress_bars(false)
                    .scope(|| par_map_reduce_durable(indexed_range(0..n), &(), hjob(), &cp));
                t.join().unwrap();
                let saved = cp.saved().unwrap().unwrap();
                println!("round {round}: {:?} in {:?}; saved {} items", r.as_ref().map(|_| ()), t0.elapsed(), saved.items);
                assert!(matches!(r, Err(Error::Stopped { .. })), "{r:?}");
                assert!(t0.elapsed() < Duration::from_secs(5));
            }
            ok();
        }
        "iter_lying_short" | "iter_lying_long" => {
            // size_hint claims exactly 10_000, the iterator yields 9_000 / 11_000.
            let real = if name.ends_with("short") { 9_000u64 } else { 11_000 };
            struct Liar(std::ops::Range<u64>, usize);
            impl Iterator for Liar {
                type Item = u64;
                fn next(&mut self) -> Option<u64> {
                    self.0.next()
                }
                fn size_hint(&self) -> (usize, Option<usize>) {
                    (self.1, Some(self.1))
                }
            }
            let plain = cfg(100).scope(|| par_map_reduce_iter(Liar(0..real, 10_000), &(), hjob()));
            println!("plain: {plain:?}");
            let cp = Checkpoint::new(&path, "liar").every(Duration::from_millis(1));
            let job = HJob {
                stop_at: Some((5_000, cp.stop_handle())),
                ..hjob()
            };
            let r = cfg(100).scope(|| par_map_reduce_iter_durable(Liar(0..real, 10_000), &(), job, &cp));
            println!("stopped: {r:?}");
            let r = cfg(100).scope(|| par_map_reduce_iter_durable(Liar(0..real, 10_000), &(), hjob(), &Checkpoint::new(&path, "liar")));
            println!("resumed: {r:?}");
            let r2 = cfg(100).scope(|| par_map_reduce_iter_durable(Liar(0..real, 10_000), &(), hjob(), &Checkpoint::new(dir.join("b"), "liar")));
            println!("uninterrupted: {r2:?}");
            ok();
        }
        "iter_panic_in_skip" => {
            let n = 50_000u64;
            let cp = Checkpoint::new(&path, "skip").every(Duration::from_millis(1));
            let job = HJob {
                stop_at: Some((30_000, cp.stop_handle())),
                ..hjob()
            };
            let r = cfg(100).scope(|| par_map_reduce_iter_durable(0..n, &(), job, &cp));
            assert!(matches!(r, Err(Error::Stopped { .. })), "{r:?}");
            let saved = Checkpoint::new(&path, "skip").saved().unwrap().unwrap();
            println!("saved {}", saved.items);
            let panicky = (0..n).map(|x| {
                if x == 1_000 {
                    panic!("next panics at {x}");
                }
                x
            });
            let r = cfg(100).scope(|| par_map_reduce_iter_durable(panicky, &(), hjob(), &Checkpoint::new(&path, "skip")));
            println!("panicky resume: {r:?}");
            assert!(matches!(r, Err(Error::Panicked { .. })), "{r:?}");
            let r = cfg(100).scope(|| par_map_reduce_iter_durable(0..n, &(), hjob(), &Checkpoint::new(&path, "skip"))).unwrap();
            let want = cfg(100).scope(|| par_map_reduce_iter(0..n, &(), hjob())).unwrap();
            assert_eq!(r.0.to_bits(), want.0.to_bits());
            ok();
        }
        "iter_different_rerun" => {
            let n = 50_000u64;
            let cp = Checkpoint::new(&path, "diff").every(Duration::from_millis(1));
            let job = HJob {
                stop_at: Some((30_000, cp.stop_handle())),
                ..hjob()
            };
            let r = cfg(100).scope(|| par_map_reduce_iter_durable((0..n).map(|x| x * 3), &(), job, &cp));
            println!("first {r:?}");
            // Different items, unknown length (filter), then longer.
            let r = cfg(100).scope(|| par_map_reduce_iter_durable((0..n).rev(), &(), hjob(), &Checkpoint::new(&path, "diff")));
            println!("rev: {r:?}");
            let r = cfg(100).scope(|| par_map_reduce_iter_durable((0..2 * n).filter(|x| x % 2 == 0), &(), hjob(), &Checkpoint::new(dir.join("u"), "diff")));
            println!("unknown: {r:?}");
            ok();
        }
        "ser_panic_periodic" => {
            let n = 20_000u64;
            SER_PANIC_FROM.store(1, SeqCst); // first save fine, the rest panic
            let cp = Checkpoint::new(&path, "ser").every(Duration::from_millis(1));
            let job = HJob {
                slow: Some(Duration::from_micros(50)),
                ..hjob()
            };
            let r = cfg(100).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), job, &cp));
            println!("periodic+final panic: {:?}; ser calls {}", r, SER_CALLS.load(SeqCst));
            assert_eq!(r.unwrap().0.to_bits(), reference(n, 100).to_bits());
            SER_PANIC_FROM.store(-1, SeqCst);
            let r = cfg(100).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), hjob(), &Checkpoint::new(&path, "ser")));
            assert_eq!(r.unwrap().0.to_bits(), reference(n, 100).to_bits());
            ok();
        }
        "ser_panic_stop" => {
            let n = 200_000u64;
            let cp = Checkpoint::new(&path, "ser").every(Duration::from_millis(1));
            let h = cp.stop_handle();
            let job = HJob {
                slow: Some(Duration::from_micros(20)),
                stop_at: Some((100_000, h)),
                ..hjob()
            };
            // periodic saves work; the stop's save panics
            let flag = Arc::new(AtomicBool::new(false));
            let r = cfg(100).scope(|| {
                par_map_reduce_durable(indexed_range(0..n), &(), job, &cp)
            });
            println!("baseline stop: {:?}", r.as_ref().err().map(|e| e.to_string()));
            let _ = flag;
            // now: second file, stop save panics
            let p2 = dir.join("s2");
            let cp = Checkpoint::new(&p2, "ser").every(Duration::from_secs(3600));
            cp.stop_handle().stop();
            SER_PANIC_FROM.store(0, SeqCst);
            let r = cfg(100).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), hjob(), &cp));
            println!("stop with panicking serialize: {:?}", r.as_ref().err().map(|e| e.to_string()));
            // A stop after a prefix: serialize panics in keep
            let p3 = dir.join("s3");
            SER_PANIC_FROM.store(-1, SeqCst);
            let cp = Checkpoint::new(&p3, "ser").every(Duration::from_secs(3600));
            let h = cp.stop_handle();
            let job = HJob {
                stop_at: Some((100_000, h)),
                ..hjob()
            };
            SER_PANIC_FROM.store(SER_CALLS.load(SeqCst) as i64, SeqCst);
            let r = cfg(100).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), job, &cp));
            println!("stop mid with panicking serialize: {:?}", r.as_ref().err().map(|e| e.to_string()));
            assert!(matches!(r, Err(Error::Checkpoint(_))), "{r:?}");
            SER_PANIC_FROM.store(-1, SeqCst);
            let r = cfg(100).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), hjob(), &Checkpoint::new(&p3, "ser")));
            assert_eq!(r.unwrap().0.to_bits(), reference(n, 100).to_bits());
            ok();
        }
        "de_fail" | "de_panic" => {
            let n = 50_000u64;
            let _ = stop_resume(&path, n, 100, 30_000, "de");
            // redo: stop only
            let p = dir.join("d2");
            let cp = Checkpoint::new(&p, "de").every(Duration::from_millis(1));
            let job = HJob {
                stop_at: Some((30_000, cp.stop_handle())),
                ..hjob()
            };
            let r = cfg(100).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), job, &cp));
            assert!(matches!(r, Err(Error::Stopped { .. })), "{r:?}");
            DE_MODE.store(if name == "de_fail" { 1 } else { 2 }, SeqCst);
            let r = cfg(100).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), hjob(), &Checkpoint::new(&p, "de")));
            println!("{name} resume: {:?}", r.as_ref().map_err(|e| e.to_string()));
            assert!(matches!(r, Err(Error::Checkpoint(_))), "{r:?}");
            // and on a finished file
            DE_MODE.store(0, SeqCst);
            let r = cfg(100).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), hjob(), &Checkpoint::new(&p, "de")));
            assert_eq!(r.unwrap().0.to_bits(), reference(n, 100).to_bits());
            DE_MODE.store(if name == "de_fail" { 1 } else { 2 }, SeqCst);
            let r = cfg(100).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), hjob(), &Checkpoint::new(&p, "de")));
            println!("{name} finished: {:?}", r.as_ref().map_err(|e| e.to_string()));
            assert!(matches!(r, Err(Error::Checkpoint(_))), "{r:?}");
            // saved() does not decode the acc
            ok();
        }
        "merge_panic_resume" => {
            let n = 100_000u64;
            let cp = Checkpoint::new(&path, "mp").every(Duration::from_millis(1));
            let job = HJob {
                stop_at: Some((77_777, cp.stop_handle())),
                ..hjob()
            };
            let r = cfg(10).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), job, &cp));
            assert!(matches!(r, Err(Error::Stopped { .. })), "{r:?}");
            let before = std::fs::read(&path).unwrap();
            MERGE_PANIC.store(true, SeqCst);
            let r = cfg(10).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), hjob(), &Checkpoint::new(&path, "mp")));
            println!("merge panic resume: {:?}", r.as_ref().map_err(|e| e.to_string()));
            assert!(matches!(r, Err(Error::Panicked { .. })), "{r:?}");
            MERGE_PANIC.store(false, SeqCst);
            let after = std::fs::read(&path).unwrap();
            println!("file changed: {}", before != after);
            let r = cfg(10).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), hjob(), &Checkpoint::new(&path, "mp")));
            assert_eq!(r.unwrap().0.to_bits(), reference(n, 10).to_bits());
            ok();
        }
        "empty_panic" => {
            EMPTY_PANIC.store(true, SeqCst);
            let r = cfg(10).scope(|| par_map_reduce_durable(indexed_range(0..1000u64), &(), hjob(), &Checkpoint::new(&path, "e")));
            println!("empty panic: {:?}", r.as_ref().map_err(|e| e.to_string()));
            assert!(matches!(r, Err(Error::Panicked { .. })), "{r:?}");
            let r = cfg(10).scope(|| par_map_reduce_durable(indexed_range(0..0u64), &(), hjob(), &Checkpoint::new(dir.join("e0"), "e")));
            println!("empty panic, 0 items: {:?}", r.as_ref().map_err(|e| e.to_string()));
            let r = cfg(10).scope(|| par_map_reduce_iter_durable(0..1000u64, &(), hjob(), &Checkpoint::new(dir.join("e1"), "e")));
            println!("empty panic iter: {:?}", r.as_ref().map_err(|e| e.to_string()));
            EMPTY_PANIC.store(false, SeqCst);
            let r = cfg(10).scope(|| par_map_reduce_durable(indexed_range(0..1000u64), &(), hjob(), &Checkpoint::new(&path, "e")));
            assert_eq!(r.unwrap().0.to_bits(), reference(1000, 10).to_bits());
            ok();
        }
        "sink_panic" => {
            struct Bad;
            impl mapreduce::ProgressSink for Bad {
                fn update(&self, done: u64) {
                    if done > 1000 {
                        panic!("sink panics");
                    }
                }
            }
            let n = 200_000u64;
            let job = HJob {
                slow: Some(Duration::from_micros(10)),
                ..hjob()
            };
            let cp = Checkpoint::new(&path, "sink").every(Duration::from_millis(1));
            let r = cfg(100)
                .with_progress_sink(Arc::new(Bad))
                .scope(|| par_map_reduce_durable(indexed_range(0..n), &(), job.clone(), &cp));
            println!("sink panic: {:?}", r.as_ref().map_err(|e| e.to_string()));
            println!("saved: {:?}", cp.saved());
            let r = cfg(100)
                .with_progress_sink(Arc::new(Bad))
                .scope(|| par_map_reduce_iter_durable(0..n, &(), job.clone(), &Checkpoint::new(dir.join("i"), "sink")));
            println!("sink panic iter: {:?}", r.as_ref().map_err(|e| e.to_string()));
            let r = cfg(100).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), hjob(), &Checkpoint::new(&path, "sink")));
            assert_eq!(r.unwrap().0.to_bits(), reference(n, 100).to_bits());
            ok();
        }
        "stop_many_threads" => {
            let n = 400_000u64;
            let cp = Checkpoint::new(&path, "many").every(Duration::from_millis(1));
            let h = cp.stop_handle();
            let ths: Vec<_> = (0..16)
                .map(|_| {
                    let h = h.clone();
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(100));
                        h.stop();
                        h.stop();
                    })
                })
                .collect();
            let job = HJob {
                slow: Some(Duration::from_micros(5)),
                ..hjob()
            };
            let r = cfg(100).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), job, &cp));
            for t in ths {
                t.join().unwrap();
            }
            println!("many: {:?}", r.as_ref().map_err(|e| e.to_string()));
            // stop after the run: rerun with the same checkpoint
            let r = cfg(100).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), hjob(), &cp));
            println!("rerun with pulled handle: {:?}", r.as_ref().map_err(|e| e.to_string()));
            let r = cfg(100).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), hjob(), &Checkpoint::new(&path, "many")));
            assert_eq!(r.unwrap().0.to_bits(), reference(n, 100).to_bits());
            // a finished run whose handle is pulled later: answer still returned
            let cp = Checkpoint::new(&path, "many");
            cp.stop_handle().stop();
            let r = cfg(100).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), hjob(), &cp));
            assert_eq!(r.unwrap().0.to_bits(), reference(n, 100).to_bits());
            // stop inside compute, from all items in a range at once
            let p = dir.join("c");
            let cp = Checkpoint::new(&p, "many").every(Duration::from_millis(1));
            let h = cp.stop_handle();
            let job = jobs_sum_stopping(h, 50_000..60_000);
            let r = cfg(100).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), job, &cp));
            println!("stop in compute x many: {:?}", r.as_ref().map_err(|e| e.to_string()));
            let r = cfg(100).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), hjob(), &Checkpoint::new(&p, "many")));
            assert_eq!(r.unwrap().0.to_bits(), reference(n, 100).to_bits());
            ok();
        }
        "deadline_and_stop" => {
            let n = 400_000u64;
            let cp = Checkpoint::new(&path, "dl").every(Duration::from_millis(1));
            let h = cp.stop_handle();
            let job = HJob {
                slow: Some(Duration::from_micros(5)),
                stop_at: Some((200_000, h)),
                ..hjob()
            };
            let t0 = Instant::now();
            let r = cfg(100)
                .with_deadline(Instant::now() + Duration::from_millis(150))
                .scope(|| par_map_reduce_durable(indexed_range(0..n), &(), job, &cp));
            println!("deadline: {:?} in {:?}; saved {:?}", r.as_ref().map_err(|e| e.to_string()), t0.elapsed(), cp.saved());
            let r = cfg(100).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), hjob(), &Checkpoint::new(&path, "dl")));
            assert_eq!(r.unwrap().0.to_bits(), reference(n, 100).to_bits());
            // a Config::with_stop handle (not the checkpoint's)
            let p = dir.join("ws");
            let other = StopHandle::new();
            let job = HJob {
                slow: Some(Duration::from_micros(5)),
                stop_at: Some((100_000, other.clone())),
                ..hjob()
            };
            let cp = Checkpoint::new(&p, "dl").every(Duration::from_millis(1));
            let r = cfg(100).with_stop(other).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), job, &cp));
            println!("with_stop: {:?}; saved {:?}", r.as_ref().map_err(|e| e.to_string()), cp.saved());
            let r = cfg(100).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), hjob(), &Checkpoint::new(&p, "dl")));
            assert_eq!(r.unwrap().0.to_bits(), reference(n, 100).to_bits());
            // deadline already past
            let p = dir.join("past");
            let cp = Checkpoint::new(&p, "dl");
            let r = cfg(100)
                .with_deadline(Instant::now())
                .scope(|| par_map_reduce_durable(indexed_range(0..n), &(), hjob(), &cp));
            println!("past deadline: {:?}; saved {:?}", r.as_ref().map_err(|e| e.to_string()), cp.saved());
            ok();
        }
        "nested" => {
            // a durable run inside each item of an outer run
            let outer_dir = dir.clone();
            let r = cfg(1).scope(|| {
                mapreduce::par_map_reduce_in_order(
                    indexed_range(0..4u64),
                    &(),
                    mapreduce::jobs::sum(|i: u64, _: &()| {
                        let p = outer_dir.join(format!("inner{i}"));
                        let cp = Checkpoint::new(&p, "inner").every(Duration::from_millis(1));
                        cfg(100).scope(|| par_map_reduce_durable(indexed_range(0..20_000u64), &(), hjob(), &cp)).unwrap().0
                    }),
                )
            });
            println!("nested different files: {r:?}");
            assert_eq!(r.unwrap().to_bits(), {
                let x = reference(20_000, 100);
                ((x + x) + (x + x)).to_bits()
            });
            // nested on the same file as the outer: every inner is refused (Locked) after 0.5 s
            let t0 = Instant::now();
            let same = path.clone();
            let cp = Checkpoint::new(&path, "outer");
            let r = cfg(1).scope(|| {
                par_map_reduce_durable(
                    indexed_range(0..4u64),
                    &(),
                    mapreduce::jobs::collect(|_: u64, _: &()| {
                        let cp = Checkpoint::new(&same, "inner");
                        cfg(100)
                            .scope(|| par_map_reduce_durable(indexed_range(0..100u64), &(), hjob(), &cp))
                            .map(|a| a.0)
                            .map_err(|e| e.to_string())
                    }),
                    &cp,
                )
            });
            println!("nested same file: {:?} in {:?}", r, t0.elapsed());
            ok();
        }
        "foreign_pool" => {
            let n = 100_000u64;
            let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
            let r = pool.install(|| stop_resume(&path, n, 100, 50_000, "fp")).unwrap();
            assert_eq!(r.to_bits(), reference(n, 100).to_bits());
            let p = dir.join("scope");
            let mut out = None;
            rayon::scope(|s| {
                s.spawn(|_| out = Some(stop_resume(&p, n, 100, 50_000, "fp")));
            });
            assert_eq!(out.unwrap().unwrap().to_bits(), reference(n, 100).to_bits());
            // two durable runs at once from a scope on different files
            let (pa, pb) = (dir.join("a"), dir.join("b"));
            let (mut ra, mut rb) = (None, None);
            rayon::scope(|s| {
                s.spawn(|_| ra = Some(stop_resume(&pa, n, 100, 40_000, "fp")));
                s.spawn(|_| rb = Some(stop_resume(&pb, n, 100, 60_000, "fp")));
            });
            assert_eq!(ra.unwrap().unwrap().to_bits(), reference(n, 100).to_bits());
            assert_eq!(rb.unwrap().unwrap().to_bits(), reference(n, 100).to_bits());
            ok();
        }
        "sequential" => {
            let n = 100_000u64;
            let cp = Checkpoint::new(&path, "seq").every(Duration::from_millis(1));
            let job = HJob {
                stop_at: Some((50_000, cp.stop_handle())),
                ..hjob()
            };
            let r = cfg(100).with_parallel(false).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), job, &cp));
            println!("seq stop: {:?}", r.as_ref().map_err(|e| e.to_string()));
            let r = cfg(100).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), hjob(), &Checkpoint::new(&path, "seq")));
            assert_eq!(r.unwrap().0.to_bits(), reference(n, 100).to_bits());
            let p = dir.join("it");
            let cp = Checkpoint::new(&p, "seq").every(Duration::from_millis(1));
            let job = HJob {
                stop_at: Some((50_000, cp.stop_handle())),
                ..hjob()
            };
            let r = cfg(100).with_parallel(false).scope(|| par_map_reduce_iter_durable(0..n, &(), job, &cp));
            println!("seq iter stop: {:?}", r.as_ref().map_err(|e| e.to_string()));
            let r = cfg(100).scope(|| par_map_reduce_iter_durable(0..n, &(), hjob(), &Checkpoint::new(&p, "seq")));
            let want = cfg(100).scope(|| par_map_reduce_iter(0..n, &(), hjob())).unwrap();
            assert_eq!(r.unwrap().0.to_bits(), want.0.to_bits());
            ok();
        }
        "any_order_break" => {
            let n = 200_000u64;
            let job = HJob {
                break_above: Some(5.0),
                ..hjob()
            };
            let cp = Checkpoint::new(&path, "ao");
            let r = cfg(100).with_deterministic(false).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), job.clone(), &cp));
            println!("any-order break: {r:?}");
            let r2 = cfg(100).with_deterministic(false).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), job.clone(), &Checkpoint::new(&path, "ao")));
            assert_eq!(format!("{r:?}"), format!("{r2:?}"));
            // stop + resume in any order
            let p = dir.join("s");
            let cp = Checkpoint::new(&p, "ao").every(Duration::from_millis(1));
            let j = HJob {
                stop_at: Some((100_000, cp.stop_handle())),
                ..hjob()
            };
            let r = cfg(100).with_deterministic(false).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), j, &cp));
            println!("any-order stop: {:?}", r.as_ref().map_err(|e| e.to_string()));
            let r = cfg(100).with_deterministic(false).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), hjob(), &Checkpoint::new(&p, "ao")));
            println!("any-order resumed: {:?} vs {}", r, reference(n, 100));
            // resume in deterministic mode: refused (mode)
            let r = cfg(100).scope(|| par_map_reduce_durable(indexed_range(0..n), &(), hjob(), &Checkpoint::new(&p, "ao")));
            println!("mode switch: {:?}", r.as_ref().map_err(|e| e.to_string()));
            // iter any-order with break
            let r = cfg(100).with_deterministic(false).scope(|| par_map_reduce_iter_durable(0..n, &(), job.clone(), &Checkpoint::new(dir.join("it"), "ao")));
            println!("any-order iter break: {r:?}");
            ok();
        }
        "workers" => {
            let n = 300_000u64;
            let want = reference(n, 100);
            let mut rng = 12345u64;
            for w in 1..=8isize {
                let p = dir.join(format!("w{w}"));
                let mut stops = 0;
                loop {
                    rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let at = (rng >> 33) % n;
                    let cp = Checkpoint::new(&p, "w").every(Duration::from_millis(1));
                    let job = HJob {
                        stop_at: if stops < 3 { Some((at, cp.stop_handle())) } else { None },
                        ..hjob()
                    };
                    let workers = ((w + stops) % 8) + 1;
                    let r = cfg(100)
                        .with_workers(workers)
                        .with_oversubscription(true)
                        .scope(|| par_map_reduce_durable(indexed_range(0..n), &(), job, &cp));
                    match r {
                        Err(Error::Stopped { .. }) => stops += 1,
                        Ok(a) => {
                            assert_eq!(a.0.to_bits(), want.to_bits(), "w {w}");
                            break;
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            ok();
        }
        _ => panic!("unknown probe {name}"),
    }
}

fn jobs_sum_stopping(h: StopHandle, range: std::ops::Range<u64>) -> impl MapReduce<u64, (), Acc = HAcc> {
    struct J(StopHandle, std::ops::Range<u64>);
    impl MapReduce<u64, ()> for J {
        type Output = f64;
        type Acc = HAcc;
        fn empty_result(&self, _: &()) -> HAcc {
            HAcc(0.0)
        }
        fn compute(&self, x: u64, _: &()) -> f64 {
            if self.1.contains(&x) {
                self.0.stop();
            }
            common::float_value(x)
        }
        fn process_result(&self, n: f64, a: HAcc) -> ControlFlow<HAcc, HAcc> {
            Continue(HAcc(a.0 + n))
        }
        fn merge(&self, l: HAcc, r: HAcc) -> ControlFlow<HAcc, HAcc> {
            Continue(HAcc(l.0 + r.0))
        }
    }
    J(h, range)
}

#[test]
#[ignore]
fn probe() {
    if let Some(name) = common::child::scenario() {
        run(&name);
    }
}
