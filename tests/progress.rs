//! Progress as a `ProgressSink` sees it: exact final counts, updates that
//! keep flowing during slow runs, unknown lengths, nested runs silent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mapreduce::prelude::*;
use mapreduce::{Outcome, ProgressSink};

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
}

#[derive(Clone, Debug, PartialEq)]
enum Event {
    Start(String, Option<u64>),
    Update(u64),
    Finish(u64, Outcome),
}

impl ProgressSink for Recorder {
    fn start(&self, description: &str, total: Option<u64>) {
        self.events
            .lock()
            .unwrap()
            .push(Event::Start(description.to_owned(), total));
    }
    fn update(&self, done: u64) {
        self.events.lock().unwrap().push(Event::Update(done));
    }
    fn finish(&self, done: u64, outcome: Outcome) {
        self.events.lock().unwrap().push(Event::Finish(done, outcome));
    }
}

impl Recorder {
    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
    fn updates(&self) -> Vec<u64> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Update(n) => Some(n),
                _ => None,
            })
            .collect()
    }
}

fn watched(recorder: &Arc<Recorder>, workers: isize) -> Config {
    Config::current()
        .with_workers(workers)
        .with_progress_sink(recorder.clone())
}

#[test]
fn final_count_is_exact_with_1_2_and_8_workers() {
    for workers in [1, 2, 8] {
        for n in [0u64, 1, 1000, 3_000_000] {
            let recorder = Arc::new(Recorder::default());
            let job = jobs::described("Summing", jobs::sum(|x: u64, _: &()| x));
            let total = watched(&recorder, workers)
                .scope(|| par_map_reduce(0..n, &(), &job))
                .unwrap();
            assert_eq!(total, (0..n).sum::<u64>());
            let events = recorder.events();
            assert_eq!(events.first(), Some(&Event::Start("Summing".into(), Some(n))));
            assert_eq!(
                events.last(),
                Some(&Event::Finish(n, Outcome::Completed)),
                "workers {workers}, n {n}"
            );
            let updates = recorder.updates();
            assert!(
                updates.windows(2).all(|w| w[0] <= w[1]),
                "counts only grow: {updates:?}"
            );
        }
    }
}

#[test]
fn streamed_runs_count_exactly_and_know_exact_lengths() {
    let recorder = Arc::new(Recorder::default());
    let job = jobs::count(|_: &u64, _: &()| true);
    let n = watched(&recorder, 2)
        .scope(|| par_map_reduce_iter(0..100_000u64, &(), &job))
        .unwrap();
    assert_eq!(n, 100_000);
    let events = recorder.events();
    assert_eq!(events.first(), Some(&Event::Start(String::new(), Some(100_000))));
    assert_eq!(events.last(), Some(&Event::Finish(100_000, Outcome::Completed)));
}

#[test]
fn unknown_lengths_report_no_total() {
    let recorder = Arc::new(Recorder::default());
    let job = jobs::count(|_: &u64, _: &()| true);
    let evens = watched(&recorder, 2)
        .scope(|| {
            (0..10_000u64)
                .into_par_iter()
                .filter(|x| x % 2 == 0)
                .map_reduce(&(), &job)
        })
        .unwrap();
    assert_eq!(evens, 5000);
    assert_eq!(recorder.events().first(), Some(&Event::Start(String::new(), None)));
    assert_eq!(recorder.events().last(), Some(&Event::Finish(5000, Outcome::Completed)));

    let recorder = Arc::new(Recorder::default());
    let endless = (0u64..).filter(|_| true);
    let found = watched(&recorder, 2)
        .scope(|| par_map_reduce_iter(endless, &(), jobs::find_first(|x: &u64, _: &()| *x == 50_000)))
        .unwrap();
    assert_eq!(found, Some(50_000));
    assert_eq!(recorder.events().first(), Some(&Event::Start(String::new(), None)));
    assert!(matches!(
        recorder.events().last(),
        Some(Event::Finish(_, Outcome::Shortcircuited))
    ));
}

#[test]
fn updates_keep_flowing_during_a_run_of_slow_items() {
    // 24 items of 50 ms on 2 workers: ~600 ms; updates come every 100 ms.
    let recorder = Arc::new(Recorder::default());
    let job = jobs::count(|_: &u64, _: &()| {
        std::thread::sleep(Duration::from_millis(50));
        true
    });
    watched(&recorder, 2)
        .scope(|| par_map_reduce(0..24u64, &(), &job))
        .unwrap();
    let updates = recorder.updates();
    assert!(updates.len() >= 3, "too few updates: {updates:?}");
    let distinct: std::collections::BTreeSet<_> = updates.iter().collect();
    assert!(
        distinct.len() >= 3,
        "the count did not move while items ran: {updates:?}"
    );
    assert!(
        updates.iter().any(|&n| n > 0 && n < 24),
        "no count seen mid-run: {updates:?}"
    );
}

