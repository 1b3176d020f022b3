//! Reproducible reductions: the in-order entry points give the same bits for
//! any worker count, any run, bars on or off, in parallel or not, equal to
//! the documented tree evaluated on one worker (written out again here, from
//! the docs, as the reference).

mod common;

use std::ops::ControlFlow::{self, Break, Continue};

use common::{quiet_scripted_panics, FloatSum, SCRIPTED};
use mapreduce::prelude::*;
use proptest::prelude::*;

/// The documented tree on one worker: leaves of `leaf` items folded left to
/// right; the binary-counter stack (equal heights merged as they complete);
/// at the first `Break` or panic, the event's piece on top and the stack
/// collapsed left to right, where a `Break` found wins over a panic.
/// A panic is reported with its item, when an item's (`None`: a merge's).
fn reference<J: MapReduce<u64>>(
    job: &J,
    items: &[u64],
    leaf: usize,
) -> Result<ControlFlow<J::Acc, J::Acc>, Option<u64>> {
    reference_with(job, items, |_| leaf)
}

/// [`reference`] with leaf `j` holding `leaf_len(j)` items.
fn reference_with<J: MapReduce<u64>>(
    job: &J,
    items: &[u64],
    leaf_len: impl Fn(usize) -> usize,
) -> Result<ControlFlow<J::Acc, J::Acc>, Option<u64>> {
    enum Ended {
        Break,
        Panic(Option<u64>),
    }
    let mut stack: Vec<(u32, J::Acc)> = Vec::new();
    let mut ended = None;
    let catch = |f: &mut dyn FnMut() -> ControlFlow<J::Acc, J::Acc>| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(drop)
    };
    let mut chunks = Vec::new();
    let mut rest = items;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(leaf_len(chunks.len()).max(1).min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    'leaves: for chunk in chunks {
        let mut acc = Some(job.empty_result(&()));
        for &item in chunk {
            let output = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.compute(item, &()))) {
                Ok(output) => output,
                Err(_) => {
                    // The leaf's items before the panic stay, as the prefix.
                    stack.push((0, acc.take().unwrap()));
                    ended = Some(Ended::Panic(Some(item)));
                    break 'leaves;
                }
            };
            let before = acc.take().unwrap();
            let mut call = Some((output, before));
            match catch(&mut || {
                let (output, before) = call.take().unwrap();
                job.process_result(output, before)
            }) {
                Ok(Continue(next)) => acc = Some(next),
                Ok(Break(last)) => {
                    stack.push((0, last));
                    ended = Some(Ended::Break);
                    break 'leaves;
                }
                Err(()) => {
                    ended = Some(Ended::Panic(Some(item)));
                    break 'leaves;
                }
            }
        }
        stack.push((0, acc.unwrap()));
        while let [.., (lower, _), (upper, _)] = stack[..] {
            if lower != upper {
                break;
            }
            let (_, right) = stack.pop().unwrap();
            let (_, left) = stack.pop().unwrap();
            let mut call = Some((left, right));
            match catch(&mut || {
                let (left, right) = call.take().unwrap();
                job.merge(left, right)
            }) {
                Ok(Continue(merged)) => stack.push((lower + 1, merged)),
                Ok(Break(merged)) => {
                    stack.push((lower + 1, merged));
                    ended = Some(Ended::Break);
                    break 'leaves;
                }
                Err(()) => {
                    ended = Some(Ended::Panic(None));
                    break 'leaves;
                }
            }
        }
    }
    let mut pieces = stack.into_iter().map(|(_, acc)| acc);
    let Some(mut acc) = pieces.next() else {
        return match ended {
            Some(Ended::Panic(index)) => Err(index),
            _ => Ok(Continue(job.empty_result(&()))),
        };
    };
    for next in pieces {
        let mut call = Some((acc, next));
        match catch(&mut || {
            let (acc, next) = call.take().unwrap();
            job.merge(acc, next)
        }) {
            Ok(Continue(merged)) => acc = merged,
            Ok(Break(merged)) => return Ok(Break(merged)),
            Err(()) => return Err(None),
        }
    }
    match ended {
        None => Ok(Continue(acc)),
        Some(Ended::Break) => Ok(Break(acc)),
        Some(Ended::Panic(index)) => Err(index),
    }
}

fn bits(result: Result<f64, Error>) -> u64 {
    result.unwrap().to_bits()
}

fn in_order_with(workers: isize, leaf: usize, items: &[u64], job: &FloatSum) -> Result<f64, Error> {
    Config::current()
        .with_workers(workers)
        .with_oversubscription(true)
        .with_leaf_size(leaf)
        .with_progress_bars(false)
        .scope(|| par_map_reduce_in_order(items.to_vec(), &(), job))
}

