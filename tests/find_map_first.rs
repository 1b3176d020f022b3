//! `jobs::find_map_first`: the first `Some` in input order, the same in
//! parallel as in sequence, panics left of the match included and panics
//! right of it never reached.

mod common;

use common::{quiet_scripted_panics, SCRIPTED};
use mapreduce::prelude::*;

const ITEMS: u64 = 200_000;

/// `Some((item, item²))` at the items in `hits`; panics at `panic_at`.
fn search(hits: &'static [u64], panic_at: Option<u64>) -> impl Fn(u64, &()) -> Option<(u64, u64)> + Sync {
    move |x: u64, _: &()| {
        assert!(Some(x) != panic_at, "{SCRIPTED} at {x}");
        hits.contains(&x).then_some((x, x * x))
    }
}

/// A run's answer: the first hit and its square.
type Answer = Result<Option<(u64, u64)>, Error>;

/// The job's answer over each entry point and input kind, on 1 and 2 workers.
fn every_run(f: &(impl Fn(u64, &()) -> Option<(u64, u64)> + Sync)) -> Vec<(String, Answer)> {
    let job = jobs::find_map_first(f);
    let mut runs = Vec::new();
    for workers in [1, 2] {
        let config = Config::current().with_workers(workers).with_progress_bars(false);
        let run =
            |name: &str, result: Result<Option<(u64, u64)>, Error>| (format!("{name}, {workers} workers"), result);
        runs.push(run(
            "range",
            config.clone().scope(|| par_map_reduce(0..ITEMS, &(), &job)),
        ));
        runs.push(run(
            "filtered",
            config
                .clone()
                .scope(|| (0..ITEMS).into_par_iter().filter(|_| true).map_reduce(&(), &job)),
        ));
        runs.push(run(
            "in order",
            config
                .clone()
                .scope(|| par_map_reduce_in_order(indexed_range(0..ITEMS), &(), &job)),
        ));
        runs.push(run("stream", config.scope(|| par_map_reduce_iter(0..ITEMS, &(), &job))));
    }
    runs
}

#[test]
fn parallel_equals_sequential_with_and_without_a_match() {
    let cases: [&'static [u64]; 5] = [&[], &[0], &[ITEMS - 1], &[150_001, 3, 99_999], &[77_777, 77_778]];
    for hits in cases {
        let f = search(hits, None);
        let sequential = seq_map_reduce(0..ITEMS, &(), jobs::find_map_first(&f)).unwrap();
        let first = hits.iter().min().map(|&x| (x, x * x));
        assert_eq!(sequential, first, "{hits:?}");
        for (name, found) in every_run(&f) {
            assert_eq!(found.unwrap(), first, "{name}, hits {hits:?}");
        }
    }
}

#[test]
fn a_panic_right_of_the_match_is_never_reached() {
    quiet_scripted_panics();
    let f = search(&[1000], Some(150_000));
    for (name, found) in every_run(&f) {
        assert_eq!(found.unwrap(), Some((1000, 1_000_000)), "{name}");
    }
}

#[test]
fn a_panic_left_of_the_match_fails_the_run() {
    quiet_scripted_panics();
    let f = search(&[150_000], Some(1000));
    assert!(seq_map_reduce(0..ITEMS, &(), jobs::find_map_first(&f)).is_err());
    for (name, found) in every_run(&f) {
        match found {
            Err(Error::Panicked { message, .. }) => assert_eq!(message, format!("{SCRIPTED} at 1000"), "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}
