//! PyPhi 1.2's `test_parallel.py`, ported: the worker-count rule, a
//! map-square job run in parallel and sequentially, and a failing task whose
//! message surfaces.

use std::collections::HashSet;
use std::ops::ControlFlow::{self, Continue};

use mapreduce::{par_map_reduce, seq_map_reduce, Config, ConfigError, Error, MapReduce};

#[test]
fn num_workers_number_of_cores_cant_be_0() {
    assert_eq!(Config::resolve_workers(0, 2), Err(ConfigError::ZeroWorkers));
    let err = Config::current()
        .with_workers(0)
        .scope(|| par_map_reduce(0..4u64, &(), MapSquare))
        .unwrap_err();
    assert!(matches!(err, Error::Config(ConfigError::ZeroWorkers)), "{err}");
}

#[test]
fn num_workers_with_negative_number_of_cores() {
    assert_eq!(Config::resolve_workers(-1, 2), Ok(2));
    assert_eq!(Config::resolve_workers(-2, 2), Ok(1));
}

#[test]
fn num_workers_with_too_negative_number_of_cores() {
    assert_eq!(
        Config::resolve_workers(-3, 2),
        Err(ConfigError::TooNegative {
            requested: -3,
            available: 2
        })
    );
    let too_negative = -(std::thread::available_parallelism().unwrap().get() as isize) - 1;
    let err = Config::current()
        .with_workers(too_negative)
        .scope(|| par_map_reduce(0..4u64, &(), MapSquare))
        .unwrap_err();
    assert!(matches!(err, Error::Config(ConfigError::TooNegative { .. })), "{err}");
}

#[test]
fn num_workers_more_than_available_is_clamped() {
    assert_eq!(Config::resolve_workers(3, 2), Ok(2));
    let cores = std::thread::available_parallelism().unwrap().get();
    let config = Config::current().with_workers(cores as isize + 5);
    assert_eq!(config.num_workers(), Ok(cores));
    let threads = config.scope(|| par_map_reduce(0..4u64, &(), Threads)).unwrap();
    assert_eq!(threads, cores);
}

/// PyPhi's MapSquare: squares collected into a set.
struct MapSquare;

impl MapReduce<u64> for MapSquare {
    type Output = u64;
    type Acc = HashSet<u64>;

    fn empty_result(&self, _: &()) -> HashSet<u64> {
        HashSet::new()
    }
    fn compute(&self, x: u64, _: &()) -> u64 {
        x * x
    }
    fn process_result(&self, new: u64, mut acc: HashSet<u64>) -> ControlFlow<HashSet<u64>, HashSet<u64>> {
        acc.insert(new);
        Continue(acc)
    }
    fn merge(&self, mut left: HashSet<u64>, right: HashSet<u64>) -> ControlFlow<HashSet<u64>, HashSet<u64>> {
        left.extend(right);
        Continue(left)
    }
}

/// How many threads the pool running the items has.
struct Threads;

impl MapReduce<u64> for Threads {
    type Output = usize;
    type Acc = usize;

    fn empty_result(&self, _: &()) -> usize {
        0
    }
    fn compute(&self, _: u64, _: &()) -> usize {
        rayon::current_num_threads()
    }
    fn process_result(&self, new: usize, acc: usize) -> ControlFlow<usize, usize> {
        Continue(acc.max(new))
    }
    fn merge(&self, left: usize, right: usize) -> ControlFlow<usize, usize> {
        Continue(left.max(right))
    }
}

fn squares() -> HashSet<u64> {
    [0, 1, 4, 9, 16, 25, 36, 49, 64, 81].into_iter().collect()
}

#[test]
fn map_square_parallel() {
    let result = Config::current()
        .with_parallel(true)
        .scope(|| par_map_reduce(0..10u64, &(), MapSquare));
    assert_eq!(result.unwrap(), squares());
}

#[test]
fn map_square_sequential() {
    let result = Config::current()
        .with_parallel(false)
        .scope(|| par_map_reduce(0..10u64, &(), MapSquare));
    assert_eq!(result.unwrap(), squares());
    assert_eq!(seq_map_reduce(0..10u64, &(), MapSquare).unwrap(), squares());
}

/// PyPhi's failing-task test: a panicking task
/// surfaces its message, in parallel and sequentially.
struct Fails;

impl MapReduce<u64> for Fails {
    type Output = u64;
    type Acc = u64;

    fn empty_result(&self, _: &()) -> u64 {
        0
    }
    fn compute(&self, x: u64, _: &()) -> u64 {
        if x == 3 {
            panic!("This is a test");
        }
        x
    }
    fn process_result(&self, new: u64, acc: u64) -> ControlFlow<u64, u64> {
        Continue(acc + new)
    }
    fn merge(&self, left: u64, right: u64) -> ControlFlow<u64, u64> {
        Continue(left + right)
    }
}

#[test]
fn task_panic_surfaces_its_message_in_parallel_and_sequentially() {
    for parallel in [true, false] {
        let err = Config::current()
            .with_parallel(parallel)
            .scope(|| par_map_reduce(0..10u64, &(), Fails))
            .unwrap_err();
        match &err {
            Error::Panicked { index, message, .. } => {
                assert_eq!(*index, Some(3));
                assert_eq!(message, "This is a test");
            }
            other => panic!("expected a panic error, got {other:?}"),
        }
        assert!(err.to_string().contains("This is a test"));
    }
    let err = seq_map_reduce(0..10u64, &(), Fails).unwrap_err();
    assert_eq!(err.to_string(), "task panicked at item 3: This is a test");
}
