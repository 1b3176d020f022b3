//! A real terminal: the `live_progress` example runs under tmux while the
//! pane is captured, during the run and after it. The bar must show the
//! description and a done/total count while the run lasts, every log line
//! from the workers must be whole and on its own line, and nothing of the
//! bar may be left at the end — whether the run completes, shortcircuits or
//! panics.
//!
//! The same holds for sequential runs (`seq_map_reduce`, streams under
//! `with_parallel(false)`), for the `done/total` of streams whose length is
//! exact, and for a long description on an 80-column terminal (the bar
//! keeps 20 cells): these run as [`scenario`]s of this test binary,
//! re-executed in tmux.
//!
//! `.ci/run` installs tmux; elsewhere the test is skipped without it.

mod common;

use std::ops::ControlFlow::{self, Continue};
use std::time::Duration;

use common::child::{scenario as scenario_name, SCENARIO};
use common::example;
use common::tmux::{tmux_available, Tmux};
use mapreduce::prelude::*;

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

// ----------------------------------------------------------------------------
// Scenarios run in tmux by this binary itself.

/// Items that sleep `millis` every `sleep_every`-th item, and panic at
/// `panic_at`; the result is the number of items.
struct Slow {
    description: &'static str,
    sleep_every: u64,
    millis: u64,
    panic_at: Option<u64>,
}

impl MapReduce<u64> for Slow {
    type Output = u64;
    type Acc = u64;

    fn description(&self) -> &str {
        self.description
    }
    fn empty_result(&self, _: &()) -> u64 {
        0
    }
    fn compute(&self, item: u64, _: &()) -> u64 {
        if item % self.sleep_every == 0 {
            std::thread::sleep(Duration::from_millis(self.millis));
        }
        if self.panic_at == Some(item) {
            panic!("item {item} is corrupt");
        }
        item
    }
    fn process_result(&self, _: u64, acc: u64) -> ControlFlow<u64, u64> {
        Continue(acc + 1)
    }
    fn merge(&self, left: u64, right: u64) -> ControlFlow<u64, u64> {
        Continue(left + right)
    }
}

const SEQUENTIAL: &str = "Sequential cuts";
const STREAMED: &str = "Streamed cuts";
/// 60 characters: too long for an 80-column line with a bar of 20 cells.
const LONG: &str = "Evaluating every bipartition of the mechanism's purview cuts";
/// 1,500 items of 2 ms: 3 s or more, the bar shows after 0.4 s.
const ITEMS: u64 = 1500;
/// `(1 << 22) - 1` items, 1 ms of sleep every 1,024: 4 s or more of
/// sleeping over 2 workers, while the counts grow to seven digits.
const MANY: u64 = (1 << 22) - 1;

/// What a scenario does; the child prints `result: ...` on stdout.
#[test]
#[ignore = "a scenario for the terminal tests, which run it in tmux"]
fn scenario() {
    let Some(name) = scenario_name() else { return };
    // The harness printed `test scenario ... ` without a line break: the
    // bar starts on a line of its own, as it would in a program's output.
    println!();
    let slow = |description| Slow {
        description,
        sleep_every: 1,
        millis: 2,
        panic_at: None,
    };
    let sequential = Config::current().with_parallel(false);
    let result = match name.as_str() {
        "seq" => seq_map_reduce(0..ITEMS, &(), slow(SEQUENTIAL)),
        "seq-stream" => sequential.scope(|| par_map_reduce_iter((0..ITEMS).map(|i| i + 1), &(), slow(STREAMED))),
        "par-stream" => Config::current()
            .with_workers(2)
            .scope(|| par_map_reduce_iter((0..ITEMS * 2).map(|i| i + 1), &(), slow(STREAMED))),
        "seq-panic" => seq_map_reduce(
            0..ITEMS,
            &(),
            Slow {
                panic_at: Some(1000),
                ..slow(SEQUENTIAL)
            },
        ),
        "par-panic" => Config::current().with_workers(2).scope(|| {
            par_map_reduce(
                0..ITEMS * 2,
                &(),
                Slow {
                    panic_at: Some(1000),
                    ..slow(STREAMED)
                },
            )
        }),
        "long" => Config::current().with_workers(2).scope(|| {
            let job = Slow {
                description: LONG,
                sleep_every: 1024,
                millis: 1,
                panic_at: None,
            };
            par_map_reduce(0..MANY, &(), job)
        }),
        other => panic!("unknown scenario {other:?}"),
    };
    match result {
        Ok(n) => println!("result: {n} items folded"),
        Err(err) => println!("result: error: {err}"),
    }
}

/// The command that runs `scenario` of this binary (no backtraces: the
/// whole run stays on the screen).
fn scenario_command(scenario: &str) -> String {
    format!(
        "RUST_BACKTRACE=0 {SCENARIO}={scenario} '{}' --exact scenario --ignored --nocapture --test-threads 1",
        std::env::current_exe().unwrap().display()
    )
}

/// A cell of indicatif's bar.
fn is_bar_cell(c: char) -> bool {
    matches!(c, '█' | '░')
}