/// One task of 500 items of 1 ms that nothing splits: what the sink sees
/// mid-run comes from inside the task (it publishes when asked).
fn assert_counts_seen_inside_one_task(recorder: &Recorder, n: u64) {
    let updates = recorder.updates();
    assert!(
        updates.iter().any(|&done| done > 0 && done < n),
        "no count seen mid-task: {updates:?}"
    );
    assert_counts_only_grow(recorder);
    assert_eq!(recorder.events().last(), Some(&Event::Finish(n, Outcome::Completed)));
}

#[test]
fn updates_come_from_inside_a_long_task() {
    let job = jobs::count(|_: &u64, _: &()| {
        std::thread::sleep(Duration::from_millis(1));
        true
    });
    let recorder = Arc::new(Recorder::default());
    let one_task = (0..500usize).into_par_iter().with_min_len(500).map(|i| i as u64);
    let n = watched(&recorder, 2).scope(|| one_task.map_reduce(&(), &job)).unwrap();
    assert_eq!(n, 500);
    assert_counts_seen_inside_one_task(&recorder, 500);

    // In order, one leaf of 500 items.
    let recorder = Arc::new(Recorder::default());
    let items = (0..500usize).into_par_iter().map(|i| i as u64);
    let n = watched(&recorder, 2)
        .with_leaf_size(500)
        .scope(|| par_map_reduce_in_order(items, &(), &job))
        .unwrap();
    assert_eq!(n, 500);
    assert_counts_seen_inside_one_task(&recorder, 500);
}

#[test]
fn shortcircuit_and_failure_are_reported() {
    let recorder = Arc::new(Recorder::default());
    let job = jobs::find_first(|x: &u64, _: &()| *x == 10);
    watched(&recorder, 2)
        .scope(|| par_map_reduce(0..1000u64, &(), &job))
        .unwrap();
    assert!(matches!(
        recorder.events().last(),
        Some(Event::Finish(_, Outcome::Shortcircuited))
    ));

    let recorder = Arc::new(Recorder::default());
    let job = jobs::count(|x: &u64, _: &()| {
        assert!(*x != 10, "bad item");
        true
    });
    assert!(watched(&recorder, 2)
        .scope(|| par_map_reduce(0..1000u64, &(), &job))
        .is_err());
    assert!(matches!(
        recorder.events().last(),
        Some(Event::Finish(_, Outcome::Failed))
    ));
}

#[test]
fn nested_runs_report_nothing_of_their_own() {
    let recorder = Arc::new(Recorder::default());
    let inner = jobs::sum(|x: u64, _: &()| x);
    let outer = jobs::sum(|x: u64, _: &()| par_map_reduce(0..x, &(), &inner).unwrap());
    watched(&recorder, 2)
        .scope(|| par_map_reduce(0..50u64, &(), &outer))
        .unwrap();
    assert_one_top_level_run(&recorder, 50);
}

/// A sink on the current config, with no other change (sequential runs
/// ignore the worker count).
fn sink_only(recorder: &Arc<Recorder>) -> Config {
    Config::current().with_progress_sink(recorder.clone())
}

fn assert_counts_only_grow(recorder: &Recorder) {
    let updates = recorder.updates();
    assert!(
        updates.windows(2).all(|w| w[0] <= w[1]),
        "counts only grow: {updates:?}"
    );
}

#[test]
fn sequential_runs_report_like_parallel_ones() {
    for n in [0u64, 1, 1000, 3_000_000] {
        let recorder = Arc::new(Recorder::default());
        let job = jobs::described("Summing", jobs::sum(|x: u64, _: &()| x));
        let total = sink_only(&recorder).scope(|| seq_map_reduce(0..n, &(), &job)).unwrap();
        assert_eq!(total, (0..n).sum::<u64>());
        let events = recorder.events();
        assert_eq!(events.first(), Some(&Event::Start("Summing".into(), Some(n))));
        assert_eq!(events.last(), Some(&Event::Finish(n, Outcome::Completed)), "n {n}");
        assert_counts_only_grow(&recorder);
    }
}

