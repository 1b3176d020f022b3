//! A real terminal: the `live_progress` example runs under tmux while the
//! pane is captured, during the run and after it. The bar must show the
//! description and a done/total count while the run lasts, every log line
//! from the workers must be whole and on its own line, and nothing of the
//! bar may be left at the end — whether the run completes, shortcircuits or
//! panics.
//!
//! `.ci/run` installs tmux; elsewhere the test is skipped without it.

mod common;

use common::example;
use common::tmux::{tmux_available, Tmux};

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
