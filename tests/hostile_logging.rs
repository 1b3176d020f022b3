//! Hostile conditions around logging and drawing (SPEC §7): a panicking
//! `Display` in a log line, an unwritable stderr, calls from thread-local
//! destructors, a run started while a panic unwinds, a non-UTF-8
//! environment value, a description full of control characters.
//!
//! What could hang or abort runs in a child process: this test binary,
//! re-executed on the ignored test [`scenario`] with [`SCENARIO`] naming
//! what to do. The child is killed after [`CHILD_TIMEOUT`] and the test
//! fails, so a regression fails instead of stalling CI. The child reports on
//! stdout, one `NAME: value` line per fact, which the parent checks.

mod common;

use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::ops::ControlFlow::{self, Continue};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::tmux::{tmux_available, Tmux};
use common::SCRIPTED;
use mapreduce::{jobs, par_map_reduce, seq_map_reduce, Config, ConfigError, Error, MapReduce, ProgressSink};

/// The environment variable that selects the child's scenario.
const SCENARIO: &str = "MAPREDUCE_HOSTILE_SCENARIO";
/// A child still running after this long hangs: it is killed.
const CHILD_TIMEOUT: Duration = Duration::from_secs(20);
/// A run has shown its bar once it has lasted this long (the bar shows after
/// 0.4 s, at the monitor's next tick).
const BAR_SHOWN_AFTER: Duration = Duration::from_millis(600);
/// How long a scenario waits for its bar before giving up (and failing).
const BAR_WAIT_LIMIT: Duration = Duration::from_secs(10);

// ----------------------------------------------------------------------------
// The child side.

/// Says when the run it watches has lasted long enough to have shown its
/// bar: the monitor shows the bar in the same tick, before it updates the
/// sink, so an update this late comes after the bar was drawn.
struct BarShown {
    started: Mutex<Option<Instant>>,
    shown: Arc<AtomicBool>,
}

impl BarShown {
    fn new() -> (Arc<BarShown>, Arc<AtomicBool>) {
        let shown = Arc::new(AtomicBool::new(false));
        let sink = Arc::new(BarShown {
            started: Mutex::new(None),
            shown: Arc::clone(&shown),
        });
        (sink, shown)
    }
}

impl ProgressSink for BarShown {
    fn start(&self, _: &str, _: Option<u64>) {
        *self.started.lock().unwrap() = Some(Instant::now());
    }
    fn update(&self, _: u64) {
        let started = self.started.lock().unwrap().expect("start comes first");
        if started.elapsed() >= BAR_SHOWN_AFTER {
            // Release: pairs with the workers' acquire loads.
            self.shown.store(true, Ordering::Release);
        }
    }
}

