//! Failures surface, name their item, and leave the pool usable.

mod common;

use std::ops::ControlFlow::{self, Continue};

use common::{quiet_scripted_panics, BadMerge, Scripted, SCRIPTED};
use mapreduce::prelude::*;

#[test]
fn panic_in_compute_names_item_and_message() {
    quiet_scripted_panics();
    let job = Scripted {
        compute_panics: [4321].into(),
        ..Scripted::default()
    };
    let err = par_map_reduce(0..100_000u64, &(), &job).unwrap_err();
    match &err {
        Error::Panicked { index, message, .. } => {
            assert_eq!(*index, Some(4321));
            assert_eq!(message, &format!("{SCRIPTED} in compute at 4321"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!("task panicked at item 4321: {SCRIPTED} in compute at 4321")
    );
}

#[test]
fn panic_in_process_result_names_item() {
    quiet_scripted_panics();
    let job = Scripted {
        process_panics: [77, 90_000].into(),
        ..Scripted::default()
    };
    for input in [true, false] {
        let err = if input {
            par_map_reduce(0..100_000u64, &(), &job).unwrap_err()
        } else {
            par_map_reduce_iter(0..100_000u64, &(), &job).unwrap_err()
        };
        assert_eq!(err.index(), Some(77));
        assert!(err.to_string().contains("process_result at 77"), "{err}");
    }
}

#[test]
fn unindexed_inputs_report_the_message_without_an_index() {
    quiet_scripted_panics();
    let job = Scripted {
        compute_panics: [500].into(),
        ..Scripted::default()
    };
    let err = (0..10_000u64)
        .into_par_iter()
        .filter(|_| true)
        .map_reduce(&(), &job)
        .unwrap_err();
    assert_eq!(err.index(), None);
    assert!(err.to_string().contains("compute at 500"), "{err}");
}

#[test]
fn panic_in_merge_fails_the_run() {
    quiet_scripted_panics();
    for (streamed, workers) in [(false, 2), (true, 2), (false, 1)] {
        let result = Config::current().with_workers(workers).scope(|| {
            if streamed {
                par_map_reduce_iter(0..200_000u64, &(), BadMerge)
            } else {
                par_map_reduce(0..200_000u64, &(), BadMerge)
            }
        });
        match result {
            Err(Error::Panicked { index, message, .. }) => {
                assert_eq!(index, None);
                assert_eq!(message, format!("{SCRIPTED}: merge refuses"));
            }
            other => panic!("expected the merge panic, got {other:?}"),
        }
    }
    // Sequential runs never merge.
    assert_eq!(seq_map_reduce(0..5u64, &(), BadMerge).unwrap(), [0, 1, 2, 3, 4]);
}

#[derive(Debug, PartialEq)]
struct Custom(u32);

#[test]
fn resume_reraises_a_non_string_payload() {
    quiet_scripted_panics();
    let job = jobs::collect(|x: u32, _: &()| {
        if x == 9 {
            std::panic::panic_any(Custom(x));
        }
        x
    });
    let err = par_map_reduce(0..100u32, &(), job).unwrap_err();
    assert_eq!(err.index(), Some(9));
    assert!(err.to_string().contains("not a string"), "{err}");
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| err.resume())).unwrap_err();
    assert_eq!(payload.downcast_ref::<Custom>(), Some(&Custom(9)));
}

#[test]
fn empty_result_panic_is_reported() {
    quiet_scripted_panics();
    struct NoStart;
    impl MapReduce<u64> for NoStart {
        type Output = u64;
        type Acc = u64;
        fn empty_result(&self, _: &()) -> u64 {
            panic!("{SCRIPTED}: no start");
        }
        fn compute(&self, x: u64, _: &()) -> u64 {
            x
        }
        fn process_result(&self, x: u64, acc: u64) -> ControlFlow<u64, u64> {
            Continue(acc + x)
        }
        fn merge(&self, l: u64, r: u64) -> ControlFlow<u64, u64> {
            Continue(l + r)
        }
    }
    for err in [
        par_map_reduce(0..10u64, &(), NoStart).unwrap_err(),
        par_map_reduce_iter(0..10u64, &(), NoStart).unwrap_err(),
        seq_map_reduce(0..10u64, &(), NoStart).unwrap_err(),
    ] {
        assert!(err.to_string().contains("no start"), "{err}");
    }
}

#[test]
fn panicking_iterator_in_a_stream_names_the_item_being_read() {
    quiet_scripted_panics();
    let items = (0..10_000u64).inspect(|x| {
        if *x == 5000 {
            panic!("{SCRIPTED}: source broke");
        }
    });
    let err = par_map_reduce_iter(items, &(), jobs::count(|_: &u64, _: &()| true)).unwrap_err();
    assert_eq!(err.index(), Some(5000));
}

#[test]
fn panic_in_the_inputs_own_adaptor_is_caught_without_an_index() {
    quiet_scripted_panics();
    let items = (0..10_000u64).into_par_iter().map(|x| {
        if x == 4321 {
            panic!("{SCRIPTED}: adaptor broke");
        }
        x
    });
    let err = items.map_reduce(&(), jobs::count(|_: &u64, _: &()| true)).unwrap_err();
    assert_eq!(err.index(), None);
    assert!(err.to_string().contains("adaptor broke"), "{err}");
    // The pool is fine afterwards.
    assert_eq!(
        par_map_reduce(0..10u64, &(), jobs::count(|_: &u64, _: &()| true)).unwrap(),
        10
    );
}