#[test]
fn one_bit_pattern_for_any_worker_count() {
    let items: Vec<u64> = (0..100_000).collect();
    for leaf in [0, 1, 7, 64, 1000] {
        let job = FloatSum {
            stop_above: f64::INFINITY,
            delay_every: None,
        };
        let leaf_size = if leaf == 0 {
            (items.len() / 1024).clamp(1, 16_384)
        } else {
            leaf
        };
        let expected = match reference(&job, &items, leaf_size).unwrap() {
            Continue(acc) | Break(acc) => acc.to_bits(),
        };
        for workers in [1, 2, 3, 4, 8, 16] {
            assert_eq!(
                bits(in_order_with(workers, leaf, &items, &job)),
                expected,
                "{workers} workers, leaf {leaf}"
            );
        }
        let sequential = Config::current()
            .with_parallel(false)
            .with_leaf_size(leaf)
            .with_progress_bars(false)
            .scope(|| par_map_reduce_in_order(items.clone(), &(), &job));
        assert_eq!(bits(sequential), expected, "parallel off, leaf {leaf}");
    }
}

#[test]
fn one_bit_pattern_when_scheduling_is_perturbed() {
    let items: Vec<u64> = (0..20_000).collect();
    let job = FloatSum {
        stop_above: f64::INFINITY,
        delay_every: Some(97),
    };
    let expected = match reference(&job, &items, 50).unwrap() {
        Continue(acc) | Break(acc) => acc.to_bits(),
    };
    for round in 0..20 {
        for workers in [1, 2, 3, 4, 8, 16] {
            assert_eq!(
                bits(in_order_with(workers, 50, &items, &job)),
                expected,
                "{workers} workers, round {round}"
            );
        }
    }
}