/// Wait (a little at a time) until `shown`, or give up after
/// [`BAR_WAIT_LIMIT`]; whether it was shown.
fn wait_until_shown(shown: &AtomicBool, started: Instant) -> bool {
    while !shown.load(Ordering::Acquire) {
        if started.elapsed() > BAR_WAIT_LIMIT {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// A value whose `Display` panics, naming its item.
struct Explosive(u64);

impl fmt::Display for Explosive {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        panic!("{SCRIPTED}: Display of item {}", self.0)
    }
}

/// Sums its items; every item waits until the bar is shown, then logs a
/// warning (one whose `Display` panics, when `explode`).
struct LogAfterBar {
    shown: Arc<AtomicBool>,
    started: Instant,
    explode: bool,
    description: &'static str,
}

impl MapReduce<u64> for LogAfterBar {
    type Output = u64;
    type Acc = u64;

    fn description(&self) -> &str {
        self.description
    }
    fn empty_result(&self, _: &()) -> u64 {
        0
    }
    fn compute(&self, item: u64, _: &()) -> u64 {
        wait_until_shown(&self.shown, self.started);
        if self.explode {
            log::warn!("item {}", Explosive(item));
        } else if item % 25 == 0 {
            log::warn!("item {item} logged while the bar is shown");
        }
        item
    }
    fn process_result(&self, item: u64, acc: u64) -> ControlFlow<u64, u64> {
        Continue(acc + item)
    }
    fn merge(&self, left: u64, right: u64) -> ControlFlow<u64, u64> {
        Continue(left + right)
    }
}

/// Run [`LogAfterBar`] over `0..items` under the current config (with bars
/// as the environment says); the result and whether the bar was shown.
fn run_logging_job(items: u64, explode: bool, description: &'static str) -> (Result<u64, Error>, bool) {
    let (sink, shown) = BarShown::new();
    let job = LogAfterBar {
        shown: Arc::clone(&shown),
        started: Instant::now(),
        explode,
        description,
    };
    let result = Config::current()
        .with_progress_sink(sink)
        .scope(|| par_map_reduce(0..items, &(), job));
    (result, shown.load(Ordering::Acquire))
}

/// The facts reported so far, printed again together at the end (a
/// terminal shows only the last lines).
static FACTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn report(name: &str, value: impl fmt::Display) {
    let fact = format!("{name}: {value}");
    println!("{fact}");
    if name == "DONE" {
        println!("{}", FACTS.lock().unwrap().join("\n"));
    }
    FACTS.lock().unwrap().push(fact);
}

/// What the parents check after every scenario that logs: logging still
/// works, a later run still answers, a later panic is an ordinary panic.
fn report_afterwards() {
    log::warn!("logging after the run still works");
    report("LOGGED_AFTER", true);
    let (second, shown) = run_logging_job(100, false, "Second run");
    report("SECOND", format!("{second:?} shown={shown}"));
    let later = std::panic::catch_unwind(|| panic!("{SCRIPTED}: a later panic"));
    report("LATER_PANIC_CAUGHT", later.is_err());
    log::warn!("logging at the end still works");
    report("DONE", true);
}

/// `log::warn!` whose `Display` panics inside `compute`, with the bar shown.
fn scenario_log_panic() {
    mapreduce::init_logging();
    let (result, shown) = run_logging_job(10_000, true, "Exploding logs");
    report("SHOWN", shown);
    match result {
        Err(Error::Panicked {
            index: Some(index),
            message,
            ..
        }) => {
            let expected = format!("{SCRIPTED}: Display of item {index}");
            report("PANICKED_NAMING_ITEM", message == expected);
        }
        other => report("UNEXPECTED", format!("{other:?}")),
    }
    report_afterwards();
}

/// Logs above a bar drawn on an unwritable stderr.
fn scenario_quiet_logs() {
    mapreduce::init_logging();
    let (result, shown) = run_logging_job(200, false, "Unwritable");
    report("SHOWN", shown);
    report("FIRST", format!("{result:?}"));
    report_afterwards();
}

thread_local! {
    /// Registered before the crate's thread-locals, so destroyed after them.
    static LATE: Late = const { Late };
}

/// Calls into the crate from a thread-local destructor.
struct Late;

static FROM_DESTRUCTOR: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl Drop for Late {
    fn drop(&mut self) {
        let mut facts = Vec::new();
        let config = Config::current();
        facts.push(format!(
            "CONFIG_DEFAULT: {}",
            config.workers() == Config::from_env().workers()
        ));
        facts.push(format!("CANCELLED: {}", mapreduce::is_cancelled()));
        log::warn!("logged from a thread-local destructor");
        facts.push("LOGGED: true".to_owned());
        let job = || jobs::sum(|x: u64, _: &()| x);
        facts.push(format!("PARALLEL: {:?}", par_map_reduce(0..1000u64, &(), job())));
        facts.push(format!("SEQUENTIAL: {:?}", seq_map_reduce(0..1000u64, &(), job())));
        let scoped = Config::current()
            .with_workers(1)
            .scope(|| par_map_reduce(0..1000u64, &(), job()));
        facts.push(format!("SCOPED: {scoped:?}"));
        FROM_DESTRUCTOR.lock().unwrap().extend(facts);
    }
}

/// `Config::current()`, `is_cancelled()`, logging and whole runs from a
/// thread-local destructor that runs after the crate's own are gone.
fn scenario_tls_destructor() {
    mapreduce::init_logging();
    std::thread::spawn(|| {
        LATE.with(|_| {});
        // The crate's thread-locals, registered after `LATE`: a scope, a
        // task frame (a sequential run), a log line above the bars.
        let inner = Config::current().with_workers(1).scope(|| {
            assert!(!mapreduce::is_cancelled());
            seq_map_reduce(0..10u64, &(), jobs::sum(|x: u64, _: &()| x))
        });
        assert_eq!(inner.unwrap(), 45);
        log::warn!("registered every thread-local");
    })
    .join()
    .expect("the thread ends");
    for fact in FROM_DESTRUCTOR.lock().unwrap().iter() {
        println!("{fact}");
    }
    report("DONE", true);
}

/// Runs a job when dropped: a run that starts while a panic unwinds.
struct RunOnDrop(Arc<Mutex<Option<RunOutcome>>>);

/// A run's result, and whether its bar was shown.
type RunOutcome = (Result<u64, Error>, bool);

impl Drop for RunOnDrop {
    fn drop(&mut self) {
        let outcome = run_logging_job(100, false, "Run while unwinding");
        *self.0.lock().unwrap() = Some(outcome);
    }
}

/// A bar first shown by a run that starts in a `Drop` during unwinding.
fn scenario_run_while_unwinding() {
    mapreduce::init_logging();
    let slot = Arc::new(Mutex::new(None));
    let guard = RunOnDrop(Arc::clone(&slot));
    let caught = std::panic::catch_unwind(move || {
        let _guard = guard;
        panic!("{SCRIPTED}: unwinding");
    });
    report("CAUGHT", caught.is_err());
    let (result, shown) = slot.lock().unwrap().take().expect("the drop ran");
    report("SHOWN", shown);
    report("FIRST", format!("{result:?}"));
    report_afterwards();
}

/// A run under a non-UTF-8 environment value (set by the parent).
fn scenario_non_utf8_env() {
    let result = par_map_reduce(0..10u64, &(), jobs::sum(|x: u64, _: &()| x));
    match result {
        Err(Error::Config(ConfigError::InvalidEnv { variable, value, .. })) => {
            report("INVALID_ENV", variable);
            report("VALUE", format!("{value:?}"));
        }
        other => report("UNEXPECTED", format!("{other:?}")),
    }
    report("DONE", true);
}

/// A description full of control characters, drawn while the parent
/// watches: the items wait for the file `MAPREDUCE_HOSTILE_RELEASE`.
fn scenario_evil_description() {
    println!("BEFORE THE RUN");
    let release = PathBuf::from(std::env::var_os("MAPREDUCE_HOSTILE_RELEASE").expect("a release file"));
    let started = Instant::now();
    let job = jobs::described(
        "\x1b[2J\x1b[H\x1b]0;pwned\x07Evil\r\n\tcuts\x1b[31m!\x07",
        jobs::sum(move |x: u64, _: &()| {
            while !release.exists() && started.elapsed() < BAR_WAIT_LIMIT {
                std::thread::sleep(Duration::from_millis(5));
            }
            x
        }),
    );
    let result = par_map_reduce(0..100u64, &(), job);
    report("RESULT", format!("{result:?}"));
}

/// The scenarios, run only in a child process that names one in
/// [`SCENARIO`]; without it (`cargo test -- --ignored`) nothing happens.
#[test]
#[ignore = "a scenario for the child processes of the other tests"]
fn scenario() {
    let Some(name) = std::env::var_os(SCENARIO) else {
        return;
    };
    // The facts start on a line of their own, after libtest's `test scenario ...`.
    println!();
    match name.to_str() {
        Some("log_panic") => scenario_log_panic(),
        Some("quiet_logs") => scenario_quiet_logs(),
        Some("tls_destructor") => scenario_tls_destructor(),
        Some("run_while_unwinding") => scenario_run_while_unwinding(),
        Some("non_utf8_env") => scenario_non_utf8_env(),
        Some("evil_description") => scenario_evil_description(),
        _ => panic!("unknown scenario {name:?}"),
    }
}

// ----------------------------------------------------------------------------
// The parent side.

/// The arguments that run [`scenario`] alone in this test binary.
const SCENARIO_ARGS: [&str; 5] = ["--exact", "scenario", "--ignored", "--nocapture", "--test-threads=1"];

/// A child running `scenario` with `env` set, stderr to `stderr`.
fn child(scenario: &str, env: &[(&str, &OsStr)], stderr: Stdio) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(SCENARIO_ARGS)
        .env(SCENARIO, scenario)
        .env("RUST_BACKTRACE", "0")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    for name in [
        mapreduce::ENV_WORKERS,
        mapreduce::ENV_PROGRESS,
        mapreduce::ENV_PARALLEL,
        mapreduce::ENV_DETERMINISTIC,
    ] {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// What a child said and how it ended.
struct Ended {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ended {
    /// The value of the child's `name: value` line.
    fn fact(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}: ");
        self.stdout.lines().find_map(|line| line.strip_prefix(prefix.as_str()))
    }

    fn assert_fact(&self, name: &str, expected: &str) {
        assert_eq!(self.fact(name), Some(expected), "{name}; child:\n{self}");
    }

    fn assert_succeeded(&self) {
        assert!(self.status.success(), "the child failed; child:\n{self}");
        assert!(self.fact("UNEXPECTED").is_none(), "child:\n{self}");
        self.assert_fact("DONE", "true");
    }
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Run `command` to its end; kill it and fail if it outlasts [`CHILD_TIMEOUT`].
fn run_child(mut command: Command) -> Ended {
    let mut process = command.spawn().expect("the child starts");
    let readers = [process.stdout.take().map(read_all), process.stderr.take().map(read_all)];
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let status = loop {
        if let Some(status) = process.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = process.kill();
            let _ = process.wait();
            panic!("the child hung: killed after {CHILD_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let [stdout, stderr] = readers.map(|reader| reader.map(|r| r.join().unwrap()).unwrap_or_default());
    Ended { status, stdout, stderr }
}

fn read_all(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// The checks every logging scenario ends with (see [`report_afterwards`]).
fn assert_afterwards(ended: &Ended) {
    ended.assert_succeeded();
    ended.assert_fact("LOGGED_AFTER", "true");
    ended.assert_fact("SECOND", "Ok(4950) shown=true");
    ended.assert_fact("LATER_PANIC_CAUGHT", "true");
}

fn always() -> (&'static str, &'static OsStr) {
    (mapreduce::ENV_PROGRESS, OsStr::new("always"))
}

fn assert_log_panic_is_the_items_panic(ended: &Ended) {
    ended.assert_fact("SHOWN", "true");
    ended.assert_fact("PANICKED_NAMING_ITEM", "true");
    assert_afterwards(ended);
}

#[test]
fn panicking_display_in_a_log_line_with_a_bar_drawn_fails_that_item() {
    let ended = run_child(child("log_panic", &[always()], Stdio::piped()));
    assert_log_panic_is_the_items_panic(&ended);
    // At 80 columns the description is shortened to keep 20 bar cells.
    assert!(ended.stderr.contains("Exploding"), "no bar drawn:\n{ended}");
    assert!(ended.stderr.contains("logging after the run still works"), "{ended}");
    assert!(ended.stderr.contains("logging at the end still works"), "{ended}");
}

#[test]
fn panicking_display_in_a_log_line_without_bars_fails_that_item() {
    let off = (mapreduce::ENV_PROGRESS, OsStr::new("0"));
    let ended = run_child(child("log_panic", &[off], Stdio::piped()));
    assert!(!ended.stderr.contains("Exploding"), "a bar was drawn:\n{ended}");
    ended.assert_fact("PANICKED_NAMING_ITEM", "true");
    ended.assert_succeeded();
    ended.assert_fact("LOGGED_AFTER", "true");
    ended.assert_fact("SECOND", "Ok(4950) shown=true");
    assert!(ended.stderr.contains("logging at the end still works"), "{ended}");
}

/// The command line that runs `scenario` in a terminal, killed if it hangs.
fn terminal_command(scenario: &str, env: &str) -> String {
    format!(
        "env {SCENARIO}={scenario} RUST_BACKTRACE=0 {env} timeout -s KILL {} {} {}",
        CHILD_TIMEOUT.as_secs(),
        std::env::current_exe().unwrap().display(),
        SCENARIO_ARGS.join(" ")
    )
}

/// The pane once the command has ended, and its exit status.
fn wait_for_exit(tmux: &Tmux) -> (Vec<String>, String) {
    let end = tmux.wait_for("the end of the child", |lines| {
        lines.iter().any(|l| l.starts_with("EXIT="))
    });
    let exit = end.iter().find_map(|l| l.strip_prefix("EXIT=")).unwrap().to_owned();
    (end, exit)
}

#[test]
fn panicking_display_in_a_log_line_on_a_terminal_does_not_hang() {
    if !tmux_available() {
        return;
    }
    let tmux = Tmux::start("log-panic", &terminal_command("log_panic", ""));
    let (end, exit) = wait_for_exit(&tmux);
    let pane = end.join("\n");
    assert_eq!(exit, "0", "pane:\n{pane}");
    for fact in [
        "SHOWN: true",
        "PANICKED_NAMING_ITEM: true",
        "LOGGED_AFTER: true",
        "SECOND: Ok(4950) shown=true",
        "DONE: true",
    ] {
        assert!(end.iter().any(|line| line == fact), "no {fact:?}; pane:\n{pane}");
    }
    assert!(
        !end.iter()
            .any(|line| line.contains("Exploding") || line.contains("Second run")),
        "bar left on screen:\n{pane}"
    );
}

#[test]
fn unwritable_stderr_neither_hangs_nor_fails_the_run() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let ended = run_child(child("quiet_logs", &[always()], Stdio::from(full)));
    ended.assert_fact("SHOWN", "true");
    ended.assert_fact("FIRST", "Ok(19900)");
    assert_afterwards(&ended);
}

#[test]
fn calls_from_a_thread_local_destructor_work() {
    let ended = run_child(child("tls_destructor", &[], Stdio::piped()));
    ended.assert_succeeded();
    ended.assert_fact("CONFIG_DEFAULT", "true");
    ended.assert_fact("CANCELLED", "false");
    ended.assert_fact("LOGGED", "true");
    ended.assert_fact("PARALLEL", "Ok(499500)");
    ended.assert_fact("SEQUENTIAL", "Ok(499500)");
    ended.assert_fact("SCOPED", "Ok(499500)");
    assert!(
        ended.stderr.contains("logged from a thread-local destructor"),
        "{ended}"
    );
}

#[test]
fn a_run_started_while_a_panic_unwinds_shows_its_bar_and_answers() {
    let ended = run_child(child("run_while_unwinding", &[always()], Stdio::piped()));
    ended.assert_fact("CAUGHT", "true");
    ended.assert_fact("SHOWN", "true");
    ended.assert_fact("FIRST", "Ok(4950)");
    assert!(ended.stderr.contains("Run while unwind"), "no bar drawn:\n{ended}");
    assert_afterwards(&ended);
}

#[test]
fn non_utf8_environment_values_are_config_errors() {
    for variable in [
        mapreduce::ENV_WORKERS,
        mapreduce::ENV_PARALLEL,
        mapreduce::ENV_PROGRESS,
        mapreduce::ENV_DETERMINISTIC,
    ] {
        let value = OsStr::from_bytes(b"4\xff");
        let ended = run_child(child("non_utf8_env", &[(variable, value)], Stdio::piped()));
        ended.assert_succeeded();
        ended.assert_fact("INVALID_ENV", variable);
        ended.assert_fact("VALUE", "\"4\u{fffd}\"");
    }
}

#[test]
fn a_description_with_control_characters_is_drawn_without_them() {
    if !tmux_available() {
        return;
    }
    let release = std::env::temp_dir().join(format!("mapreduce-hostile-release-{}", std::process::id()));
    let _ = std::fs::remove_file(&release);
    let command = terminal_command(
        "evil_description",
        &format!("MAPREDUCE_HOSTILE_RELEASE={}", release.display()),
    );
    let tmux = Tmux::start("evil-description", &command);
    let live = tmux.wait_for("the bar", |lines| {
        lines.iter().any(|line| line.contains("Evil") && line.contains("/100"))
            || lines.iter().any(|line| line.starts_with("EXIT="))
    });
    let title = tmux.pane_title();
    std::fs::write(&release, b"").unwrap();
    let (end, exit) = wait_for_exit(&tmux);
    let _ = std::fs::remove_file(&release);
    let pane = live.join("\n");
    assert!(
        live.iter().any(|line| line == "BEFORE THE RUN"),
        "the screen was cleared:\n{pane}"
    );
    assert!(!title.contains("pwned"), "the title was set: {title:?}");
    let bar = live
        .iter()
        .find(|line| line.contains("Evil") && line.contains("/100"))
        .unwrap_or_else(|| panic!("no bar; pane:\n{pane}"));
    assert!(bar.starts_with("Evil"), "{bar:?}");
    let between = &bar["Evil".len()..bar.find("cuts!").expect("the end of the description")];
    assert!(between.chars().all(|c| c == ' '), "{bar:?}");
    assert!(
        !bar.contains('\u{fffd}') && !bar.contains("[31m") && !bar.contains("pwned"),
        "{bar:?}"
    );
    assert_eq!(exit, "0", "pane:\n{}", end.join("\n"));
    assert!(
        end.iter().any(|line| line == "RESULT: Ok(4950)"),
        "pane:\n{}",
        end.join("\n")
    );
}
