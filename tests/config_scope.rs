//! `Config::scope` travels: into every task of runs started inside it, on
//! whatever thread, and into runs nested in those tasks at any depth.

use mapreduce::prelude::*;

/// Which config a task sees, and on which thread.
fn observe(depth: usize) -> Vec<(isize, bool, bool, String)> {
    let job = jobs::collect(move |_: u64, _: &()| {
        let config = Config::current();
        let here = (
            config.workers(),
            config.deterministic(),
            config.progress_bars(),
            std::thread::current().name().unwrap_or("").to_owned(),
        );
        if depth == 1 {
            vec![here]
        } else {
            let mut seen = observe(depth - 1);
            seen.push(here);
            seen
        }
    });
    par_map_reduce(0..4u64, &(), job)
        .unwrap()
        .into_iter()
        .flatten()
        .collect()
}

#[test]
fn scope_reaches_nested_runs_three_levels_deep_on_worker_threads() {
    let before = Config::current();
    let seen = Config::current()
        .with_workers(-1)
        .with_deterministic(false)
        .with_progress_bars(false)
        .scope(|| observe(3));
    assert_eq!(seen.len(), 4 * 4 * 4 + 4 * 4 + 4);
    for (workers, deterministic, progress, thread) in &seen {
        assert_eq!((*workers, *deterministic, *progress), (-1, false, false));
        assert!(thread.starts_with("mapreduce-"), "task ran on {thread:?}");
    }
    assert_eq!(Config::current(), before, "the scope is gone after it");
    let after = observe(2);
    assert!(after
        .iter()
        .all(|(w, d, p, _)| (*w, *d, *p) == (before.workers(), before.deterministic(), before.progress_bars())));
}

#[test]
fn a_scope_inside_a_task_applies_to_its_nested_run_only() {
    let seen = Config::current().with_workers(2).scope(|| {
        let job = jobs::collect(|x: u64, _: &()| {
            let inner = Config::current().with_deterministic(x % 2 == 0).scope(|| observe(1));
            (inner, Config::current().deterministic())
        });
        par_map_reduce(0..6u64, &(), job).unwrap()
    });
    for (x, (inner, outer)) in seen.into_iter().enumerate() {
        assert!(outer, "the task's own config is untouched");
        assert!(inner.iter().all(|(w, d, _, _)| *w == 2 && *d == (x % 2 == 0)));
    }
}

#[test]
fn sequential_config_runs_one_item_at_a_time_in_order() {
    let order = std::sync::Mutex::new(Vec::new());
    let job = jobs::count(|x: &u64, _: &()| {
        order.lock().unwrap().push((*x, rayon::current_num_threads()));
        true
    });
    let n = Config::current()
        .with_parallel(false)
        .scope(|| par_map_reduce(0..100u64, &(), job))
        .unwrap();
    assert_eq!(n, 100);
    let order = order.into_inner().unwrap();
    assert!(order
        .iter()
        .enumerate()
        .all(|(i, (x, threads))| *x == i as u64 && *threads == 1));
}

#[test]
fn streamed_sequential_config_runs_on_the_calling_thread() {
    let caller = std::thread::current().id();
    let job = jobs::all(move |_: &u64, _: &()| std::thread::current().id() == caller);
    assert!(Config::current()
        .with_parallel(false)
        .scope(|| par_map_reduce_iter(0..1000u64, &(), job))
        .unwrap());
}

#[test]
fn nested_runs_use_no_threads_beyond_the_pool() {
    // Three levels of nesting, on the pool of the outer run: every task at
    // every level runs on one of that pool's threads.
    let seen = Config::current().with_workers(-1).scope(|| observe(3));
    let names: std::collections::BTreeSet<_> = seen.into_iter().map(|(_, _, _, thread)| thread).collect();
    let cores = std::thread::available_parallelism().unwrap().get();
    assert!(names.len() <= cores, "{names:?}");
}