#[test]
fn sequential_streams_report_like_parallel_ones_and_know_exact_lengths() {
    // `(0..n).map(f)` knows its length exactly: the total is told.
    let recorder = Arc::new(Recorder::default());
    let job = jobs::described("Streaming", jobs::sum(|x: u64, _: &()| x));
    let sum = sink_only(&recorder)
        .with_parallel(false)
        .scope(|| par_map_reduce_iter((0..100_000u64).map(|x| x * 2), &(), &job))
        .unwrap();
    assert_eq!(sum, (0..100_000u64).map(|x| x * 2).sum::<u64>());
    let events = recorder.events();
    assert_eq!(events.first(), Some(&Event::Start("Streaming".into(), Some(100_000))));
    assert_eq!(events.last(), Some(&Event::Finish(100_000, Outcome::Completed)));
    assert_counts_only_grow(&recorder);

    // A filter does not: no total.
    let recorder = Arc::new(Recorder::default());
    let evens = sink_only(&recorder)
        .with_parallel(false)
        .scope(|| par_map_reduce_iter((0..10_000u64).filter(|x| x % 2 == 0), &(), &job))
        .unwrap();
    assert_eq!(evens, (0..10_000u64).filter(|x| x % 2 == 0).sum::<u64>());
    assert_eq!(recorder.events().first(), Some(&Event::Start("Streaming".into(), None)));
    assert_eq!(recorder.events().last(), Some(&Event::Finish(5000, Outcome::Completed)));
}

#[test]
fn sequential_shortcircuit_and_failure_are_reported_and_the_panic_names_its_item() {
    let recorder = Arc::new(Recorder::default());
    let job = jobs::find_first(|x: &u64, _: &()| *x == 10);
    let found = sink_only(&recorder)
        .scope(|| seq_map_reduce(0..1000u64, &(), &job))
        .unwrap();
    assert_eq!(found, Some(10));
    // Items 0 to 10 were processed; the one that broke counts.
    assert_eq!(
        recorder.events().last(),
        Some(&Event::Finish(11, Outcome::Shortcircuited))
    );

    let recorder = Arc::new(Recorder::default());
    let job = jobs::count(|x: &u64, _: &()| {
        assert!(*x != 10, "bad item");
        true
    });
    let err = sink_only(&recorder)
        .scope(|| seq_map_reduce(0..1000u64, &(), &job))
        .unwrap_err();
    assert_eq!(err.index(), Some(10), "{err}");
    assert_eq!(recorder.events().last(), Some(&Event::Finish(10, Outcome::Failed)));

    // The same through a sequential stream.
    let recorder = Arc::new(Recorder::default());
    let err = sink_only(&recorder)
        .with_parallel(false)
        .scope(|| par_map_reduce_iter(0..1000u64, &(), &job))
        .unwrap_err();
    assert_eq!(err.index(), Some(10), "{err}");
    assert_eq!(recorder.events().last(), Some(&Event::Finish(10, Outcome::Failed)));
}

#[test]
fn updates_keep_flowing_during_a_sequential_run_of_slow_items() {
    // 24 items of 50 ms, one after the other: ~1.2 s; updates every 100 ms.
    for streamed in [false, true] {
        let recorder = Arc::new(Recorder::default());
        let job = jobs::count(|_: &u64, _: &()| {
            std::thread::sleep(Duration::from_millis(50));
            true
        });
        let config = sink_only(&recorder).with_parallel(false);
        let n = if streamed {
            config.scope(|| par_map_reduce_iter(0..24u64, &(), &job))
        } else {
            config.scope(|| seq_map_reduce(0..24u64, &(), &job))
        };
        assert_eq!(n.unwrap(), 24);
        let updates = recorder.updates();
        let distinct: std::collections::BTreeSet<_> = updates.iter().collect();
        assert!(
            distinct.len() >= 3,
            "streamed {streamed}: the count did not move while items ran: {updates:?}"
        );
        assert!(
            updates.iter().any(|&n| n > 0 && n < 24),
            "streamed {streamed}: no count seen mid-run: {updates:?}"
        );
        assert_eq!(recorder.events().last(), Some(&Event::Finish(24, Outcome::Completed)));
    }
}

#[test]
fn nested_sequential_runs_report_nothing_of_their_own() {
    let recorder = Arc::new(Recorder::default());
    let inner = jobs::sum(|x: u64, _: &()| x);
    let outer = jobs::sum(|x: u64, _: &()| {
        let streamed = Config::current()
            .with_parallel(false)
            .scope(|| par_map_reduce_iter(0..x, &(), &inner))
            .unwrap();
        seq_map_reduce(0..x, &(), &inner).unwrap() + streamed
    });
    watched(&recorder, 2)
        .scope(|| par_map_reduce(0..50u64, &(), &outer))
        .unwrap();
    assert_one_top_level_run(&recorder, 50);
}

/// The sink heard one run start, and its end after `done` items: nested
/// runs reported nothing of their own.
fn assert_one_top_level_run(recorder: &Recorder, done: u64) {
    let starts = recorder
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Start(..)))
        .count();
    assert_eq!(starts, 1);
    assert_eq!(recorder.events().last(), Some(&Event::Finish(done, Outcome::Completed)));
}
