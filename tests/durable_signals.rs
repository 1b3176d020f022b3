//! Signals and durable runs (issue #12), in child processes: under
//! `stop_on_signals(true)`, SIGINT, SIGTERM and SIGUSR1 each stop a durable
//! run gracefully (`Error::Stopped` within 2 s on items of 100 ms, a valid
//! checkpoint left that a rerun resumes to the right answer); a second
//! signal ends the process at once; a `StopHandle` pulled from another
//! thread does what a signal does. Without it, no handler is installed, and
//! outside the runs that asked, a signal keeps its default effect.
//!
//! Each child re-executes this test binary to run the ignored test
//! `scenario_durable_run`, which prints `@@ ` lines that the parent waits
//! for before it signals (so that the child is inside its run), and reports
//! which of the three signals have a handler (`sigaction`).
#![cfg(all(feature = "durable", unix))]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::child::{scenario, SCENARIO};
use mapreduce::durable::{par_map_reduce_durable, Checkpoint};
use mapreduce::{indexed_range, is_cancelled, jobs, par_map_reduce_in_order, Config, Error};

/// 100 ms each on 2 workers: 3.2 s for a whole run.
const ITEMS: u64 = 64;
const ITEM_TIME: Duration = Duration::from_millis(100);
const KEY: &str = "a slow float sum, 64 items";
/// The child's checkpoint path.
const CHECKPOINT_VAR: &str = "MAPREDUCE_TEST_SIGNALS_CHECKPOINT";
/// How soon a stop, or a signal's default action, must end the child.
const PROMPTLY: Duration = Duration::from_secs(2);
/// How long a child may take to reach a line it prints.
const PATIENCE: Duration = Duration::from_secs(60);

const SIGNALS: [(i32, &str); 3] = [
    (libc::SIGINT, "SIGINT"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGUSR1, "SIGUSR1"),
];

/// Leaves of one item, two workers (in the child; the parent's reruns do
/// not sleep), no bars.
fn config() -> Config {
    Config::current()
        .with_progress_bars(false)
        .with_leaf_size(1)
        .with_workers(2)
}

fn value(x: u64) -> f64 {
    common::float_value(x)
}

