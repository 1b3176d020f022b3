//! Durable runs probed by a hostile user: each test reproduces a break found
//! (see the commit that adds it). Scenarios that could hang or kill the
//! process run in a child under a timeout.
#![cfg(feature = "durable")]

mod common;

use std::ops::ControlFlow::{self, Continue};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::child::{run_scenario, scenario};
use mapreduce::durable::{par_map_reduce_durable, par_map_reduce_iter_durable, Checkpoint, CheckpointProblem};
use mapreduce::{indexed_range, jobs, par_map_reduce_in_order, Config, Error, MapReduce, StopHandle};
use serde::{Deserialize, Deserializer, Serialize};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mapreduce-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn quiet<R>(f: impl FnOnce() -> R) -> R {
    Config::current().with_progress_bars(false).with_leaf_size(100).scope(f)
}

/// Whether the accumulator's `Deserialize` panics.
static DESERIALIZE_PANICS: AtomicBool = AtomicBool::new(false);
/// `compute` calls.
static COMPUTED: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
struct Acc(f64);

impl<'de> Deserialize<'de> for Acc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Acc, D::Error> {
        let value = f64::deserialize(d)?;
        if DESERIALIZE_PANICS.load(SeqCst) {
            panic!("{}: Deserialize", common::SCRIPTED);
        }
        Ok(Acc(value))
    }
}

/// An order-sensitive float sum that counts its calls and may pull a stop
/// handle at one item.
struct Sum {
    stop_at: Option<(u64, StopHandle)>,
}

impl MapReduce<u64, ()> for Sum {
    type Output = f64;
    type Acc = Acc;
    fn empty_result(&self, _: &()) -> Acc {
        Acc(0.0)
    }
    fn compute(&self, x: u64, _: &()) -> f64 {
        COMPUTED.fetch_add(1, SeqCst);
        if let Some((at, handle)) = &self.stop_at {
            if x == *at {
                handle.stop();
            }
        }
        common::float_value(x)
    }
    fn process_result(&self, new: f64, acc: Acc) -> ControlFlow<Acc, Acc> {
        Continue(Acc(acc.0 + new))
    }
    fn merge(&self, left: Acc, right: Acc) -> ControlFlow<Acc, Acc> {
        Continue(Acc(left.0 + right.0))
    }
}

/// Stop a durable run over `0..n` at item `at`: its prefix saved in `path`.
fn stopped_at(path: &Path, key: &str, n: u64, at: u64, stream: bool) {
    let checkpoint = Checkpoint::new(path, key).every(Duration::from_millis(1));
    let job = Sum {
        stop_at: Some((at, checkpoint.stop_handle())),
    };
    let result = quiet(|| {
        if stream {
            par_map_reduce_iter_durable(0..n, &(), job, &checkpoint)
        } else {
            par_map_reduce_durable(indexed_range(0..n), &(), job, &checkpoint)
        }
    });
    assert!(
        matches!(result, Err(Error::Stopped { done, .. }) if done > 0),
        "{result:?}"
    );
}

