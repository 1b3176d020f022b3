//! Nested runs: a search whose tasks run searches. For each of a few
//! seeded networks (the outer run), find its cheapest cut (an inner run);
//! then pick the network whose cheapest cut is the most expensive (the most
//! robust network). Inner runs share the outer run's pool — no extra
//! threads, no deadlock — and see the same `Config`.
//!
//! ```text
//! cargo run --release --example nested -- --networks 8 --nodes 16
//! cargo run --release --example nested -- --help   # the flags
//! ```

use clap::builder::RangedU64ValueParser;
use clap::Parser;
use mapreduce::prelude::*;

/// The weight of edge i → j of network `seed`: 0 to 9.
fn weight(seed: u64, i: usize, j: usize) -> u64 {
    let mut z = seed ^ ((i as u64) << 32 | j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) % 10
}

/// The cheapest cut of network `seed` with `nodes` nodes: an inner run.
fn cheapest_cut(seed: u64, nodes: usize) -> (u64, u64) {
    let cost = move |cut: u64, _: &()| {
        let mut cost = 0;
        for i in 0..nodes {
            for j in 0..nodes {
                if (cut >> i & 1) != (cut >> j & 1) {
                    cost += weight(seed, i, j);
                }
            }
        }
        (cost, cut)
    };
    let job = jobs::described(format!("Cuts of network {seed}"), jobs::min_by_key(cost).stop_at(0));
    par_map_reduce(1..(1u64 << (nodes - 1)), &(), job)
        .expect("no task fails")
        .expect("at least one cut")
}

/// The most robust of a few seeded networks: the one whose cheapest cut is
/// the most expensive.
#[derive(Parser)]
#[command(name = "nested")]
struct Args {
    /// Networks to compare (the outer run)
    #[arg(long, value_name = "N", default_value_t = 8)]
    networks: u64,
    /// Nodes of each network (2 to 30): 2^(N-1) - 1 cuts per inner run
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = RangedU64ValueParser::<usize>::new().range(2..=30))]
    nodes: usize,
    /// Run both levels one item at a time on this thread
    #[arg(long)]
    sequential: bool,
}

fn main() {
    let Args {
        networks,
        nodes,
        sequential,
    } = Args::parse();
    mapreduce::init_logging();
    let outer = jobs::described(
        "Networks",
        jobs::max_by_key(|seed: u64, _: &()| {
            let (cost, cut) = cheapest_cut(seed, nodes);
            (cost, (seed, cut))
        }),
    );
    let best = Config::current()
        .with_parallel(!sequential)
        .with_nested_progress_bars(true)
        .scope(|| par_map_reduce(0..networks, &(), outer))
        .expect("no task fails");
    match best {
        Some((cost, (seed, cut))) => {
            println!("most robust network: {seed}, its cheapest cut {cut} costs {cost}")
        }
        None => println!("no networks"),
    }
}