/// Which of the three signals have a handler now.
fn handlers() -> String {
    SIGNALS
        .iter()
        .map(|(signal, name)| {
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            assert_eq!(unsafe { libc::sigaction(*signal, std::ptr::null(), &mut action) }, 0);
            let state = if action.sa_sigaction == libc::SIG_DFL {
                "default"
            } else {
                "handled"
            };
            format!("{name}={state}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn say(line: &str) {
    println!("@@ {line}");
}

static STARTED: AtomicBool = AtomicBool::new(false);
static CANCELLED: AtomicBool = AtomicBool::new(false);

/// One item's work: 100 ms, saying when the first item starts. A `slow`
/// item that sees its cancellation says so and sleeps on for 30 s, as an
/// item that does not poll would: the run cannot end before it.
fn item(x: u64, slow: bool) -> f64 {
    if !STARTED.swap(true, Ordering::SeqCst) {
        say(&format!("started {}", handlers()));
    }
    let began = Instant::now();
    while began.elapsed() < ITEM_TIME {
        std::thread::sleep(Duration::from_millis(10));
        if slow && is_cancelled() {
            if !CANCELLED.swap(true, Ordering::SeqCst) {
                say("cancelled");
            }
            std::thread::sleep(Duration::from_secs(30));
        }
    }
    value(x)
}

#[test]
#[ignore = "scenarios run in child processes by the other tests of this file"]
fn scenario_durable_run() {
    let Some(scenario) = scenario() else { return };
    let path = PathBuf::from(std::env::var_os(CHECKPOINT_VAR).unwrap());
    if scenario == "outside" {
        // A run that asked for signals, then none.
        let warm_up = Checkpoint::new(&path, "warm-up").stop_on_signals(true);
        let count = config().scope(|| {
            par_map_reduce_durable(
                indexed_range(0..10u64),
                &(),
                jobs::count(|_: &u64, _: &()| true),
                &warm_up,
            )
        });
        assert_eq!(count.unwrap(), 10);
        say(&format!("outside {}", handlers()));
        std::thread::sleep(Duration::from_secs(30));
        say("still alive");
        return;
    }
    let (signals, slow) = match scenario.as_str() {
        "graceful" => (true, false),
        "slow-stop" => (true, true),
        "plain" => (false, false),
        other => panic!("no scenario {other:?}"),
    };
    let checkpoint = Checkpoint::new(&path, KEY)
        .every(Duration::ZERO)
        .stop_on_signals(signals);
    let job = jobs::sum(move |x: u64, _: &()| item(x, slow));
    let result = config().scope(|| par_map_reduce_durable(indexed_range(0..ITEMS), &(), job, &checkpoint));
    match result {
        Err(Error::Stopped {
            done,
            checkpoint: Some(saved),
        }) if saved == path => say(&format!("stopped {done}")),
        other => panic!("the run was not stopped: {other:?}"),
    }
}

/// A child process running a scenario, its `@@` lines read as they come.
struct Child {
    process: std::process::Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
    what: String,
}

impl Child {
    fn spawn(scenario: &str, path: &Path, what: &str) -> Child {
        let mut process = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "scenario_durable_run",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(SCENARIO, scenario)
            .env(CHECKPOINT_VAR, path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        let stdout = process.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The first follows the harness's "test scenario_durable_run ... ".
                if let Some((_, line)) = line.split_once("@@ ") {
                    if sender.send(line.to_owned()).is_err() {
                        return;
                    }
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = process.stderr.take().unwrap();
        let collected = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            collected.lock().unwrap().push_str(&text);
        });
        Child {
            process,
            lines,
            seen: Vec::new(),
            stderr,
            what: what.to_owned(),
        }
    }

    fn fail(&mut self, why: &str) -> ! {
        let _ = self.process.kill();
        let _ = self.process.wait();
        std::thread::sleep(Duration::from_millis(100));
        panic!(
            "{}: {why}; lines: {:?}; stderr:\n{}",
            self.what,
            self.seen,
            self.stderr.lock().unwrap()
        );
    }

    /// The rest of the first line that starts with `start`.
    fn wait_for(&mut self, start: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(rest) = line.strip_prefix(start) {
                        return rest.trim().to_owned();
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.fail(&format!("no line {start:?} within {PATIENCE:?}")),
                Err(RecvTimeoutError::Disconnected) => self.fail(&format!("ended without a line {start:?}")),
            }
        }
    }

    fn signal(&self, signal: i32) -> Instant {
        let sent = Instant::now();
        assert_eq!(unsafe { libc::kill(self.process.id() as libc::pid_t, signal) }, 0);
        sent
    }

    /// How it ended, and how long after `since`; a failure unless within
    /// `within`.
    fn exit(&mut self, since: Instant, within: Duration) -> (ExitStatus, Duration) {
        loop {
            if let Some(status) = self.process.try_wait().unwrap() {
                let took = since.elapsed();
                if took > within {
                    self.fail(&format!("ended {took:.2?} after the signal, not within {within:?}"));
                }
                return (status, took);
            }
            if since.elapsed() > PATIENCE {
                self.fail("still running");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // A test that failed midway leaves no child behind.
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mapreduce-signals-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Rerun the search on the checkpoint at `path`: it must answer what an
/// uninterrupted run answers, bit for bit; the items it computed.
fn resume(path: &Path) -> u64 {
    let computed = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&computed);
    let job = jobs::sum(move |x: u64, _: &()| {
        counted.fetch_add(1, Ordering::Relaxed);
        value(x)
    });
    let sum = config()
        .scope(|| par_map_reduce_durable(indexed_range(0..ITEMS), &(), job, &Checkpoint::new(path, KEY)))
        .unwrap_or_else(|err| panic!("the rerun on {}: {err}", path.display()));
    let reference = config()
        .scope(|| par_map_reduce_in_order(indexed_range(0..ITEMS), &(), jobs::sum(|x: u64, _: &()| value(x))))
        .unwrap();
    assert_eq!(sum.to_bits(), reference.to_bits(), "the rerun answers other bits");
    computed.load(Ordering::Relaxed)
}

/// `signal` stops a durable run that asked for signals: `Error::Stopped`
/// within 2 s, and a rerun resumes after the saved prefix to the right
/// answer. With `saved_first`, the signal waits for a first checkpoint.
fn a_signal_stops_the_run(signal: i32, name: &str, saved_first: bool) {
    let dir = scratch(name);
    let path = dir.join("sum.ckpt");
    let mut child = Child::spawn("graceful", &path, &format!("{name} to a run"));
    let handlers = child.wait_for("started");
    assert_eq!(handlers, "SIGINT=handled SIGTERM=handled SIGUSR1=handled");
    if saved_first {
        let waited = Instant::now();
        while !path.exists() {
            if waited.elapsed() > PATIENCE {
                child.fail("no checkpoint written");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let sent = child.signal(signal);
    let (status, took) = child.exit(sent, PROMPTLY);
    assert!(status.success(), "{name}: {status:?}");
    let done: u64 = child.wait_for("stopped").parse().unwrap();
    assert!(done < ITEMS);
    if saved_first {
        assert!(done > 0, "{name}: a checkpoint was written, yet nothing saved");
    }
    let computed = resume(&path);
    assert_eq!(
        computed,
        ITEMS - done,
        "{name}: the rerun did not start after the saved prefix"
    );
    eprintln!("{name}: stopped {took:.2?} after the signal, {done} of {ITEMS} items saved");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigint_stops_a_durable_run_gracefully_and_the_rerun_resumes() {
    a_signal_stops_the_run(libc::SIGINT, "SIGINT", true);
}

#[test]
fn sigterm_stops_a_durable_run_gracefully_and_the_rerun_resumes() {
    a_signal_stops_the_run(libc::SIGTERM, "SIGTERM", false);
}

#[test]
fn sigusr1_stops_a_durable_run_gracefully_and_the_rerun_resumes() {
    a_signal_stops_the_run(libc::SIGUSR1, "SIGUSR1", true);
}

/// While a stopped run waits for an item that does not poll, a second
/// signal ends the process at once, killed by that signal; the checkpoint
/// it leaves is valid.
#[test]
fn a_second_signal_ends_the_process_at_once() {
    for (signal, name) in SIGNALS {
        let dir = scratch(&format!("second-{name}"));
        let path = dir.join("sum.ckpt");
        let mut child = Child::spawn("slow-stop", &path, &format!("two {name}s"));
        child.wait_for("started");
        child.signal(signal);
        child.wait_for("cancelled");
        let sent = child.signal(signal);
        let (status, took) = child.exit(sent, PROMPTLY);
        assert_eq!(status.signal(), Some(signal), "{name}: {status:?}");
        eprintln!("{name}: the second ended the process {took:.2?} after it");
        resume(&path);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// `StopHandle::stop` from another thread does what a signal does:
/// `Error::Stopped` within 2 s on items of 100 ms, and a rerun resumes.
#[test]
fn a_stop_handle_pulled_from_another_thread_stops_like_a_signal() {
    let dir = scratch("handle");
    let path = dir.join("sum.ckpt");
    let checkpoint = Checkpoint::new(&path, KEY).every(Duration::ZERO);
    let stop = checkpoint.stop_handle();
    let started = Arc::new(AtomicBool::new(false));
    let starting = Arc::clone(&started);
    let job = jobs::sum(move |x: u64, _: &()| {
        starting.store(true, Ordering::SeqCst);
        std::thread::sleep(ITEM_TIME);
        value(x)
    });
    let (result, took) = std::thread::scope(|scope| {
        let puller = scope.spawn(|| {
            while !started.load(Ordering::SeqCst) || !path.exists() {
                std::thread::sleep(Duration::from_millis(5));
            }
            stop.stop();
            Instant::now()
        });
        let result = config().scope(|| par_map_reduce_durable(indexed_range(0..ITEMS), &(), job, &checkpoint));
        let ended = Instant::now();
        let pulled = puller.join().unwrap();
        (result, ended.duration_since(pulled))
    });
    let done = match result {
        Err(Error::Stopped {
            done,
            checkpoint: Some(saved),
        }) if saved == path => done,
        other => panic!("{other:?}"),
    };
    assert!(took <= PROMPTLY, "stopped {took:.2?} after the stop");
    assert!(done > 0 && done < ITEMS, "{done} items saved");
    assert_eq!(resume(&path), ITEMS - done);
    eprintln!("stop handle: stopped {took:.2?} after the stop, {done} of {ITEMS} items saved");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Without `stop_on_signals`, a durable run installs no handler: SIGINT,
/// SIGTERM and SIGUSR1 kill the process by their default action, and the
/// periodic checkpoint it leaves resumes.
#[test]
fn without_stop_on_signals_no_handler_is_installed_and_signals_kill() {
    for (signal, name) in SIGNALS {
        let dir = scratch(&format!("plain-{name}"));
        let path = dir.join("sum.ckpt");
        let mut child = Child::spawn("plain", &path, &format!("{name} to a run that did not ask"));
        let handlers = child.wait_for("started");
        assert_eq!(handlers, "SIGINT=default SIGTERM=default SIGUSR1=default");
        let sent = child.signal(signal);
        let (status, took) = child.exit(sent, PROMPTLY);
        assert_eq!(status.signal(), Some(signal), "{name}: {status:?}");
        eprintln!("{name}, no handler: killed {took:.2?} after the signal");
        resume(&path);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// A process whose handlers a durable run installed earlier, now outside
/// any run: each signal has its default effect (the process dies of it).
#[test]
fn outside_runs_that_asked_a_signal_keeps_its_default_effect() {
    for (signal, name) in SIGNALS {
        let dir = scratch(&format!("outside-{name}"));
        let mut child = Child::spawn("outside", &dir.join("warm-up.ckpt"), &format!("{name} outside runs"));
        let handlers = child.wait_for("outside");
        // The handlers are there (signal-hook cannot remove them), yet…
        assert_eq!(handlers, "SIGINT=handled SIGTERM=handled SIGUSR1=handled");
        let sent = child.signal(signal);
        let (status, took) = child.exit(sent, PROMPTLY);
        // …the signal kills, as if they were not.
        assert_eq!(status.signal(), Some(signal), "{name}: {status:?}");
        assert!(!child.seen.iter().any(|line| line == "still alive"));
        eprintln!("{name}, outside runs: killed {took:.2?} after the signal");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
