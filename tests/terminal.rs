//! A real terminal: the `live_progress` example runs under tmux while the
//! pane is captured, during the run and after it. The bar must show the
//! description and a done/total count while the run lasts, every log line
//! from the workers must be whole and on its own line, and nothing of the
//! bar may be left at the end — whether the run completes, shortcircuits or
//! panics.
//!
//! `.ci/run` installs tmux; elsewhere the test is skipped without it.

use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::example;

struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(name: &str, command: &str) -> Tmux {
        let tmux = Tmux {
            socket: format!("mapreduce-test-{}-{name}", std::process::id()),
        };
        let status = Command::new("tmux")
            .args([
                "-L",
                &tmux.socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "150",
                "-y",
                "50",
            ])
            .arg(format!("{command}; echo EXIT=$?; sleep 60"))
            .env("TERM", "xterm-256color")
            .env_remove("RUST_LOG")
            .status()
            .expect("tmux runs");
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    /// The pane's text, wrapped lines joined, trailing blank lines dropped.
    fn capture(&self) -> Vec<String> {
        let output = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-J"])
            .output()
            .expect("tmux capture-pane");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let mut lines: Vec<String> = text.lines().map(|line| line.trim_end().to_owned()).collect();
        while lines.last().is_some_and(|line| line.is_empty()) {
            lines.pop();
        }
        lines
    }

    /// Capture until `done` holds for the pane, or fail after 60 s.
    fn wait_for(&self, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let lines = self.capture();
            if done(&lines) {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; pane:\n{}",
                lines.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}

fn tmux_available() -> bool {
    let found = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide tmux (.ci/run installs it)"
        );
        eprintln!("tmux not found: terminal test skipped");
    }
    found
}

fn is_bar(line: &str) -> bool {
    line.contains("Evaluating cuts")
}

/// A log line from a worker, whole: nothing before it, nothing after it.
fn is_whole_log_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix('[') else {
        return false;
    };
    let Some((header, message)) = rest.split_once("] ") else {
        return false;
    };
    let fields: Vec<&str> = header.split_whitespace().collect();
    fields.len() == 4
        && fields[1] == "INFO"
        && fields[2] == "live_progress"
        && fields[3].starts_with("mapreduce-")
        && message.starts_with("item ")
        && message.ends_with(" done")
        && message["item ".len()..message.len() - " done".len()]
            .parse::<u64>()
            .is_ok()
}

fn check_log_lines(lines: &[String]) {
    for line in lines {
        if line.contains("item ") && line.contains(" done") {
            assert!(is_whole_log_line(line), "torn log line: {line:?}");
        }
        if is_bar(line) {
            assert!(!line.contains("INFO"), "bar and log on one line: {line:?}");
        }
    }
}

fn run_in_terminal(mode: &str, expect_result: &str) {
    if !tmux_available() {
        return;
    }
    let command = format!(
        "{} --mode {mode} --items 2000 --millis 3",
        example("live_progress").display()
    );
    let tmux = Tmux::start(mode, &command);

    // During the run: the description and a done/total count.
    let live = tmux.wait_for("a live bar", |lines| {
        lines
            .iter()
            .any(|line| is_bar(line) && line.contains("/2,000") && !line.contains(" 0/2,000"))
    });
    assert!(
        !live.iter().any(|line| line.starts_with("EXIT=")),
        "the run ended before the bar was seen"
    );
    check_log_lines(&live);
    let later = tmux.wait_for("log lines above the bar", |lines| {
        lines.iter().filter(|line| is_whole_log_line(line)).count() >= 10
            || lines.iter().any(|l| l.starts_with("EXIT="))
    });
    check_log_lines(&later);

    // After the run: the result, whole log lines, no bar.
    let end = tmux.wait_for("the end of the run", |lines| {
        lines.iter().any(|line| line.starts_with("EXIT="))
    });
    check_log_lines(&end);
    assert!(
        !end.iter().any(|line| is_bar(line)),
        "bar left on screen:\n{}",
        end.join("\n")
    );
    assert!(
        end.iter()
            .any(|line| line.starts_with("result:") && line.contains(expect_result)),
        "no result line:\n{}",
        end.join("\n")
    );
    assert!(end.iter().filter(|line| is_whole_log_line(line)).count() >= 10);
}

#[test]
fn completed_run_shows_a_bar_with_logs_above_and_clears_it() {
    run_in_terminal("complete", "2000 items folded");
}

#[test]
fn shortcircuited_run_clears_its_bar() {
    run_in_terminal("shortcircuit", "1501 items folded");
}

#[test]
fn panicking_run_clears_its_bar() {
    run_in_terminal("panic", "task panicked at item 1500: item 1500 is corrupt");
}
