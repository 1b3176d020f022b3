//! Durable runs (feature `durable`): resume, stop, done is remembered, bad
//! files, locks, panics; and ordinary runs stopped by a handle or deadline.
#![cfg(feature = "durable")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mapreduce::durable::{par_map_reduce_durable, Checkpoint, CheckpointError, CheckpointProblem};
use mapreduce::{indexed_range, jobs, par_map_reduce_in_order, Config, Error, MapReduce};

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mapreduce-durable-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An order-sensitive float sum whose `compute` counts its calls.
fn counted_sum(calls: &Arc<AtomicU64>) -> impl MapReduce<u64, (), Acc = f64> {
    let calls = Arc::clone(calls);
    jobs::sum(move |x: u64, _: &()| {
        calls.fetch_add(1, Ordering::Relaxed);
        common::float_value(x)
    })
}

fn quiet<R>(f: impl FnOnce() -> R) -> R {
    Config::current().with_progress_bars(false).with_leaf_size(100).scope(f)
}

const N: u64 = 200_000;

/// What an uninterrupted in-order run answers.
fn reference() -> f64 {
    quiet(|| {
        par_map_reduce_in_order(
            indexed_range(0..N),
            &(),
            jobs::sum(|x: u64, _: &()| common::float_value(x)),
        )
    })
    .unwrap()
}