#[test]
fn a_break_gives_the_one_worker_trees_answer() {
    let items: Vec<u64> = (0..30_000).collect();
    for stop_above in [3.0, 40.0, 400.0, 4e3] {
        let job = FloatSum {
            stop_above,
            delay_every: None,
        };
        for leaf in [1, 16, 333] {
            let expected = reference(&job, &items, leaf).unwrap();
            for workers in [1, 2, 4, 8] {
                let found = in_order_with(workers, leaf, &items, &job).unwrap();
                let (Continue(acc) | Break(acc)) = expected;
                assert_eq!(
                    found.to_bits(),
                    acc.to_bits(),
                    "stop above {stop_above}, leaf {leaf}, {workers} workers"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random lengths (0, 1, leaf boundaries ±1, up to 10^4), leaf sizes,
    /// breaks and panics: every worker count gives the one-worker tree.
    #[test]
    fn parallel_equals_the_one_worker_tree(
        len in prop_oneof![Just(0usize), Just(1), 0usize..200, 0usize..10_000, 0usize..100_000],
        leaf in prop_oneof![Just(1usize), 1usize..40, 40usize..2000],
        boundary in prop_oneof![Just(None), (0usize..4, 0usize..3).prop_map(Some)],
        breaks in proptest::collection::btree_set(0u64..10_000, 0..3),
        panics in proptest::collection::btree_set(0u64..10_000, 0..2),
        workers in 1isize..6,
        deterministic in Just(true),
    ) {
        quiet_scripted_panics();
        // Lengths right at leaf boundaries, ±1.
        let len = match boundary {
            Some((leaves, offset)) => (leaves * leaf + offset).saturating_sub(1),
            None => len,
        };
        let items: Vec<u64> = (0..len as u64).collect();
        let job = common::Scripted {
            breaks: breaks.clone(),
            compute_panics: panics.clone(),
            ..Default::default()
        };
        let expected = reference(&job, &items, leaf);
        let found = Config::current()
            .with_workers(workers)
            .with_oversubscription(true)
            .with_leaf_size(leaf)
            .with_deterministic(deterministic)
            .with_progress_bars(false)
            .scope(|| par_map_reduce_in_order(items.clone(), &(), &job));
        match (found, expected) {
            (Ok(found), Ok(Continue(acc) | Break(acc))) => prop_assert_eq!(found, acc),
            (Err(err @ Error::Panicked { .. }), Err(index)) => {
                prop_assert_eq!(err.index().map(|i| i as u64), index);
                prop_assert!(err.to_string().contains(SCRIPTED));
            }
            (found, expected) => prop_assert!(false, "found {:?}, reference {:?}", found, expected.map(|_| ())),
        }
    }
}

/// Leaf `j` of a stream of unknown length (documented on
/// `par_map_reduce_iter`): 1 item each for the first 16, doubling every 16
/// leaves, up to 16,384.
fn growing_leaf(j: usize) -> usize {
    1 << (j / 16).min(14)
}

fn stream_with(
    workers: isize,
    leaf: usize,
    buffer: usize,
    len: u64,
    exact: bool,
    job: &FloatSum,
) -> Result<f64, Error> {
    let config = Config::current()
        .with_workers(workers)
        .with_oversubscription(true)
        .with_leaf_size(leaf)
        .with_stream_buffer(buffer)
        .with_progress_bars(false);
    if exact {
        config.scope(|| par_map_reduce_iter(0..len, &(), job))
    } else {
        // A `filter` knows no exact length.
        config.scope(|| par_map_reduce_iter((0..len).filter(|_| true), &(), job))
    }
}

#[test]
fn streams_give_the_in_order_bits_whatever_their_batches() {
    let items: Vec<u64> = (0..60_000).collect();
    for stop_above in [f64::INFINITY, 50.0] {
        let job = FloatSum {
            stop_above,
            delay_every: None,
        };
        for leaf in [0, 1, 7, 1000] {
            let expected = bits(in_order_with(1, leaf, &items, &job));
            for workers in [1, 2, 3, 8] {
                // Small buffers cut leaves across batches.
                for buffer in [0, 1, 7, 1500] {
                    let found = stream_with(workers, leaf, buffer, 60_000, true, &job);
                    assert_eq!(
                        bits(found),
                        expected,
                        "leaf {leaf}, {workers} workers, buffer {buffer}, stop above {stop_above}"
                    );
                }
            }
            let sequential = Config::current()
                .with_parallel(false)
                .with_leaf_size(leaf)
                .with_progress_bars(false)
                .scope(|| par_map_reduce_iter(0..60_000u64, &(), &job));
            assert_eq!(bits(sequential), expected, "parallel off, leaf {leaf}");
        }
    }
}

#[test]
fn streams_of_unknown_length_grow_their_leaves() {
    let items: Vec<u64> = (0..200_000).collect();
    for stop_above in [f64::INFINITY, 80.0] {
        let job = FloatSum {
            stop_above,
            delay_every: None,
        };
        let expected = match reference_with(&job, &items, growing_leaf).unwrap() {
            Continue(acc) | Break(acc) => acc.to_bits(),
        };
        for (workers, buffer) in [(1, 0), (2, 0), (3, 64), (8, 5)] {
            let found = stream_with(workers, 0, buffer, 200_000, false, &job);
            assert_eq!(
                bits(found),
                expected,
                "{workers} workers, buffer {buffer}, stop above {stop_above}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Streams: random lengths, leaf sizes, stream buffers, breaks and
    /// panics give the one-worker tree.
    #[test]
    fn streams_equal_the_one_worker_tree(
        len in prop_oneof![Just(0u64), Just(1), 0u64..300, 0u64..6000],
        leaf in prop_oneof![Just(0usize), Just(1), 1usize..40, 40usize..700],
        buffer in prop_oneof![Just(0usize), 1usize..20, 20usize..500],
        breaks in proptest::collection::btree_set(0u64..6000, 0..3),
        panics in proptest::collection::btree_set(0u64..6000, 0..2),
        workers in 1isize..5,
    ) {
        quiet_scripted_panics();
        let items: Vec<u64> = (0..len).collect();
        let job = common::Scripted {
            breaks: breaks.clone(),
            compute_panics: panics.clone(),
            ..Default::default()
        };
        let leaf_size = if leaf == 0 { (len as usize / 1024).clamp(1, 16_384) } else { leaf };
        let expected = reference(&job, &items, leaf_size);
        let found = Config::current()
            .with_workers(workers)
            .with_oversubscription(true)
            .with_leaf_size(leaf)
            .with_stream_buffer(buffer)
            .with_progress_bars(false)
            .scope(|| par_map_reduce_iter(0..len, &(), &job));
        match (found, expected) {
            (Ok(found), Ok(Continue(acc) | Break(acc))) => prop_assert_eq!(found, acc),
            (Err(err @ Error::Panicked { .. }), Err(index)) => {
                prop_assert_eq!(err.index().map(|i| i as u64), index);
            }
            (found, expected) => prop_assert!(false, "found {:?}, reference {:?}", found, expected.map(|_| ())),
        }
    }
}

/// Hears nothing in particular: its presence makes runs watched.
struct Watching;

impl mapreduce::ProgressSink for Watching {}

/// The answer of `job` over `0..n` through every reproducible entry point,
/// worker count and display, as comparable bits.
fn every_way<J, K>(n: u64, job: &J, key: impl Fn(J::Acc) -> K) -> Vec<(String, K)>
where
    J: MapReduce<u64>,
{
    let mut found = Vec::new();
    for workers in [1, 2, 3, 8] {
        for watched in [false, true] {
            let mut config = Config::current()
                .with_workers(workers)
                .with_oversubscription(true)
                .with_progress_bars(false);
            if watched {
                config = config.with_progress_sink(std::sync::Arc::new(Watching));
            }
            let label = format!("{workers} workers, watched {watched}");
            let in_order = config
                .clone()
                .scope(|| par_map_reduce_in_order(indexed_range(0..n), &(), job));
            found.push((format!("in order, {label}"), key(in_order.unwrap())));
            let streamed = config.scope(|| par_map_reduce_iter(0..n, &(), job));
            found.push((format!("streamed, {label}"), key(streamed.unwrap())));
        }
    }
    found
}

fn assert_all_equal<K: PartialEq + std::fmt::Debug>(found: Vec<(String, K)>) {
    let (first_label, first) = &found[0];
    for (label, value) in &found[1..] {
        assert_eq!(value, first, "{label} differs from {first_label}");
    }
}

#[test]
fn the_same_bits_watched_or_not_for_every_kind_of_accumulator() {
    let n = 50_000;
    let sum = FloatSum {
        stop_above: f64::INFINITY,
        delay_every: Some(4999),
    };
    assert_all_equal(every_way(n, &sum, f64::to_bits));
    // A float minimum with many ties: the leftmost wins, the same one always.
    let min = jobs::min_by_key(|i: u64, _: &()| ((common::float_value(i) * 4.0).round(), i));
    assert_all_equal(every_way(n, &min, |best| best.map(|(key, item)| (key.to_bits(), item))));
    // A `Vec` accumulator.
    let collect = jobs::collect(|i: u64, _: &()| common::float_value(i).to_bits());
    assert_all_equal(every_way(n, &collect, |all| all));
}

/// [`FloatSum`] with a little work per item and scripted panics, that notes
/// whether the calling thread computed any item (folding in place).
struct InPlace {
    sum: FloatSum,
    compute_panic: Option<u64>,
    caller: std::thread::ThreadId,
    caller_computed: std::sync::atomic::AtomicBool,
}

impl MapReduce<u64> for InPlace {
    type Output = f64;
    type Acc = f64;

    fn empty_result(&self, ctx: &()) -> f64 {
        self.sum.empty_result(ctx)
    }
    fn compute(&self, item: u64, ctx: &()) -> f64 {
        if std::thread::current().id() == self.caller {
            self.caller_computed.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if self.compute_panic == Some(item) {
            panic!("{SCRIPTED} in compute at {item}");
        }
        // About a microsecond: the pool stays busy while the caller reads.
        let mut x = item;
        for _ in 0..100 {
            x = std::hint::black_box(x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(7));
        }
        std::hint::black_box(x);
        self.sum.compute(item, ctx)
    }
    fn process_result(&self, new: f64, acc: f64) -> ControlFlow<f64, f64> {
        self.sum.process_result(new, acc)
    }
    fn merge(&self, left: f64, right: f64) -> ControlFlow<f64, f64> {
        self.sum.merge(left, right)
    }
}

#[test]
fn the_calling_thread_folds_leaves_in_place_with_the_same_bits() {
    quiet_scripted_panics();
    const LEN: u64 = 200_000;
    let mut caller_folded = false;
    for leaf in [0, 1, 100, 5000] {
        for (stop_above, compute_panic, input_panic) in [
            (f64::INFINITY, None, None),
            (50.0, None, None),
            (f64::INFINITY, Some(150_001), None),
            (f64::INFINITY, None, Some(120_003)),
            (f64::INFINITY, Some(170_000), Some(120_003)),
        ] {
            let job = InPlace {
                sum: FloatSum {
                    stop_above,
                    delay_every: None,
                },
                compute_panic,
                caller: std::thread::current().id(),
                caller_computed: Default::default(),
            };
            let run = |parallel: bool, exact: bool| {
                let items = (0..LEN).inspect(move |&item| {
                    if Some(item) == input_panic {
                        panic!("{SCRIPTED} in the input at {item}");
                    }
                });
                let config = Config::current()
                    .with_workers(2)
                    .with_parallel(parallel)
                    .with_leaf_size(leaf)
                    .with_progress_bars(false);
                let result = match exact {
                    true => config.scope(|| par_map_reduce_iter(items, &(), &job)),
                    false => config.scope(|| par_map_reduce_iter(items.filter(|_| true), &(), &job)),
                };
                result.map(f64::to_bits).map_err(|err| (err.index(), err.to_string()))
            };
            for exact in [true, false] {
                let expected = run(false, exact);
                job.caller_computed.store(false, std::sync::atomic::Ordering::Relaxed);
                let found = run(true, exact);
                assert_eq!(
                    found, expected,
                    "leaf {leaf}, exact {exact}, stop above {stop_above}, panics {compute_panic:?} {input_panic:?}"
                );
                caller_folded |= job.caller_computed.load(std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
    assert!(caller_folded, "the calling thread never folded in place");
}
