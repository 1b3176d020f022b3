//! `jobs::min_by_key` / `jobs::max_by_key` with `f64` keys that do not
//! compare (NaN): every entry point, worker count and split gives the
//! sequential answer, and that answer follows the documented rule — a NaN
//! key loses to every other key (an all-NaN input gives its leftmost pair),
//! ties keep the leftmost, and a NaN key never meets a `stop_at` bound.
//!
//! Keys are compared by `to_bits`, so a run that keeps another NaN (each NaN
//! here carries its index as payload) or `0.0` instead of `-0.0` is caught.

mod common;

use common::Rng;
use mapreduce::jobs::{self, Keep};
use mapreduce::testing::check_merge_law;
use mapreduce::{par_map_reduce, par_map_reduce_in_order, par_map_reduce_iter, seq_map_reduce, Config, MapReduce};
use proptest::prelude::*;

const LEN: usize = 10_000;

/// A quiet NaN whose payload names `i`, so two NaNs are told apart by bits.
fn nan(i: usize) -> f64 {
    f64::from_bits(0x7ff8_0000_0000_0000 | i as u64)
}

/// Key layouts over `LEN` items, named for the failure messages.
fn layouts() -> Vec<(&'static str, Vec<f64>)> {
    // The report's shape: small keys early, NaNs, the best keys at the end.
    let report: Vec<f64> = (0..LEN)
        .map(|i| match i {
            0 => 1.0,
            1 => 3.0,
            2 => nan(i),
            9996 => 4.0,
            9999 => 0.5,
            9998 => 1e9,
            _ if i % 625 == 0 || i % 97 == 2 => nan(i),
            _ => 5.0 + (i * 7919 % 1000) as f64,
        })
        .collect();
    // Only the first key is NaN: a fold that keeps it swallows everything.
    let nan_first: Vec<f64> = (0..LEN)
        .map(|i| if i == 0 { nan(i) } else { ((i * 7919) % 10_007) as f64 })
        .collect();
    // A NaN opens every stretch a halving split can start (multiples of
    // 10_000 / 2^k), and the extremes lie right of them.
    let nan_at_halvings: Vec<f64> = (0..LEN)
        .map(|i| {
            if i % 625 == 0 || i % 625 == 1 {
                nan(i)
            } else {
                (i % 625) as f64 * if i % 2 == 0 { 1.0 } else { -1.0 }
            }
        })
        .collect();
    // About one NaN in eight, runs of NaN, ±0.0, ±inf and many ties.
    let mut rng = Rng(17);
    let scattered: Vec<f64> = (0..LEN)
        .map(|i| match rng.next() % 16 {
            0 | 1 => nan(i),
            2 => 0.0,
            3 => -0.0,
            4 if i > LEN / 2 => f64::INFINITY,
            5 if i > LEN / 2 => f64::NEG_INFINITY,
            _ if (3000..3200).contains(&i) => nan(i),
            r => r as f64 - 10.0,
        })
        .collect();
    let all_nan: Vec<f64> = (0..LEN).map(nan).collect();
    // Signed zeros after a NaN: the leftmost of -0.0 and 0.0 must win.
    let zeros: Vec<f64> = (0..LEN)
        .map(|i| match i % 3 {
            _ if i % 1000 == 0 => nan(i),
            0 => 0.0,
            1 => -0.0,
            _ => 1.0,
        })
        .collect();
    vec![
        ("report", report),
        ("nan_first", nan_first),
        ("nan_at_halvings", nan_at_halvings),
        ("scattered", scattered),
        ("all_nan", all_nan),
        ("zeros", zeros),
    ]
}

/// The documented rule, stated directly: with a bound, the first key (not
/// NaN) at or beyond it; else the leftmost best key among those not NaN;
/// else (all NaN) the first pair.
fn reference(keys: &[f64], keep: Keep, bound: Option<f64>) -> Option<(f64, usize)> {
    let beyond = |k: f64, b: f64| match keep {
        Keep::Min => k <= b,
        Keep::Max => k >= b,
    };
    if let Some(b) = bound {
        if let Some(j) = keys.iter().position(|&k| beyond(k, b)) {
            return Some((keys[j], j));
        }
    }
    let mut best: Option<(f64, usize)> = None;
    for (i, &k) in keys.iter().enumerate() {
        if k.is_nan() {
            continue;
        }
        let improves = match (best, keep) {
            (None, _) => true,
            (Some((b, _)), Keep::Min) => k < b,
            (Some((b, _)), Keep::Max) => k > b,
        };
        if improves {
            best = Some((k, i));
        }
    }
    best.or_else(|| keys.first().map(|&k| (k, 0)))
}

fn bits(found: Option<(f64, usize)>) -> Option<(u64, usize)> {
    found.map(|(k, i)| (k.to_bits(), i))
}

/// One of the four built-in jobs under test, behind one type.
type Job = Box<BestJob>;
type BestJob = dyn MapReduce<usize, [f64], Output = (f64, usize), Acc = Option<(f64, usize)>>;

fn job(keep: Keep, bound: Option<f64>) -> Job {
    let evaluate = |i: usize, keys: &[f64]| (keys[i], i);
    match (keep, bound) {
        (Keep::Min, None) => Box::new(jobs::min_by_key(evaluate)),
        (Keep::Min, Some(b)) => Box::new(jobs::min_by_key(evaluate).stop_at(b)),
        (Keep::Max, None) => Box::new(jobs::max_by_key(evaluate)),
        (Keep::Max, Some(b)) => Box::new(jobs::max_by_key(evaluate).stop_at(b)),
    }
}