#[test]
fn an_uninterrupted_durable_run_answers_the_in_order_bits_and_remembers_them() {
    let dir = scratch("plain");
    let path = dir.join("sum.ckpt");
    let calls = Arc::new(AtomicU64::new(0));
    let checkpoint = Checkpoint::new(&path, "sum");
    let sum = quiet(|| par_map_reduce_durable(indexed_range(0..N), &(), counted_sum(&calls), &checkpoint)).unwrap();
    assert_eq!(sum.to_bits(), reference().to_bits());
    assert_eq!(calls.load(Ordering::Relaxed), N);
    // Done is remembered: not one item computed again.
    calls.store(0, Ordering::Relaxed);
    for workers in [1, 2] {
        let again = quiet(|| {
            Config::current()
                .with_workers(workers)
                .scope(|| par_map_reduce_durable(indexed_range(0..N), &(), counted_sum(&calls), &checkpoint))
        })
        .unwrap();
        assert_eq!(again.to_bits(), sum.to_bits());
    }
    assert_eq!(calls.load(Ordering::Relaxed), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_stopped_run_saves_its_prefix_and_the_rerun_finishes_with_the_same_bits() {
    let dir = scratch("stop");
    let path = dir.join("sum.ckpt");
    let calls = Arc::new(AtomicU64::new(0));
    let mut rounds = 0;
    let answer = loop {
        rounds += 1;
        assert!(rounds < 100, "no progress");
        let checkpoint = Checkpoint::new(&path, "sum").every(Duration::ZERO);
        let stop = checkpoint.stop_handle();
        let before = calls.load(Ordering::Relaxed);
        // Stop each attempt after it has computed 30,000 more items.
        let watched = Arc::clone(&calls);
        let job = jobs::sum(move |x: u64, _: &()| {
            if watched.fetch_add(1, Ordering::Relaxed) == before + 30_000 {
                stop.stop();
            }
            common::float_value(x)
        });
        match quiet(|| par_map_reduce_durable(indexed_range(0..N), &(), job, &checkpoint)) {
            Ok(sum) => break sum,
            Err(Error::Stopped {
                done,
                checkpoint: Some(saved),
            }) => {
                assert_eq!(saved, path);
                assert!(done <= N);
            }
            Err(other) => panic!("{other}"),
        }
    };
    assert!(rounds > 3, "only {rounds} round(s)");
    assert_eq!(answer.to_bits(), reference().to_bits());
    // Each stop loses at most the block in flight.
    assert!(
        calls.load(Ordering::Relaxed) < N + rounds * 40_000,
        "{} computed",
        calls.load(Ordering::Relaxed)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_durable_run_starts_with_a_leaf_per_worker() {
    // Before a block has ended, a durable run knows no pace: its first block
    // holds a leaf per worker, so that a kill (or a stop) while it runs
    // loses no more than that. Leaves of 50 items on 2 workers: the first
    // block is items 0..100; stopped in the second, the run has saved it.
    let dir = scratch("first-block");
    let path = dir.join("sum.ckpt");
    let checkpoint = Checkpoint::new(&path, "sum").every(Duration::from_secs(3600));
    let stop = checkpoint.stop_handle();
    let calls = AtomicU64::new(0);
    let job = jobs::sum(|x: u64, _: &()| {
        if calls.fetch_add(1, Ordering::Relaxed) == 150 {
            stop.stop();
        }
        common::float_value(x)
    });
    let stopped = Config::current()
        .with_progress_bars(false)
        .with_leaf_size(50)
        .with_workers(2)
        .scope(|| par_map_reduce_durable(indexed_range(0..N), &(), job, &checkpoint));
    match stopped {
        Err(Error::Stopped { done, .. }) => assert_eq!(done, 100, "the first block was not a leaf per worker"),
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_stop_before_the_run_leaves_a_valid_empty_checkpoint() {
    let dir = scratch("early");
    let path = dir.join("c.ckpt");
    let checkpoint = Checkpoint::new(&path, "count");
    checkpoint.stop_handle().stop();
    let err = quiet(|| {
        par_map_reduce_durable(
            indexed_range(0..1000u64),
            &(),
            jobs::count(|_: &u64, _: &()| true),
            &checkpoint,
        )
    })
    .unwrap_err();
    assert!(matches!(err, Error::Stopped { done: 0, .. }), "{err}");
    let count = quiet(|| {
        par_map_reduce_durable(
            indexed_range(0..1000u64),
            &(),
            jobs::count(|_: &u64, _: &()| true),
            &Checkpoint::new(&path, "count"),
        )
    });
    assert_eq!(count.unwrap(), 1000);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_panic_saves_the_prefix_before_it_and_the_rerun_retries_from_there() {
    let dir = scratch("panic");
    let path = dir.join("sum.ckpt");
    let calls = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&calls);
    let failing = jobs::sum(move |x: u64, _: &()| {
        counted.fetch_add(1, Ordering::Relaxed);
        if x == 150_000 {
            panic!("bad item");
        }
        common::float_value(x)
    });
    let checkpoint = Checkpoint::new(&path, "sum");
    let err = quiet(|| par_map_reduce_durable(indexed_range(0..N), &(), failing, &checkpoint)).unwrap_err();
    assert_eq!(err.index(), Some(150_000), "{err}");
    calls.store(0, Ordering::Relaxed);
    let sum = quiet(|| par_map_reduce_durable(indexed_range(0..N), &(), counted_sum(&calls), &checkpoint)).unwrap();
    assert_eq!(sum.to_bits(), reference().to_bits());
    // The rerun started after a saved prefix, not from 0.
    assert!(
        calls.load(Ordering::Relaxed) < N,
        "{} computed again",
        calls.load(Ordering::Relaxed)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The checkpoint error inside `err`, whose message names its path.
fn checkpoint_error(err: Error) -> CheckpointError {
    match err {
        Error::Checkpoint(err) => {
            let text = err.to_string();
            assert!(text.contains(&err.path().display().to_string()), "{text}");
            err
        }
        other => panic!("not a checkpoint error: {other}"),
    }
}

#[test]
fn a_file_of_another_search_is_refused_and_fresh_starts_over() {
    let dir = scratch("foreign");
    let path = dir.join("c.ckpt");
    let count = |key: &str, len: u64, leaf: usize| {
        Config::current()
            .with_progress_bars(false)
            .with_leaf_size(leaf)
            .scope(|| {
                par_map_reduce_durable(
                    indexed_range(0..len),
                    &(),
                    jobs::count(|_: &u64, _: &()| true),
                    &Checkpoint::new(&path, key),
                )
            })
    };
    assert_eq!(count("a", 1000, 10).unwrap(), 1000);
    let what = |err| match checkpoint_error(err).problem() {
        CheckpointProblem::Mismatch { what, .. } => *what,
        other => panic!("{other:?}"),
    };
    assert_eq!(what(count("b", 1000, 10).unwrap_err()), "key");
    assert_eq!(what(count("a", 999, 10).unwrap_err()), "input");
    assert_eq!(what(count("a", 1000, 20).unwrap_err()), "leaf size");
    let other_type = Config::current()
        .with_progress_bars(false)
        .with_leaf_size(10)
        .scope(|| {
            par_map_reduce_durable(
                indexed_range(0..1000u64),
                &(),
                jobs::sum(|x: u64, _: &()| x as f64),
                &Checkpoint::new(&path, "a"),
            )
        });
    assert_eq!(what(other_type.unwrap_err()), "accumulator type");
    let any_order = Config::current()
        .with_progress_bars(false)
        .with_leaf_size(10)
        .with_deterministic(false)
        .scope(|| {
            par_map_reduce_durable(
                indexed_range(0..1000u64),
                &(),
                jobs::count(|_: &u64, _: &()| true),
                &Checkpoint::new(&path, "a"),
            )
        });
    assert_eq!(what(any_order.unwrap_err()), "mode");
    let fresh = Config::current()
        .with_progress_bars(false)
        .with_leaf_size(10)
        .scope(|| {
            par_map_reduce_durable(
                indexed_range(0..500u64),
                &(),
                jobs::count(|_: &u64, _: &()| true),
                &Checkpoint::new(&path, "b").fresh(true),
            )
        });
    assert_eq!(fresh.unwrap(), 500);
    assert_eq!(count("b", 500, 10).unwrap(), 500);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_second_run_on_one_file_is_refused_while_the_first_runs() {
    let dir = scratch("lock");
    let path = dir.join("c.ckpt");
    let first = Checkpoint::new(&path, "slow");
    let stop = first.stop_handle();
    let started = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&started);
    std::thread::scope(|scope| {
        let running = scope.spawn(|| {
            quiet(|| {
                par_map_reduce_durable(
                    indexed_range(0..u64::MAX / 2),
                    &(),
                    jobs::count(move |_: &u64, _: &()| {
                        seen.fetch_add(1, Ordering::Relaxed);
                        false
                    }),
                    &first,
                )
            })
        });
        while started.load(Ordering::Relaxed) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let second = quiet(|| {
            par_map_reduce_durable(
                indexed_range(0..u64::MAX / 2),
                &(),
                jobs::count(|_: &u64, _: &()| false),
                &Checkpoint::new(&path, "slow"),
            )
        });
        assert!(matches!(
            checkpoint_error(second.unwrap_err()).problem(),
            CheckpointProblem::Locked
        ));
        stop.stop();
        assert!(matches!(running.join().unwrap(), Err(Error::Stopped { .. })));
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unusable_paths_fail_at_the_start() {
    let dir = scratch("paths");
    let count = |path: &Path| {
        quiet(|| {
            par_map_reduce_durable(
                indexed_range(0..10u64),
                &(),
                jobs::count(|_: &u64, _: &()| true),
                &Checkpoint::new(path, "k"),
            )
        })
    };
    assert!(matches!(
        checkpoint_error(count(&dir).unwrap_err()).problem(),
        CheckpointProblem::IsADirectory
    ));
    let missing = dir.join("no such dir").join("c.ckpt");
    let err = count(&missing).unwrap_err();
    assert!(err.to_string().contains("no such dir"), "{err}");
    std::fs::write(dir.join("junk"), b"hello").unwrap();
    assert!(matches!(
        checkpoint_error(count(&dir.join("junk")).unwrap_err()).problem(),
        CheckpointProblem::NotACheckpoint
    ));
    std::fs::write(dir.join("empty"), b"").unwrap();
    assert!(matches!(
        checkpoint_error(count(&dir.join("empty")).unwrap_err()).problem(),
        CheckpointProblem::Truncated
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An iterator of unknown length (its `size_hint` is not exact).
fn unknown_length(n: u64) -> impl Iterator<Item = u64> {
    (0..n).filter(|_| true)
}

#[test]
fn streams_stopped_and_resumed_answer_the_uninterrupted_bits() {
    use mapreduce::durable::par_map_reduce_iter_durable;
    let dir = scratch("stream");
    for exact in [true, false] {
        let path = dir.join(format!("stream-{exact}.ckpt"));
        let input = move || -> Box<dyn Iterator<Item = u64> + Send> {
            if exact {
                Box::new(0..N)
            } else {
                Box::new(unknown_length(N))
            }
        };
        let plain = || jobs::sum(|x: u64, _: &()| common::float_value(x));
        let uninterrupted = Config::current()
            .with_progress_bars(false)
            .scope(|| mapreduce::par_map_reduce_iter(input(), &(), plain()))
            .unwrap();
        let calls = Arc::new(AtomicU64::new(0));
        let mut rounds = 0u64;
        let answer = loop {
            rounds += 1;
            assert!(rounds < 200, "no progress");
            let checkpoint = Checkpoint::new(&path, "stream sum").every(Duration::ZERO);
            let stop = checkpoint.stop_handle();
            let before = calls.load(Ordering::Relaxed);
            let watched = Arc::clone(&calls);
            let job = jobs::sum(move |x: u64, _: &()| {
                if watched.fetch_add(1, Ordering::Relaxed) == before + 25_000 {
                    stop.stop();
                }
                common::float_value(x)
            });
            let workers = 1 + (rounds % 2) as isize;
            let result = Config::current()
                .with_progress_bars(false)
                .with_workers(workers)
                .scope(|| par_map_reduce_iter_durable(input(), &(), job, &checkpoint));
            match result {
                Ok(sum) => break sum,
                Err(Error::Stopped { .. }) => {}
                Err(other) => panic!("{other}"),
            }
        };
        assert!(rounds > 3, "only {rounds} round(s)");
        assert_eq!(answer.to_bits(), uninterrupted.to_bits(), "exact length: {exact}");
        // Done is remembered.
        let again = Config::current().with_progress_bars(false).scope(|| {
            par_map_reduce_iter_durable(input(), &(), counted_sum(&calls), &Checkpoint::new(&path, "stream sum"))
        });
        let computed = calls.load(Ordering::Relaxed);
        assert_eq!(again.unwrap().to_bits(), uninterrupted.to_bits());
        assert_eq!(calls.load(Ordering::Relaxed), computed);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_stream_shorter_than_its_saved_prefix_is_refused() {
    use mapreduce::durable::par_map_reduce_iter_durable;
    let dir = scratch("short");
    let path = dir.join("c.ckpt");
    let checkpoint = Checkpoint::new(&path, "count").every(Duration::ZERO);
    let stop = checkpoint.stop_handle();
    let job = jobs::count(move |x: &u64, _: &()| {
        if *x == 50_000 {
            stop.stop();
        }
        true
    });
    let first = quiet(|| par_map_reduce_iter_durable(unknown_length(100_000), &(), job, &checkpoint));
    let Err(Error::Stopped { done, .. }) = first else {
        panic!("{first:?}")
    };
    assert!(done > 0, "nothing saved");
    let short = quiet(|| {
        par_map_reduce_iter_durable(
            unknown_length(done - 1),
            &(),
            jobs::count(|_: &u64, _: &()| true),
            &Checkpoint::new(&path, "count"),
        )
    });
    let err = checkpoint_error(short.unwrap_err());
    assert!(
        matches!(err.problem(), CheckpointProblem::InputTooShort { .. }),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn what_a_checkpoint_holds_is_readable_before_a_run() {
    let dir = scratch("saved");
    let path = dir.join("c.ckpt");
    let checkpoint = Checkpoint::new(&path, "count").every(Duration::ZERO);
    assert_eq!(checkpoint.saved().unwrap(), None);
    let stop = checkpoint.stop_handle();
    let job = jobs::count(move |x: &u64, _: &()| {
        if *x == 50_000 {
            stop.stop();
        }
        true
    });
    let Err(Error::Stopped { done, .. }) = quiet(|| par_map_reduce_durable(indexed_range(0..N), &(), job, &checkpoint))
    else {
        panic!("not stopped")
    };
    let saved = checkpoint.saved().unwrap().expect("a file");
    assert_eq!(
        (saved.key.as_str(), saved.items, saved.finished),
        ("count", done, false)
    );
    assert!(saved.saved_at.elapsed().unwrap() < Duration::from_secs(3600));
    let again = Checkpoint::new(&path, "count");
    quiet(|| par_map_reduce_durable(indexed_range(0..N), &(), jobs::count(|_: &u64, _: &()| true), &again)).unwrap();
    assert!(again.saved().unwrap().unwrap().finished);
    std::fs::write(&path, b"junk").unwrap();
    assert!(matches!(again.saved(), Err(Error::Checkpoint(_))));
    std::fs::remove_dir_all(&dir).unwrap();
}
