//! A fallible job: its accumulator is a `Result`, and the first error wins.
//! Parsing a column of measurements, the run stops at the first line that
//! does not parse and reports it — the leftmost bad line, exactly as a
//! sequential run would, even though lines are parsed in parallel.
//!
//! ```text
//! cargo run --release --example fallible                # one bad line among 200,000
//! cargo run --release --example fallible -- --clean     # all lines good: mean and count
//! cargo run --release --example fallible -- --help      # the flags
//! ```

use std::ops::ControlFlow::{self, Break, Continue};

use clap::Parser;
use mapreduce::prelude::*;

#[derive(Debug, Clone, PartialEq)]
struct BadLine {
    line: usize,
    text: String,
}

/// (count, sum) of the values, or the first line that did not parse.
type Stats = Result<(u64, f64), BadLine>;

struct Parse;

impl MapReduce<(usize, &str)> for Parse {
    type Output = Result<f64, BadLine>;
    type Acc = Stats;

    fn description(&self) -> &str {
        "Parsing"
    }
    fn empty_result(&self, _: &()) -> Stats {
        Ok((0, 0.0))
    }
    fn compute(&self, (line, text): (usize, &str), _: &()) -> Result<f64, BadLine> {
        text.trim().parse().map_err(|_| BadLine {
            line,
            text: text.to_owned(),
        })
    }
    fn process_result(&self, new: Result<f64, BadLine>, acc: Stats) -> ControlFlow<Stats, Stats> {
        match (acc, new) {
            (Ok((count, sum)), Ok(value)) => Continue(Ok((count + 1, sum + value))),
            (Ok(_), Err(bad)) => Break(Err(bad)),
            (Err(bad), _) => Break(Err(bad)),
        }
    }
    fn merge(&self, left: Stats, right: Stats) -> ControlFlow<Stats, Stats> {
        match (left, right) {
            (Ok((c1, s1)), Ok((c2, s2))) => Continue(Ok((c1 + c2, s1 + s2))),
            (Err(bad), _) | (Ok(_), Err(bad)) => Break(Err(bad)),
        }
    }
}

/// The mean of 200,000 measurements, or the first line that does not parse.
#[derive(Parser)]
#[command(name = "fallible")]
struct Args {
    /// Plant no bad lines: every line parses
    #[arg(long)]
    clean: bool,
    /// Parse the lines one by one on this thread
    #[arg(long)]
    sequential: bool,
}

fn main() {
    let Args { clean, sequential } = Args::parse();
    mapreduce::init_logging();
    let mut lines: Vec<String> = (0..200_000).map(|i| format!("{}.{}", i % 97, i % 10)).collect();
    if !clean {
        lines[123_456] = "12.x".into();
        lines[150_000] = "oops".into();
    }
    let numbered: Vec<(usize, &str)> = lines.iter().map(String::as_str).enumerate().collect();
    let stats = Config::current()
        .with_parallel(!sequential)
        .scope(|| par_map_reduce(numbered, &(), Parse))
        .expect("no task panics");
    match stats {
        Ok((count, sum)) => println!("parsed {count} values, mean {:.4}", sum / count as f64),
        Err(bad) => println!("line {} does not parse: {:?}", bad.line, bad.text),
    }
}