/// Every run of `job` over `keys` that must give the sequential answer,
/// named: parallel with 1, 2 and 4 workers, in order, and streamed.
fn parallel_runs(keys: &[f64], job: &BestJob, workers: &[isize]) -> Vec<(String, Option<(f64, usize)>)> {
    let config = |n: isize| {
        Config::current()
            .with_workers(n)
            .with_progress_bars(false)
            .with_deterministic(true)
    };
    let mut runs = Vec::new();
    for &n in workers {
        let found = config(n).scope(|| par_map_reduce(0..keys.len(), keys, job)).unwrap();
        runs.push((format!("par_map_reduce, {n} workers"), found));
        let found = config(n)
            .scope(|| par_map_reduce_in_order(0..keys.len(), keys, job))
            .unwrap();
        runs.push((format!("par_map_reduce_in_order, {n} workers"), found));
        let found = config(n)
            .scope(|| par_map_reduce_iter(0..keys.len(), keys, job))
            .unwrap();
        runs.push((format!("par_map_reduce_iter, {n} workers"), found));
    }
    runs
}

/// Bounds for `stop_at`: none, a NaN one (never met), infinities, and keys
/// taken from the layout (met somewhere, often right of NaNs).
fn bounds(keys: &[f64]) -> Vec<Option<f64>> {
    let mut bounds = vec![None, Some(f64::NAN), Some(f64::INFINITY), Some(f64::NEG_INFINITY)];
    bounds.extend([keys[LEN / 3], keys[LEN - 1], keys[LEN - 4], 0.0, -0.0].map(Some));
    bounds
}

#[test]
fn every_entry_point_gives_the_sequential_answer_and_the_rule() {
    for (name, keys) in layouts() {
        for keep in [Keep::Min, Keep::Max] {
            for bound in bounds(&keys) {
                let job = job(keep, bound);
                let job = job.as_ref();
                let expected = reference(&keys, keep, bound);
                let sequential = seq_map_reduce(0..LEN, keys.as_slice(), job).unwrap();
                assert_eq!(
                    bits(sequential),
                    bits(expected),
                    "{name}, {keep:?}, stop_at {bound:?}: sequential {sequential:?}, the rule says {expected:?}"
                );
                for (run, found) in parallel_runs(&keys, job, &[1, 2, 4]) {
                    assert_eq!(
                        bits(found),
                        bits(sequential),
                        "{name}, {keep:?}, stop_at {bound:?}, {run}: {found:?}, sequential {sequential:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_reported_case() {
    // Keys 1.0, 3.0, NaN, 4.0, ... with the smallest at the end.
    let (_, keys) = layouts().swap_remove(0);
    let job = job(Keep::Min, None);
    let job = job.as_ref();
    let sequential = seq_map_reduce(0..LEN, keys.as_slice(), job).unwrap();
    assert_eq!(bits(sequential), bits(Some((0.5, 9999))));
    for (run, found) in parallel_runs(&keys, job, &[1, 2, 4]) {
        assert_eq!(bits(found), bits(sequential), "{run}: {found:?}");
    }
}

#[test]
fn the_jobs_obey_the_merge_law_on_every_layout() {
    for (name, keys) in layouts() {
        let items: Vec<usize> = (0..LEN).collect();
        for keep in [Keep::Min, Keep::Max] {
            for bound in [None, Some(keys[LEN - 4])] {
                check_merge_law(&job(keep, bound).as_ref(), keys.as_slice(), &items, 5)
                    .unwrap_or_else(|e| panic!("{name}, {keep:?}, stop_at {bound:?}: {e}"));
            }
        }
    }
}

/// Keys that stress the rule: NaNs (with their index as payload), signed
/// zeros, infinities, small integers (ties) and arbitrary values.
fn key() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some(0.0)),
        1 => Just(Some(-0.0)),
        1 => Just(Some(f64::INFINITY)),
        1 => Just(Some(f64::NEG_INFINITY)),
        3 => (-3i8..=3).prop_map(|k| Some(f64::from(k))),
        2 => any::<f64>().prop_map(Some),
    ]
}

fn keys() -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        proptest::collection::vec(key(), 0..12),
        proptest::collection::vec(key(), 0..600),
    ]
    .prop_map(|keys| {
        keys.into_iter()
            .enumerate()
            .map(|(i, k)| k.unwrap_or_else(|| nan(i)))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(200),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_keys_with_nans_give_the_sequential_answer(
        keys in keys(),
        max in any::<bool>(),
        bound in prop_oneof![2 => Just(None), 1 => key().prop_map(|k| Some(k.unwrap_or(f64::NAN)))],
        workers in 1..=4isize,
        seed in any::<u64>(),
    ) {
        let keep = if max { Keep::Max } else { Keep::Min };
        let job = job(keep, bound);
        let job = job.as_ref();
        let sequential = seq_map_reduce(0..keys.len(), keys.as_slice(), job).unwrap();
        prop_assert_eq!(bits(sequential), bits(reference(&keys, keep, bound)), "sequential {:?}", sequential);
        for (run, found) in parallel_runs(&keys, job, &[workers]) {
            prop_assert_eq!(bits(found), bits(sequential), "{}: {:?}, sequential {:?}", run, found, sequential);
        }
        let items: Vec<usize> = (0..keys.len()).collect();
        if let Err(e) = check_merge_law(&job, keys.as_slice(), &items, seed) {
            prop_assert!(false, "{}", e);
        }
    }
}
