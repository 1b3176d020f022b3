//! The central claim, as properties: with `deterministic` on, parallel runs
//! return exactly what `seq_map_reduce` returns (panics included), for every
//! input kind, worker count and item count; with it off, a shortcircuited
//! answer ends at a `Break` and any other answer is the sequential one.

mod common;

use std::collections::BTreeSet;

use common::{quiet_scripted_panics, Scripted};
use mapreduce::prelude::*;
use proptest::prelude::*;

#[derive(Clone, Copy, Debug)]
enum Input {
    Range,
    Vec,
    /// Unindexed: rayon splits it anywhere, not at item counts.
    Filtered,
    /// Unindexed, nested parallel iterators.
    FlatMapped,
    /// A plain iterator, streamed in batches.
    Streamed,
    /// An indexed input scanned in order, in growing blocks.
    InOrder,
}

fn run(input: Input, len: u64, job: &Scripted) -> Result<Vec<u64>, Error> {
    match input {
        Input::Range => par_map_reduce(0..len, &(), job),
        Input::Vec => par_map_reduce((0..len).collect::<Vec<_>>(), &(), job),
        Input::Filtered => (0..len).into_par_iter().filter(|_| true).map_reduce(&(), job),
        Input::FlatMapped => (0..len.div_ceil(7))
            .into_par_iter()
            .flat_map_iter(|chunk| chunk * 7..(chunk * 7 + 7).min(len))
            .map_reduce(&(), job),
        Input::Streamed => par_map_reduce_iter(0..len, &(), job),
        Input::InOrder => (0..len as usize)
            .into_par_iter()
            .map(|x| x as u64)
            .map_reduce_in_order(&(), job),
    }
}

/// What a run is compared on: the answer, or the panic's item and message.
#[derive(Debug, PartialEq)]
enum Outcome {
    Answer(Vec<u64>),
    Panicked { index: Option<usize>, message: String },
    Other(String),
}

/// A run's outcome, comparable with the sequential one for `input` (whose
/// unindexed kinds cannot name a panicking item).
fn outcome(result: Result<Vec<u64>, Error>, input: Input) -> Outcome {
    let index_known = !matches!(input, Input::Filtered | Input::FlatMapped);
    match result {
        Ok(acc) => Outcome::Answer(acc),
        Err(Error::Panicked { index, message, .. }) => Outcome::Panicked {
            index: index.filter(|_| index_known),
            message,
        },
        Err(other) => Outcome::Other(other.to_string()),
    }
}

/// What `seq_map_reduce` gives, as a run over `input` should report it.
fn sequential_outcome(len: u64, job: &Scripted, input: Input) -> Outcome {
    outcome(seq_map_reduce(0..len, &(), job), input)
}

fn events(max: u64) -> impl Strategy<Value = BTreeSet<u64>> {
    prop_oneof![
        3 => Just(BTreeSet::new()),
        2 => proptest::collection::btree_set(0..max, 1..4),
    ]
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        Just(Input::Range),
        Just(Input::Vec),
        Just(Input::Filtered),
        Just(Input::FlatMapped),
        Just(Input::Streamed),
        Just(Input::InOrder),
    ]
}

fn case() -> impl Strategy<Value = (u64, Scripted, isize, Input)> {
    prop_oneof![0..8u64, 0..3000u64].prop_flat_map(|len| {
        let max = len.max(1) + len / 8; // some events beyond the end
        (
            Just(len),
            (events(max), events(max), events(max)).prop_map(|(breaks, compute_panics, process_panics)| Scripted {
                breaks,
                compute_panics,
                process_panics,
            }),
            1..=8isize,
            input(),
        )
    })
}

proptest! {
    // 400 cases each by default; PROPTEST_CASES=20000 for a soak run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(400),
        ..ProptestConfig::default()
    })]

    #[test]
    fn deterministic_parallel_equals_sequential((len, job, workers, input) in case()) {
        quiet_scripted_panics();
        let config = Config::current().with_workers(workers).with_progress_bars(false).with_deterministic(true);
        let found = config.scope(|| run(input, len, &job));
        prop_assert_eq!(outcome(found, input), sequential_outcome(len, &job, input));
    }

    #[test]
    fn any_order_answer_ends_at_a_break_or_equals_sequential((len, job, workers, input) in case()) {
        quiet_scripted_panics();
        let expected = seq_map_reduce(0..len, &(), &job);
        let config = Config::current().with_workers(workers).with_progress_bars(false).with_deterministic(false);
        match config.scope(|| run(input, len, &job)) {
            Ok(acc) => {
                let sequential = expected.as_ref().ok();
                prop_assert!(
                    job.ends_at_break(&acc) || sequential == Some(&acc),
                    "any-order answer {:?}, sequential {:?}", acc, expected
                );
            }
            Err(Error::Panicked { message, .. }) => {
                let item: u64 = message.rsplit(' ').next().unwrap().parse().unwrap();
                prop_assert!(job.compute_panics.contains(&item) || job.process_panics.contains(&item), "{}", message);
                prop_assert!(item < len);
            }
            Err(other) => prop_assert!(false, "unexpected error {}", other),
        }
    }

    #[test]
    fn sequential_config_equals_sequential((len, job, _workers, input) in case()) {
        quiet_scripted_panics();
        let found = Config::current().with_parallel(false).scope(|| run(input, len, &job));
        prop_assert_eq!(outcome(found, input), sequential_outcome(len, &job, input));
    }
}

#[test]
fn empty_input_gives_the_empty_result_everywhere() {
    let job = Scripted::default();
    for input in [
        Input::Range,
        Input::Vec,
        Input::Filtered,
        Input::FlatMapped,
        Input::Streamed,
    ] {
        assert_eq!(run(input, 0, &job).unwrap(), Vec::<u64>::new());
    }
}

#[test]
fn break_left_of_panic_wins_and_panic_left_of_break_wins() {
    quiet_scripted_panics();
    let job = Scripted {
        breaks: [500].into(),
        compute_panics: [20_000].into(),
        ..Scripted::default()
    };
    let acc = par_map_reduce(0..50_000u64, &(), &job).unwrap();
    assert_eq!(acc, (0..=500).collect::<Vec<_>>());
    let job = Scripted {
        breaks: [40_000].into(),
        compute_panics: [30_000, 45_000].into(),
        process_panics: [35_000].into(),
    };
    let err = par_map_reduce(0..50_000u64, &(), &job).unwrap_err();
    assert_eq!(err.index(), Some(30_000), "{err}");
}

#[test]
fn exponential_blocks_keep_the_sequential_answer() {
    quiet_scripted_panics();
    let job = Scripted {
        breaks: [40_000, 70_000].into(),
        compute_panics: [90_000].into(),
        ..Scripted::default()
    };
    let expected = seq_map_reduce(0..100_000u64, &(), &job).unwrap();
    for workers in [1, 2, 8] {
        let found = Config::current().with_workers(workers).scope(|| {
            (0..100_000usize)
                .into_par_iter()
                .map(|x| x as u64)
                .by_exponential_blocks()
                .map_reduce(&(), &job)
                .unwrap()
        });
        assert_eq!(found, expected);
    }
}