/// Run `scenario` of the ignored test `child` in a child process; it must
/// exit with success within `timeout`.
fn child_succeeds(scenario: &str, env: &[(&str, &str)], timeout: Duration) {
    let output = run_scenario("child", scenario, env, timeout);
    assert!(
        output.status.success(),
        "scenario {scenario:?} failed: {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
#[ignore = "run as a child by the tests below"]
fn child() {
    let Some(name) = scenario() else { return };
    match name.as_str() {
        "write past the size limit" => write_past_the_size_limit(false),
        "write past the size limit, SIGXFSZ ignored" => write_past_the_size_limit(true),
        "empty path" => empty_path(),
        "signal during the skip" => signal_during_the_skip(),
        other => panic!("no scenario {other:?}"),
    }
}

/// A panicking `Deserialize` was caught when saving (`Serialize`) but not
/// when resuming: the panic escaped `par_map_reduce_durable`.
#[test]
fn a_panicking_deserialize_on_resume_is_a_checkpoint_error_not_a_panic() {
    common::quiet_scripted_panics();
    let dir = scratch("deserialize");
    let path = dir.join("sum.ckpt");
    stopped_at(&path, "sum", 50_000, 30_000, false);
    DESERIALIZE_PANICS.store(true, SeqCst);
    let resumed = std::panic::catch_unwind(|| {
        quiet(|| {
            par_map_reduce_durable(
                indexed_range(0..50_000u64),
                &(),
                Sum { stop_at: None },
                &Checkpoint::new(&path, "sum"),
            )
        })
    });
    DESERIALIZE_PANICS.store(false, SeqCst);
    let resumed = resumed.expect("the panic in Deserialize escaped the run");
    match resumed {
        Err(Error::Checkpoint(err)) => {
            assert!(matches!(err.problem(), CheckpointProblem::Corrupt(_)), "{err}");
            assert!(err.to_string().contains("Deserialize"), "{err}");
        }
        other => panic!("{other:?}"),
    }
    // The file is intact: a rerun resumes it to the uninterrupted bits.
    let resumed = quiet(|| {
        par_map_reduce_durable(
            indexed_range(0..50_000u64),
            &(),
            Sum { stop_at: None },
            &Checkpoint::new(&path, "sum"),
        )
    });
    let reference = quiet(|| par_map_reduce_in_order(indexed_range(0..50_000u64), &(), Sum { stop_at: None })).unwrap();
    assert_eq!(resumed.unwrap().0.to_bits(), reference.0.to_bits());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A run under a file size limit (`ulimit -f`) whose checkpoint outgrows it.
fn write_past_the_size_limit(ignore_sigxfsz: bool) {
    let dir = scratch(if ignore_sigxfsz { "fsize-ignored" } else { "fsize" });
    let path = dir.join("collect.ckpt");
    unsafe {
        if ignore_sigxfsz {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        }
        let limit = libc::rlimit {
            rlim_cur: 16 * 1024,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    let checkpoint = Checkpoint::new(&path, "collect").every(Duration::from_millis(1));
    let stop = checkpoint.stop_handle();
    // The collection grows past the limit long before the stop.
    let job = jobs::collect(move |x: u64, _: &()| {
        if x == 40_000 {
            stop.stop();
        }
        if x < 1000 {
            // Slow at first, so that early saves, under the limit, are
            // written before the collection outgrows it.
            std::thread::sleep(Duration::from_micros(300));
        }
        x
    });
    let result = quiet(|| par_map_reduce_durable(indexed_range(0..50_000u64), &(), job, &checkpoint));
    // The stop's save fails: an error that says so (the documented outcome).
    match &result {
        Err(Error::Checkpoint(err)) => println!("stop's save failed: {err}"),
        other => panic!("{:?}", other.as_ref().map(Vec::len)),
    }
    // What failed to be written is not left behind to fill the disk.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // An earlier save (under the limit) is still there, whole.
    assert!(checkpoint.saved().unwrap().is_some_and(|saved| saved.items > 0));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A failed write (a full disk, or a file size limit) left its partial
/// temporary file behind: on a full disk, that file held the space that
/// every later save, of this run or any other on that disk, needed.
#[test]
fn a_failed_write_leaves_no_partial_temporary_file() {
    child_succeeds(
        "write past the size limit, SIGXFSZ ignored",
        &[],
        Duration::from_secs(120),
    );
}

/// Under `ulimit -f`, a checkpoint that outgrows the limit raises SIGXFSZ,
/// whose default action ends the process: the run dies instead of logging a
/// failed write (and trying again) or reporting it, as the docs promise.
#[test]
fn a_write_past_the_file_size_limit_does_not_kill_the_process() {
    child_succeeds("write past the size limit", &[], Duration::from_secs(120));
}

fn empty_path() {
    let dir = scratch("empty-path");
    std::env::set_current_dir(&dir).unwrap();
    let checkpoint = Checkpoint::new("", "sum");
    COMPUTED.store(0, SeqCst);
    let result = quiet(|| par_map_reduce_durable(indexed_range(0..10_000u64), &(), Sum { stop_at: None }, &checkpoint));
    assert!(matches!(result, Err(Error::Checkpoint(_))), "{result:?}");
    assert_eq!(COMPUTED.load(SeqCst), 0, "computed before the path was refused");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in the working directory: {left:?}");
}

/// A path with no file name ("" or "dir/") passed the start's writability
/// check: the run computed everything, and only its final save failed (a
/// warning for an answer, so the search was never saved at all; an error
/// after a stop), leaving `.lock` and `..tmp` files behind.
#[test]
fn a_path_without_a_file_name_is_refused_before_anything_is_computed() {
    child_succeeds("empty path", &[], Duration::from_secs(60));
    let dir = scratch("trailing");
    let path = PathBuf::from(format!("{}/", dir.join("run").display()));
    COMPUTED.store(0, SeqCst);
    let checkpoint = Checkpoint::new(&path, "sum");
    let result = quiet(|| par_map_reduce_durable(indexed_range(0..10_000u64), &(), Sum { stop_at: None }, &checkpoint));
    assert!(matches!(result, Err(Error::Checkpoint(_))), "{result:?}");
    assert_eq!(COMPUTED.load(SeqCst), 0, "computed before the path was refused");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The items of a saved prefix that a resumed stream reads and drops.
fn slow_stream(n: u64) -> impl Iterator<Item = u64> {
    (0..n).inspect(|_| std::thread::sleep(Duration::from_micros(50)))
}

fn signal_during_the_skip() {
    let dir = scratch("skip-signal");
    let path = dir.join("sum.ckpt");
    stopped_at(&path, "sum", 200_000, 150_000, true);
    let checkpoint = Checkpoint::new(&path, "sum").stop_on_signals(true);
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(300));
        unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
    });
    let result = quiet(|| par_map_reduce_iter_durable(slow_stream(200_000), &(), Sum { stop_at: None }, &checkpoint));
    assert!(matches!(result, Err(Error::Stopped { .. })), "{result:?}");
    println!("stopped gracefully");
}

/// Under `stop_on_signals`, a resumed stream did not listen while it read
/// and dropped its saved prefix: a SIGINT then ended the process (exit 130,
/// not the graceful `Error::Stopped` that a batch script requeues on).
#[test]
fn a_signal_while_a_resume_skips_its_prefix_stops_it_gracefully() {
    child_succeeds("signal during the skip", &[], Duration::from_secs(120));
}

/// A stop pulled while a resumed stream read and dropped its saved prefix
/// was seen only once the whole prefix was read (seconds to hours), not
/// "within about the time of one item".
#[test]
fn a_stop_while_a_resume_skips_its_prefix_is_prompt() {
    let dir = scratch("skip-stop");
    let path = dir.join("sum.ckpt");
    stopped_at(&path, "sum", 200_000, 150_000, true);
    let checkpoint = Checkpoint::new(&path, "sum");
    let stop = checkpoint.stop_handle();
    let pulled = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        stop.stop();
        Instant::now()
    });
    let result = quiet(|| par_map_reduce_iter_durable(slow_stream(200_000), &(), Sum { stop_at: None }, &checkpoint));
    let took = pulled.join().unwrap().elapsed();
    assert!(matches!(result, Err(Error::Stopped { .. })), "{result:?}");
    assert!(took < Duration::from_secs(2), "stopped {took:?} after the pull");
    // Nothing was lost: the next run resumes the same prefix.
    assert!(Checkpoint::new(&path, "sum").saved().unwrap().unwrap().items > 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
