//! The edges: tiny runs by the hundred thousand, breaks on the first and
//! last item, every item breaking or panicking, every item polling
//! `is_cancelled`, scopes nested 100 deep, runs from 8 threads at once.

mod common;

use std::ops::ControlFlow::{self, Break, Continue};

use common::{quiet_scripted_panics, Scripted, SCRIPTED};
use mapreduce::prelude::*;

fn modes() -> [Config; 2] {
    [
        Config::current().with_workers(2).with_deterministic(true),
        Config::current().with_workers(2).with_deterministic(false),
    ]
}

#[test]
fn a_hundred_thousand_runs_of_zero_to_three_items() {
    let job = jobs::collect(|x: u64, _: &()| x);
    for i in 0..100_000u64 {
        let n = i % 4;
        let expected: Vec<u64> = (0..n).collect();
        let found = match i % 3 {
            0 => par_map_reduce(0..n, &(), &job),
            1 => par_map_reduce_iter(0..n, &(), &job),
            _ => seq_map_reduce(0..n, &(), &job),
        };
        assert_eq!(found.unwrap(), expected, "run {i}");
    }
}

#[test]
fn break_on_the_first_and_on_the_last_item() {
    for config in modes() {
        for (len, at) in [(1u64, 0u64), (1000, 0), (1000, 999), (100_000, 99_999)] {
            let job = Scripted {
                breaks: [at].into(),
                ..Scripted::default()
            };
            let found = config.clone().scope(|| par_map_reduce(0..len, &(), &job)).unwrap();
            assert_eq!(found.last(), Some(&at));
            if config.deterministic() {
                assert_eq!(found, (0..=at).collect::<Vec<_>>());
            }
            let streamed = config.clone().scope(|| par_map_reduce_iter(0..len, &(), &job)).unwrap();
            assert_eq!(streamed.last(), Some(&at));
        }
    }
}

#[test]
fn every_item_breaking() {
    let job = Scripted {
        breaks: (0..10_000).collect(),
        ..Scripted::default()
    };
    for config in modes() {
        let found = config
            .clone()
            .scope(|| par_map_reduce(0..10_000u64, &(), &job))
            .unwrap();
        if config.deterministic() {
            assert_eq!(found, [0]);
        } else {
            assert!(job.ends_at_break(&found), "{found:?}");
        }
    }
}

#[test]
fn every_item_panicking() {
    quiet_scripted_panics();
    let job = Scripted {
        compute_panics: (0..10_000).collect(),
        ..Scripted::default()
    };
    for config in modes() {
        let err = config
            .clone()
            .scope(|| par_map_reduce(0..10_000u64, &(), &job))
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains(SCRIPTED), "{message}");
        if config.deterministic() {
            assert_eq!(err.index(), Some(0));
        }
    }
    let err = par_map_reduce_iter(0..10_000u64, &(), &job).unwrap_err();
    assert_eq!(err.index(), Some(0));
}

/// Every item polls `is_cancelled` and counts how often it was told yes.
struct Polling;

impl MapReduce<u64> for Polling {
    type Output = bool;
    type Acc = (u64, u64);

    fn empty_result(&self, _: &()) -> (u64, u64) {
        (0, 0)
    }
    fn compute(&self, item: u64, _: &()) -> bool {
        let cancelled = is_cancelled();
        assert!(item > 0 || !cancelled, "the first item is left of every break");
        cancelled
    }
    fn process_result(&self, cancelled: bool, (n, told): (u64, u64)) -> ControlFlow<(u64, u64), (u64, u64)> {
        let acc = (n + 1, told + u64::from(cancelled));
        if n + 1 == 50_000 {
            Break(acc)
        } else {
            Continue(acc)
        }
    }
    fn merge(&self, (n1, t1): (u64, u64), (n2, t2): (u64, u64)) -> ControlFlow<(u64, u64), (u64, u64)> {
        Continue((n1 + n2, t1 + t2))
    }
}

#[test]
fn every_item_polls_is_cancelled() {
    let (folded, told) = par_map_reduce(0..1_000_000u64, &(), Polling).unwrap();
    assert!(folded >= 50_000);
    // Items that are folded into the answer were not cancelled when asked.
    assert_eq!(told, 0);
    assert!(!is_cancelled());
}

#[test]
fn scopes_nested_100_deep() {
    fn nest(depth: isize) -> isize {
        if depth == 0 {
            let seen = par_map_reduce(
                0..4u64,
                &(),
                jobs::collect(|_: u64, _: &()| Config::current().workers()),
            )
            .unwrap();
            assert!(seen.iter().all(|w| *w == 100));
            return Config::current().workers();
        }
        Config::current().with_workers(101 - depth).scope(|| nest(depth - 1))
    }
    let before = Config::current();
    assert_eq!(nest(100), 100);
    assert_eq!(Config::current(), before);
}

#[test]
fn runs_from_8_threads_at_once_on_one_pool() {
    quiet_scripted_panics();
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            scope.spawn(move || {
                let job = Scripted {
                    breaks: [500 + t].into(),
                    compute_panics: if t % 2 == 0 { [700].into() } else { Default::default() },
                    ..Scripted::default()
                };
                for _ in 0..100 {
                    let found = Config::current()
                        .with_workers(2)
                        .scope(|| par_map_reduce(0..5000u64, &(), &job));
                    assert_eq!(found.unwrap(), (0..=500 + t).collect::<Vec<_>>());
                }
            });
        }
    });
}

#[test]
fn nested_streams_and_runs_do_not_deadlock() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for workers in [1, 2, -1] {
            let inner = jobs::sum(|x: u64, _: &()| x);
            let outer = jobs::sum(|n: u64, _: &()| {
                // A streamed run and a parallel run inside every task.
                par_map_reduce_iter(0..n * 300, &(), &inner).unwrap() + par_map_reduce(0..n, &(), &inner).unwrap()
            });
            let total = Config::current()
                .with_workers(workers)
                .scope(|| par_map_reduce_iter(0..16u64, &(), &outer))
                .unwrap();
            let expected: u64 = (0..16u64)
                .map(|n| (0..n * 300).sum::<u64>() + (0..n).sum::<u64>())
                .sum();
            assert_eq!(total, expected);
        }
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("nested streams deadlocked (no answer in 60 s)");
}
