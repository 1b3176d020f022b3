//! The crate fits the habits of Rust programs: errors go where applications
//! send theirs, `u64` search spaces are indexed, one import is enough, and
//! the config rules are the same for every run.

mod common;

use std::ops::ControlFlow::{self, Break, Continue};

use common::{quiet_scripted_panics, SCRIPTED};
use mapreduce::{indexed_range, jobs, Config, ConfigError, Error, MapReduce};

fn failing_search() -> Result<u64, Error> {
    mapreduce::par_map_reduce(
        0..100u64,
        &(),
        jobs::sum(|x: u64, _: &()| {
            if x == 42 {
                std::panic::panic_any(std::cell::Cell::new(x));
            }
            x
        }),
    )
}

fn into_anyhow() -> anyhow::Result<u64> {
    let total = failing_search()?;
    Ok(total)
}

fn into_boxed() -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    let total = failing_search()?;
    Ok(total)
}

#[test]
fn question_mark_goes_into_anyhow_and_boxed_errors() {
    quiet_scripted_panics();
    let err = into_anyhow().unwrap_err();
    assert_eq!(err.to_string().split(':').next(), Some("task panicked at item 42"));
    let err = into_boxed().unwrap_err();
    assert!(err.to_string().starts_with("task panicked at item 42"));
    // Across threads, as errors of services travel.
    let err = std::thread::spawn(into_boxed).join().unwrap().unwrap_err();
    assert!(err.is::<Error>());
}

#[test]
fn the_payload_survives_anyhow_and_resume_raises_it() {
    quiet_scripted_panics();
    let err = into_anyhow().unwrap_err().downcast::<Error>().unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || err.resume())).unwrap_err();
    assert_eq!(
        caught.downcast_ref::<std::cell::Cell<u64>>().map(|cell| cell.get()),
        Some(42)
    );
}

/// The first bitmask with the given bits set.
fn first_with(bits: u64) -> impl MapReduce<u64, Output = Option<u64>, Acc = Option<u64>> {
    jobs::find_first(move |mask: &u64, _: &()| mask & bits == bits)
}

#[test]
fn u64_bitmask_searches_take_the_in_order_path() {
    let wanted = (1 << 2) | (1 << 9) | (1 << 17);
    let found = mapreduce::par_map_reduce_in_order(indexed_range(0..(1u64 << 40)), &(), first_with(wanted));
    assert_eq!(found.unwrap(), Some(wanted));
    let found = mapreduce::par_map_reduce_in_order(indexed_range(1..=(1u64 << 40)), &(), first_with(wanted));
    assert_eq!(found.unwrap(), Some(wanted));
}

#[test]
fn indexed_ranges_give_the_sequential_answer_everywhere() {
    quiet_scripted_panics();
    let job = common::Scripted {
        breaks: [(1 << 33) + 700].into(),
        compute_panics: [(1 << 33) + 900].into(),
        ..Default::default()
    };
    let range = (1u64 << 33)..(1u64 << 33) + 1000;
    let expected = mapreduce::seq_map_reduce(range.clone(), &(), &job).unwrap();
    for workers in [1, 2] {
        Config::current()
            .with_workers(workers)
            .with_progress_bars(false)
            .scope(|| {
                let plain = mapreduce::par_map_reduce(indexed_range(range.clone()), &(), &job).unwrap();
                let in_order = mapreduce::par_map_reduce_in_order(indexed_range(range.clone()), &(), &job).unwrap();
                assert_eq!((plain, in_order), (expected.clone(), expected.clone()));
            });
    }
    let negative = mapreduce::par_map_reduce(indexed_range(-500..=499i64), &(), jobs::sum(|x: i64, _: &()| x));
    assert_eq!(negative.unwrap(), -500);
}

mod one_import {
    use mapreduce::prelude::*;

    #[test]
    fn the_prelude_alone_gives_rayon_and_map_reduce() {
        let words = vec!["cut", "partition", "mechanism"];
        let long = words
            .par_iter()
            .map(|w| w.len())
            .map_reduce(&(), jobs::count(|n: &usize, _: &()| *n > 3))
            .unwrap();
        assert_eq!(long, 2);
        let odd = (0..100u64)
            .into_par_iter()
            .filter(|x| x % 2 == 1)
            .map_reduce(&(), jobs::sum(|x: u64, _: &()| x))
            .unwrap();
        assert_eq!(odd, 2500);
        let first = indexed_range(0..(1u64 << 40))
            .map_reduce_in_order(&(), jobs::find_first(|x: &u64, _: &()| *x == 12345))
            .unwrap();
        assert_eq!(first, Some(12345));
        // The crate's own rayon and env_logger, version-matched.
        let _pool = mapreduce::rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let _builder = mapreduce::env_logger::Builder::new();
    }
}

/// Counts the items a run computed.
struct Counting<'a>(&'a std::sync::atomic::AtomicUsize);

impl MapReduce<u64> for Counting<'_> {
    type Output = ();
    type Acc = ();
    fn empty_result(&self, _: &()) {}
    fn compute(&self, _: u64, _: &()) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn process_result(&self, _: (), _: ()) -> ControlFlow<(), ()> {
        Continue(())
    }
    fn merge(&self, _: (), _: ()) -> ControlFlow<(), ()> {
        Continue(())
    }
}

#[test]
fn an_impossible_worker_count_fails_every_run_alike() {
    let computed = std::sync::atomic::AtomicUsize::new(0);
    let job = Counting(&computed);
    for (workers, expected) in [
        (0, ConfigError::ZeroWorkers),
        (
            -1000,
            ConfigError::TooNegative {
                requested: -1000,
                available: std::thread::available_parallelism().unwrap().get(),
            },
        ),
    ] {
        for parallel in [true, false] {
            let config = Config::current().with_workers(workers).with_parallel(parallel);
            let runs = config.scope(|| {
                [
                    mapreduce::par_map_reduce(0..10u64, &(), &job),
                    mapreduce::par_map_reduce_in_order(indexed_range(0..10u64), &(), &job),
                    mapreduce::par_map_reduce_iter(0..10u64, &(), &job),
                    mapreduce::seq_map_reduce(0..10u64, &(), &job),
                ]
            });
            for run in runs {
                match run {
                    Err(Error::Config(err)) => assert_eq!(err, expected),
                    other => panic!("{workers} workers, parallel {parallel}: {other:?}"),
                }
            }
        }
    }
    assert_eq!(computed.into_inner(), 0, "a run with a bad config computed items");
}

#[test]
fn breaks_and_panics_keep_their_meaning_through_the_error() {
    quiet_scripted_panics();
    let job = jobs::find_first(|x: &u64, _: &()| {
        assert!(*x != 7, "{SCRIPTED}: seven");
        *x == 5
    });
    let found: anyhow::Result<Option<u64>> = (|| Ok(mapreduce::par_map_reduce(0..100u64, &(), &job)?))();
    assert_eq!(found.unwrap(), Some(5));
    let _ = Break::<(), ()>(());
}
