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
//! child bar under the main one.

use std::ops::ControlFlow::{self, Break, Continue};
use std::time::Duration;

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

fn main() {
    let mut mode = String::from("complete");
    let mut items = 2000u64;
    let mut millis = 3u64;
    let mut unknown_length = false;
    let mut nested = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--mode" => mode = args.next().expect("--mode complete|shortcircuit|panic"),
            "--items" => items = args.next().and_then(|n| n.parse().ok()).expect("--items N"),
            "--millis" => millis = args.next().and_then(|n| n.parse().ok()).expect("--millis M"),
            "--unknown-length" => unknown_length = true,
            "--nested" => nested = true,
            other => panic!("unknown argument {other:?}"),
        }
    }
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "info");
    }
    mapreduce::init_logging();
    let at = items * 3 / 4;
    let job = Slow {
        millis,
        nested,
        stop_at: (mode == "shortcircuit").then_some(at),
        panic_at: (mode == "panic").then_some(at),
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
