//! A streamed search over an endless generator that stops at the first
//! counterexample: "every number reaches 1 in fewer than `--steps` Collatz
//! steps". `par_map_reduce_iter` reads the numbers in order, in bounded
//! batches, and the deterministic shortcircuit returns the *first*
//! counterexample, as a sequential search would — in parallel, with flat
//! memory however far it has to go.
//!
//! ```text
//! cargo run --release --example counterexample -- --steps 400
//! cargo run --release --example counterexample -- --help   # the flags
//! ```

use clap::Parser;
use mapreduce::prelude::*;

/// Collatz steps from `n` down to 1.
fn steps(mut n: u64) -> u32 {
    let mut count = 0;
    while n != 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        count += 1;
    }
    count
}

/// The first number whose Collatz trajectory takes at least `--steps` steps.
#[derive(Parser)]
#[command(name = "counterexample")]
struct Args {
    /// The claim: every number reaches 1 in fewer than N steps
    #[arg(long = "steps", value_name = "N", default_value_t = 400)]
    limit: u32,
    /// Test the numbers one by one on this thread
    #[arg(long)]
    sequential: bool,
}

fn main() {
    let Args { limit, sequential } = Args::parse();
    mapreduce::init_logging();
    // An endless generator; it need not be `Send` (this one holds an `Rc`),
    // nor know its length.
    let next = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let numbers = std::iter::from_fn(move || {
        next.set(next.get() + 1);
        Some(next.get())
    });
    let job = jobs::described(
        "Looking for a counterexample",
        jobs::find_first(move |n: &u64, _: &()| steps(*n) >= limit),
    );
    let found = Config::current()
        .with_parallel(!sequential)
        .scope(|| par_map_reduce_iter(numbers, &(), job))
        .expect("no task fails");
    match found {
        Some(n) => println!("first counterexample: {n} takes {} steps (limit {limit})", steps(n)),
        None => println!("no counterexample"),
    }
}
