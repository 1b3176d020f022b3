//! Ordinary runs stopped from outside: `Config::with_stop` and
//! `Config::with_deadline` end every entry point with `Error::Stopped`,
//! promptly, with the items in flight cancelled.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mapreduce::{
    indexed_range, is_cancelled, jobs, par_map_reduce, par_map_reduce_in_order, par_map_reduce_iter, seq_map_reduce,
    Config, Error, StopHandle,
};

fn quiet() -> Config {
    Config::current().with_progress_bars(false)
}

/// A job over endless items that pulls `stop` at item 10,000.
fn stopping_at_10k(stop: &StopHandle) -> impl mapreduce::MapReduce<u64, (), Acc = usize> {
    let cord = stop.clone();
    jobs::count(move |x: &u64, _: &()| {
        if *x == 10_000 {
            cord.stop();
        }
        false
    })
}

fn assert_stopped<A: std::fmt::Debug>(result: Result<A, Error>) {
    match result {
        Err(Error::Stopped {
            done: 0,
            checkpoint: None,
        }) => {}
        other => panic!("not stopped: {other:?}"),
    }
}

#[test]
fn a_pulled_handle_stops_every_entry_point() {
    for parallel in [true, false] {
        let config = || {
            let stop = StopHandle::new();
            (quiet().with_parallel(parallel).with_stop(stop.clone()), stop)
        };
        let (c, stop) = config();
        assert_stopped(c.scope(|| par_map_reduce(indexed_range(0..u64::MAX), &(), stopping_at_10k(&stop))));
        let (c, stop) = config();
        assert_stopped(c.scope(|| par_map_reduce_in_order(indexed_range(0..u64::MAX), &(), stopping_at_10k(&stop))));
        let (c, stop) = config();
        assert_stopped(c.scope(|| par_map_reduce_iter(0u64.., &(), stopping_at_10k(&stop))));
        let (c, stop) = config();
        assert_stopped(c.scope(|| seq_map_reduce(0u64.., &(), stopping_at_10k(&stop))));
    }
    // With a bar drawn (the run goes to the pool, this thread draws).
    let stop = StopHandle::new();
    let watched = quiet()
        .with_progress_bars(true)
        .with_progress_bars_always(true)
        .with_stop(stop.clone());
    assert_stopped(watched.scope(|| par_map_reduce_in_order(indexed_range(0..u64::MAX), &(), stopping_at_10k(&stop))));
}

#[test]
fn a_run_started_after_the_pull_stops_at_once_without_computing() {
    let stop = StopHandle::new();
    stop.stop();
    let computed = AtomicU64::new(0);
    let job = jobs::count(|_: &u64, _: &()| {
        computed.fetch_add(1, Ordering::Relaxed);
        true
    });
    assert_stopped(
        quiet()
            .with_stop(stop)
            .scope(|| par_map_reduce_in_order(indexed_range(0..1_000_000u64), &(), job)),
    );
    // At most the first item of each worker's first task may start.
    assert!(
        computed.load(Ordering::Relaxed) <= 64,
        "{} computed",
        computed.load(Ordering::Relaxed)
    );
}

#[test]
fn items_in_flight_see_the_stop_and_the_run_returns_promptly() {
    let stop = StopHandle::new();
    let cord = stop.clone();
    let saw = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&saw);
    let started = Instant::now();
    // Items of 5 s that poll: a stop after the first item starts ends them.
    let job = jobs::count(move |x: &u64, _: &()| {
        if *x == 0 {
            cord.stop();
        }
        let began = Instant::now();
        while began.elapsed() < Duration::from_secs(5) {
            if is_cancelled() {
                seen.store(true, Ordering::Relaxed);
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    });
    assert_stopped(
        quiet()
            .with_stop(stop)
            .scope(|| par_map_reduce_in_order(indexed_range(0..100u64), &(), job)),
    );
    assert!(saw.load(Ordering::Relaxed), "no item saw is_cancelled()");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn deadlines_stop_runs_that_outlive_them_and_spare_the_others() {
    let soon = || quiet().with_deadline(Instant::now() + Duration::from_millis(100));
    let started = Instant::now();
    assert_stopped(soon().scope(|| par_map_reduce_iter(0u64.., &(), jobs::count(|_: &u64, _: &()| false))));
    assert_stopped(soon().scope(|| seq_map_reduce(0u64.., &(), jobs::count(|_: &u64, _: &()| false))));
    assert_stopped(
        soon().scope(|| par_map_reduce(indexed_range(0..u64::MAX), &(), jobs::count(|_: &u64, _: &()| false))),
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    // A run that ends first is untouched, and so is the next one.
    let later = quiet().with_deadline(Instant::now() + Duration::from_secs(3600));
    assert_eq!(
        later
            .scope(|| par_map_reduce(0..1000u32, &(), jobs::count(|_: &u32, _: &()| true)))
            .unwrap(),
        1000
    );
    let past = quiet().with_deadline(Instant::now());
    assert_stopped(past.scope(|| par_map_reduce(0..1000u32, &(), jobs::count(|_: &u32, _: &()| true))));
}

#[test]
fn nested_runs_stop_with_their_parent() {
    let stop = StopHandle::new();
    let cord = stop.clone();
    // Each item is a nested run over endless items: only the stop ends them.
    let outer = jobs::count(|_: &u64, _: &()| {
        let inner = par_map_reduce_iter(0u64.., &(), jobs::count(|_: &u64, _: &()| false));
        matches!(inner, Err(Error::Stopped { .. } | Error::Cancelled))
    });
    std::thread::scope(|scope| {
        scope.spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            cord.stop();
        });
        assert_stopped(
            quiet()
                .with_stop(stop)
                .scope(|| par_map_reduce_in_order(indexed_range(0..8u64), &(), outer)),
        );
    });
}