/// Nothing of a bar is left on the screen: no line of it, no cell.
fn assert_no_bar_left(lines: &[String], description: &str) {
    for line in lines {
        assert!(
            !line.contains(description) && !line.chars().any(is_bar_cell) && !line.contains(" items ["),
            "bar left on screen: {line:?}\n{}",
            lines.join("\n")
        );
    }
}

/// Run `scenario`, see its bar live, with `description` and a count of
/// `/{total}` that has moved, then see it gone at the end; the screen then.
fn bar_shows_and_goes(scenario: &str, description: &str, total: &str) -> Vec<String> {
    let tmux = Tmux::start(scenario, &scenario_command(scenario));
    let is_live_bar = |line: &String| {
        line.contains(description) && line.contains(&format!("/{total} [")) && line.chars().any(is_bar_cell)
    };
    let live = tmux.wait_for("a live bar", |lines| {
        lines
            .iter()
            .any(|line| is_live_bar(line) && !line.contains(&format!(" 0/{total}")))
            || lines.iter().any(|line| line.starts_with("EXIT="))
    });
    assert!(
        live.iter().any(is_live_bar),
        "the run ended without showing a bar with done/total:\n{}",
        live.join("\n")
    );
    let end = tmux.wait_for("the end of the run", |lines| {
        lines.iter().any(|line| line.starts_with("EXIT="))
    });
    assert_no_bar_left(&end, description);
    end
}

#[test]
fn seq_map_reduce_shows_a_bar_and_clears_it() {
    if !tmux_available() {
        return;
    }
    let end = bar_shows_and_goes("seq", SEQUENTIAL, "1,500");
    assert!(
        end.iter().any(|line| line == "result: 1500 items folded"),
        "{}",
        end.join("\n")
    );
}

#[test]
fn a_sequential_stream_of_exact_length_shows_done_of_total_and_clears_it() {
    if !tmux_available() {
        return;
    }
    let end = bar_shows_and_goes("seq-stream", STREAMED, "1,500");
    assert!(
        end.iter().any(|line| line == "result: 1500 items folded"),
        "{}",
        end.join("\n")
    );
}

#[test]
fn a_parallel_stream_of_exact_length_shows_done_of_total_and_clears_it() {
    if !tmux_available() {
        return;
    }
    let end = bar_shows_and_goes("par-stream", STREAMED, "3,000");
    assert!(
        end.iter().any(|line| line == "result: 3000 items folded"),
        "{}",
        end.join("\n")
    );
}

/// A panic message printed while a bar is live: whole, on lines of its
/// own, and no bar line left behind (indicatif draws nothing, not even a
/// clear, on a panicking thread, where the panic hook runs).
fn panic_leaves_no_bar_behind(scenario: &str, description: &str, total: &str) {
    let end = bar_shows_and_goes(scenario, description, total);
    // The panic message printed whole, above the bar, on lines of its own.
    assert!(
        end.iter()
            .any(|line| line.contains("panicked at") && line.starts_with("thread ")),
        "{}",
        end.join("\n")
    );
    assert!(
        end.iter().any(|line| line == "item 1000 is corrupt"),
        "{}",
        end.join("\n")
    );
    assert!(
        end.iter()
            .any(|line| line.starts_with("result: error:") && line.contains("item 1000") && line.contains("corrupt")),
        "{}",
        end.join("\n")
    );
}

#[test]
fn a_panic_in_a_sequential_run_leaves_no_bar_behind() {
    if tmux_available() {
        panic_leaves_no_bar_behind("seq-panic", SEQUENTIAL, "1,500");
    }
}

#[test]
fn a_panic_in_a_parallel_run_leaves_no_bar_behind() {
    if tmux_available() {
        panic_leaves_no_bar_behind("par-panic", STREAMED, "3,000");
    }
}

#[test]
fn at_80_columns_a_long_description_leaves_the_bar_20_cells() {
    if !tmux_available() {
        return;
    }
    let tmux = Tmux::start_sized("long", &scenario_command("long"), 80);
    let total = "/4,194,303 [";
    let mut bars_seen = 0;
    let mut seven_digits = false;
    let end = loop {
        let lines = tmux.capture();
        for line in lines.iter().filter(|line| line.contains(total)) {
            bars_seen += 1;
            let cells = line.chars().filter(|&c| is_bar_cell(c)).count();
            assert!(cells >= 20, "{cells} cells of bar: {line:?}");
            // `-J` joins wrapped lines: one that wrapped would be longer.
            assert!(line.chars().count() <= 80, "the line wrapped: {line:?}");
            assert!(line.contains('…'), "the description was not shortened: {line:?}");
            let done = line.split('/').next().unwrap().rsplit(' ').next().unwrap();
            seven_digits |= done.len() >= "1,000,000".len();
        }
        if lines.iter().any(|line| line.starts_with("EXIT=")) {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(bars_seen > 0, "no bar seen:\n{}", end.join("\n"));
    assert!(
        seven_digits,
        "the count never reached seven digits ({bars_seen} bars seen)"
    );
    assert_no_bar_left(&end, total);
    assert!(
        end.iter().any(|line| line == &format!("result: {MANY} items folded")),
        "{}",
        end.join("\n")
    );
}
