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
//! With the `durable` feature, `min_cut --checkpoint` is stopped by Ctrl-C
//! typed into a shell in tmux, says how many cuts it saved, exits 85, and
//! the same command typed again resumes and answers what an uninterrupted
//! run answers (`mod durable`).
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

// ----------------------------------------------------------------------------
// Durable runs (feature `durable`): the `min_cut` demo stopped and resumed.

#[cfg(feature = "durable")]
mod durable {
    use std::path::Path;

    use super::common::tmux::{tmux_available, Tmux};
    use super::common::{example, run_example};

    /// 524,287 cuts: several seconds in a debug build, long enough to press
    /// Ctrl-C in the middle.
    const NODES: &str = "20";
    const CUTS: u64 = 524_287;

    /// The bar's count of cuts done, if `line` is a bar of `min_cut`.
    /// The rate a bar line shows, in cuts per second.
    fn bar_rate(line: &str) -> Option<u64> {
        bar_done(line)?;
        let rate = line.rsplit(", ").next()?.strip_suffix("/s]")?;
        rate.replace(',', "").parse::<f64>().ok().map(|rate| rate as u64)
    }

    fn bar_done(line: &str) -> Option<u64> {
        let before = line.strip_prefix("Evaluating cuts")?.split_once("/524,287 [")?.0;
        before.rsplit(' ').next()?.replace(',', "").parse().ok()
    }

    /// The lines of the `n`-th run (from 1) of the command that contains
    /// `marker`: after its `n`-th prompt line, up to the next prompt.
    fn run_lines(lines: &[String], marker: &str, n: usize) -> Vec<String> {
        let is_command = |line: &String| line.starts_with("$ ") && line.contains(marker);
        let Some(at) = lines.iter().enumerate().filter(|(_, line)| is_command(line)).nth(n - 1) else {
            return Vec::new();
        };
        lines[at.0 + 1..]
            .iter()
            .take_while(|line| !line.starts_with("$ "))
            .cloned()
            .collect()
    }

    /// The exit status the `n`-th run printed (`EXIT=<status>`), once it has.
    fn exit_of(lines: &[String], marker: &str, n: usize) -> Option<String> {
        run_lines(lines, marker, n)
            .iter()
            .find_map(|line| line.strip_prefix("EXIT=").map(str::to_owned))
    }

    /// The lines that do not depend on timing or on how much a run did.
    fn answer(lines: &[String]) -> Vec<String> {
        lines
            .iter()
            .filter(|line| {
                line.starts_with("best cut:") || line.starts_with("cost:") || line.starts_with("shortcircuit:")
            })
            .cloned()
            .collect()
    }

