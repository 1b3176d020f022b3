//! Scenarios that could hang or abort run in a child process under a
//! timeout, so that a regression fails its test instead of stalling or
//! killing the test binary.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The variable that tells a re-executed test binary which scenario to run.
pub const SCENARIO: &str = "MAPREDUCE_TEST_SCENARIO";

/// The scenario this process was started to run, if it is such a child.
pub fn scenario() -> Option<String> {
    std::env::var(SCENARIO).ok()
}

/// Run the ignored test `test` of this test binary as a child with
/// `SCENARIO=scenario` (plus `env`), killing it after `timeout`; its output,
/// or a panic naming the scenario if it had to be killed.
pub fn run_scenario(test: &str, scenario: &str, env: &[(&str, &str)], timeout: Duration) -> Output {
    let mut child = spawn_scenario(test, scenario, env);
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > timeout {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "scenario {scenario:?} still running after {timeout:?} (hang); stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start the ignored test `test` of this test binary as a child with
/// `SCENARIO=scenario` (plus `env`), its output piped; the caller waits for
/// it (or kills it).
pub fn spawn_scenario(test: &str, scenario: &str, env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", test, "--ignored", "--nocapture", "--test-threads", "1"])
        .env(SCENARIO, scenario)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    command.spawn().unwrap()
}
