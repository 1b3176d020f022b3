//! Nothing grows: no threads over thousands of runs (panicking ones
//! included), pools reused, worker threads named. The OS thread count is
//! process-wide, so this binary holds a single test that runs its checks
//! one after another.

mod common;

use common::{os_threads, quiet_scripted_panics, Scripted};
use mapreduce::prelude::*;

#[test]
fn runs_leave_no_threads_behind() {
    quiet_scripted_panics();
    let job = jobs::sum(|x: u64, _: &()| x);
    // Warm up every pool size used below.
    for workers in [1, 2, -1] {
        Config::current()
            .with_workers(workers)
            .scope(|| par_map_reduce(0..8u64, &(), &job))
            .unwrap();
    }
    Config::current()
        .with_parallel(false)
        .scope(|| par_map_reduce(0..8u64, &(), &job))
        .unwrap();
    let threads = os_threads();

    thousands_of_small_runs(&job);
    assert_eq!(os_threads(), threads, "after thousands of small runs");

    pool_is_usable_after_50_panicking_runs();
    assert_eq!(os_threads(), threads, "after panicking runs");

    concurrent_runs_from_8_threads(&job);
    // `thread::scope` returns once its threads' closures are done; the OS
    // threads themselves may take a moment longer to exit.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while os_threads() != threads && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(os_threads(), threads, "after concurrent runs");

    worker_threads_are_named();
}

fn thousands_of_small_runs(job: &impl MapReduce<u64, Acc = u64>) {
    for i in 0..3000u64 {
        let workers = [1, 2, -1][i as usize % 3];
        let parallel = i % 7 != 0;
        let total = Config::current()
            .with_workers(workers)
            .with_parallel(parallel)
            .scope(|| match i % 3 {
                0 => par_map_reduce(0..i % 5, &(), job),
                1 => par_map_reduce_iter(0..i % 5, &(), job),
                _ => par_map_reduce(
                    0..i % 5,
                    &(),
                    jobs::sum(|x: u64, _: &()| par_map_reduce(0..x, &(), job).unwrap()),
                ),
            })
            .unwrap();
        assert!(total <= 10);
    }
}

fn pool_is_usable_after_50_panicking_runs() {
    let job = Scripted {
        compute_panics: [3, 700].into(),
        process_panics: [1500].into(),
        ..Scripted::default()
    };
    let config = Config::current().with_workers(2);
    for _ in 0..50 {
        let err = config
            .clone()
            .scope(|| par_map_reduce(0..2000u64, &(), &job))
            .unwrap_err();
        assert_eq!(err.index(), Some(3));
    }
    let ok = config
        .scope(|| par_map_reduce(0..2000u64, &(), &Scripted::default()))
        .unwrap();
    assert_eq!(ok, (0..2000).collect::<Vec<_>>());
}

fn concurrent_runs_from_8_threads(job: &impl MapReduce<u64, Acc = u64>) {
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..200 {
                    assert_eq!(par_map_reduce(0..1000u64, &(), job).unwrap(), 499_500);
                }
            });
        }
    });
}

fn worker_threads_are_named() {
    let names = par_map_reduce(
        0..64u64,
        &(),
        jobs::collect(|_: u64, _: &()| std::thread::current().name().map(str::to_owned)),
    )
    .unwrap();
    assert!(
        names
            .iter()
            .all(|name| name.as_deref().is_some_and(|n| n.starts_with("mapreduce-"))),
        "{names:?}"
    );
}
