//! A run with a live progress bar and log lines from the workers printed
//! above it; used by the terminal test, and a quick look at what a bar
//! looks like.
//!
//! ```text
//! cargo run --release --example live_progress
//! cargo run --release --example live_progress -- --mode shortcircuit
//! cargo run --release --example live_progress -- --mode panic --items 400 --millis 5
//! ```
//!
//! Items sleep `--millis` each (default 3); every 25th logs a line at info
//! level. `--mode shortcircuit` breaks and `--mode panic` panics at three
//! quarters of the items. `--unknown-length` streams the items from a plain
//! iterator that does not know its length (a spinner instead of a bar).
//! `--nested` makes every item run a nested search of its own, shown as a
//! child bar under the main one. `--help` lists the flags. Log lines print
//! at info level and above unless `RUST_LOG` says otherwise.

use std::ops::ControlFlow::{self, Break, Continue};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use mapreduce::prelude::*;

struct Slow {
    millis: u64,
    nested: bool,
    stop_at: Option<u64>,
    panic_at: Option<u64>,
}

impl MapReduce<u64> for Slow {
    type Output = u64;
    type Acc = u64;

    fn description(&self) -> &str {
        "Evaluating cuts"
    }
    fn empty_result(&self, _: &()) -> u64 {
        0
    }
    fn compute(&self, item: u64, _: &()) -> u64 {
        if self.nested {
            let inner = jobs::described(
                "Inner search",
                jobs::count(|_: &u64, _: &()| {
                    std::thread::sleep(Duration::from_millis(self.millis));
                    true
                }),
            );
            par_map_reduce(0..200u64, &(), inner).expect("the inner search");
        }
        std::thread::sleep(Duration::from_millis(self.millis));
        if self.panic_at == Some(item) {
            panic!("item {item} is corrupt");
        }
        if item % 25 == 0 {
            log::info!("item {item} done");
        }
        item
    }
    fn process_result(&self, item: u64, acc: u64) -> ControlFlow<u64, u64> {
        if self.stop_at == Some(item) {
            Break(acc + 1)
        } else {
            Continue(acc + 1)
        }
    }
    fn merge(&self, left: u64, right: u64) -> ControlFlow<u64, u64> {
        Continue(left + right)
    }
}

/// How the run ends.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Every item is folded
    Complete,
    /// `process_result` breaks at three quarters of the items
    Shortcircuit,
    /// `compute` panics at three quarters of the items
    Panic,
}

/// A run with a live progress bar and the workers' log lines above it.
#[derive(Parser)]
#[command(name = "live_progress")]
struct Args {
    /// How the run ends
    #[arg(long, value_enum, default_value_t = Mode::Complete)]
    mode: Mode,
    /// Items to run
    #[arg(long, value_name = "N", default_value_t = 2000)]
    items: u64,
    /// Milliseconds each item sleeps
    #[arg(long, value_name = "M", default_value_t = 3)]
    millis: u64,
    /// Stream the items from an iterator that does not know its length (a
    /// spinner instead of a bar)
    #[arg(long)]
    unknown_length: bool,
    /// Every item runs a nested search of its own, shown as a child bar
    #[arg(long)]
    nested: bool,
}

fn main() {
    let Args {
        mode,
        items,
        millis,
        unknown_length,
        nested,
    } = Args::parse();
    // Info lines unless RUST_LOG says otherwise (env_logger's
    // `default_filter_or("info")`), set on the builder: no
    // `std::env::set_var`, which is `unsafe` from edition 2024 on.
    let mut builder = mapreduce::logging::default_builder();
    if std::env::var(env_logger::DEFAULT_FILTER_ENV).is_err() {
        builder.filter_level(log::LevelFilter::Info);
    }
    mapreduce::logging::init_logging_with(builder);
    let at = items * 3 / 4;
    let job = Slow {
        millis,
        nested,
        stop_at: (mode == Mode::Shortcircuit).then_some(at),
        panic_at: (mode == Mode::Panic).then_some(at),
    };
    let config = Config::current().with_nested_progress_bars(nested);
    let result = config.scope(|| {
        if unknown_length {
            par_map_reduce_iter((0..items).filter(|_| true), &(), &job)
        } else {
            par_map_reduce(0..items, &(), &job)
        }
    });
    match result {
        Ok(done) => println!("result: {done} items folded"),
        Err(err) => println!("result: error: {err}"),
    }
}