    #[test]
    fn min_cut_stopped_by_ctrl_c_resumes_with_the_uninterrupted_answer() {
        if !tmux_available() {
            return;
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("terminal-durable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("min_cut.ckpt");
        let plain: Vec<String> = run_example("min_cut", &["--nodes", NODES, "--no-progress"])
            .lines()
            .map(str::to_owned)
            .collect();
        let uninterrupted = answer(&plain);
        assert_eq!(uninterrupted.len(), 3, "{plain:?}");

        let marker = "--checkpoint";
        // Saves every second: blocks of a quarter second at most.
        let command = format!(
            "'{}' --nodes {NODES} --checkpoint '{}' --checkpoint-every 1; echo EXIT=$?",
            example("min_cut").display(),
            path.display()
        );
        let tmux = Tmux::shell("durable");
        tmux.type_line(&command);

        // Ctrl-C once a third of the cuts are done.
        let live = tmux.wait_for("a bar past a third of the cuts", |lines| {
            let run = run_lines(lines, marker, 1);
            run.iter()
                .filter_map(|line| bar_done(line))
                .any(|done| done >= CUTS / 3)
                || exit_of(lines, marker, 1).is_some()
        });
        assert!(
            exit_of(&live, marker, 1).is_none(),
            "the run ended before Ctrl-C:\n{}",
            live.join("\n")
        );
        tmux.send_keys("C-c");
        let end = tmux.wait_for("the stopped run's end", |lines| exit_of(lines, marker, 1).is_some());
        let first = run_lines(&end, marker, 1);
        let screen = end.join("\n");
        assert_eq!(exit_of(&end, marker, 1).as_deref(), Some("85"), "{screen}");
        let stopped = first
            .iter()
            .find_map(|line| line.strip_prefix("stopped: "))
            .unwrap_or_else(|| panic!("no `stopped:` line:\n{screen}"));
        let (done, rest) = stopped.split_once(' ').unwrap();
        let saved: u64 = done.parse().unwrap_or_else(|_| panic!("{stopped:?}"));
        // The completed prefix of whole blocks: the leaves of the block in
        // flight are done again, so this may be less than the bar showed.
        assert!(saved > 0 && saved < CUTS, "{stopped:?}");
        assert_eq!(
            rest,
            format!(
                "of {CUTS} cuts saved in {}; run the same command to resume",
                path.display()
            )
        );
        assert!(
            first
                .iter()
                .any(|line| line.contains("SIGINT: stopping after saving the checkpoint")),
            "{screen}"
        );
        let after = first.iter().skip_while(|line| !line.starts_with("stopped: "));
        assert!(
            !after.clone().any(|line| line.contains("Evaluating cuts")),
            "bar drawn after the run stopped:\n{screen}"
        );

        // The same command again: it resumes from the saved cuts (the bar
        // starts there) and answers what the uninterrupted run answered.
        tmux.type_line(&command);
        let resumed = tmux.wait_for("the resumed run's bar", |lines| {
            run_lines(lines, marker, 2).iter().any(|line| bar_done(line).is_some())
                || exit_of(lines, marker, 2).is_some()
        });
        let first_bar = run_lines(&resumed, marker, 2).iter().find_map(|line| bar_done(line));
        assert!(
            first_bar.is_some_and(|done| done >= saved),
            "the resumed bar did not start at the {saved} saved cuts:\n{}",
            resumed.join("\n")
        );
        // Its rate counts this run's cuts only: about the first run's, not
        // the saved cuts over the few tenths of a second since it started.
        let rate_of = |lines: &[String]| lines.iter().rev().find_map(|line| bar_rate(line));
        let before = rate_of(&run_lines(&live, marker, 1)).expect("the first run's bar shows a rate");
        let after = rate_of(&run_lines(&resumed, marker, 2)).expect("the resumed bar shows a rate");
        assert!(
            after < 3 * before.max(1),
            "the resumed bar's rate {after}/s counts the saved cuts (the first run's: {before}/s):\n{}",
            resumed.join("\n")
        );
        let end = tmux.wait_for("the resumed run's end", |lines| exit_of(lines, marker, 2).is_some());
        let second = run_lines(&end, marker, 2);
        let screen = end.join("\n");
        assert_eq!(exit_of(&end, marker, 2).as_deref(), Some("0"), "{screen}");
        assert!(
            second
                .iter()
                .any(|line| line.contains("resuming") && line.contains(&format!("after {saved} item(s) saved"))),
            "no line saying the run resumed after {saved} cuts:\n{screen}"
        );
        assert_eq!(answer(&second), uninterrupted, "{screen}");
        assert!(
            !second.iter().any(|line| line.contains("Evaluating cuts")),
            "bar left on screen:\n{screen}"
        );

        // And once more: the saved answer at once, no cut evaluated.
        tmux.type_line(&command);
        let end = tmux.wait_for("the finished search's answer", |lines| {
            exit_of(lines, marker, 3).is_some()
        });
        let third = run_lines(&end, marker, 3);
        let screen = end.join("\n");
        assert_eq!(exit_of(&end, marker, 3).as_deref(), Some("0"), "{screen}");
        assert_eq!(answer(&third), uninterrupted, "{screen}");
        assert!(
            third
                .iter()
                .any(|line| line == &format!("evaluated:   0 of {CUTS} cuts (the answer saved in {})", path.display())),
            "{screen}"
        );
        drop(tmux);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Ctrl-C at a live bar: the terminal echoes `^C` after the bar, which
    /// fills the line, so the cursor wraps to the next line, and the bar is
    /// cleared there instead of on its own line, which stays on screen. (A
    /// `kill -INT` or `stty -echoctl` leaves no bar.) The bar must leave the
    /// last columns of the line free for the echo.
    #[test]
    fn ctrl_c_leaves_no_bar_behind() {
        if !tmux_available() {
            return;
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("terminal-ctrl-c-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let marker = "--checkpoint";
        let command = format!(
            "'{}' --nodes {NODES} --checkpoint '{}'; echo EXIT=$?",
            example("min_cut").display(),
            dir.join("min_cut.ckpt").display()
        );
        let tmux = Tmux::shell("ctrl-c");
        tmux.type_line(&command);
        tmux.wait_for("a live bar", |lines| {
            run_lines(lines, marker, 1)
                .iter()
                .any(|line| bar_done(line).is_some_and(|done| done > 0))
        });
        tmux.send_keys("C-c");
        let end = tmux.wait_for("the stopped run's end", |lines| exit_of(lines, marker, 1).is_some());
        assert_eq!(exit_of(&end, marker, 1).as_deref(), Some("85"), "{}", end.join("\n"));
        assert!(
            !run_lines(&end, marker, 1)
                .iter()
                .any(|line| line.contains("Evaluating cuts")),
            "bar left on screen:\n{}",
            end.join("\n")
        );
        drop(tmux);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
