//! Collecting every result that passes a filter — PyPhi's concept
//! collection: evaluate every mechanism (a subset of the system's elements)
//! and keep the ones whose integration `phi` is positive, in order.
//!
//! ```text
//! cargo run --release --example concepts -- --elements 16
//! cargo run --release --example concepts -- --help   # the flags
//! ```
//!
//! The "integration" here is a stand-in with the same shape as PyPhi's: a
//! costly deterministic score per mechanism, most of them zero.

use std::ops::ControlFlow::{self, Continue};

use clap::builder::RangedU64ValueParser;
use clap::Parser;
use mapreduce::prelude::*;

/// A mechanism that passed the filter.
#[derive(Debug, Clone, PartialEq)]
struct Concept {
    mechanism: u32,
    phi: f64,
}

/// The system: pairwise couplings between elements.
struct System {
    coupling: Vec<Vec<f64>>,
}

impl System {
    fn new(elements: usize) -> System {
        let coupling = (0..elements)
            .map(|i| {
                (0..elements)
                    .map(|j| ((i * 31 + j * 17) % 11) as f64 / 10.0 - 0.45)
                    .collect()
            })
            .collect();
        System { coupling }
    }

    /// The mechanism's weakest internal link, if all links are positive:
    /// cutting it loses that much. Zero for disconnected mechanisms.
    fn phi(&self, mechanism: u32) -> f64 {
        let members: Vec<usize> = (0..self.coupling.len()).filter(|i| mechanism >> i & 1 == 1).collect();
        if members.len() < 2 {
            return 0.0;
        }
        let mut weakest = f64::INFINITY;
        for &a in &members {
            for &b in &members {
                if a != b {
                    weakest = weakest.min(self.coupling[a][b]);
                }
            }
        }
        weakest.max(0.0)
    }
}

/// Keeps the concepts (phi > 0), in mechanism order.
struct CollectConcepts;

impl MapReduce<u32, System> for CollectConcepts {
    type Output = Option<Concept>;
    type Acc = Vec<Concept>;

    fn description(&self) -> &str {
        "Computing concepts"
    }
    fn empty_result(&self, _: &System) -> Vec<Concept> {
        Vec::new()
    }
    fn compute(&self, mechanism: u32, system: &System) -> Option<Concept> {
        let phi = system.phi(mechanism);
        (phi > 0.0).then_some(Concept { mechanism, phi })
    }
    fn process_result(&self, new: Option<Concept>, mut acc: Vec<Concept>) -> ControlFlow<Vec<Concept>, Vec<Concept>> {
        acc.extend(new);
        Continue(acc)
    }
    fn merge(&self, mut left: Vec<Concept>, mut right: Vec<Concept>) -> ControlFlow<Vec<Concept>, Vec<Concept>> {
        left.append(&mut right);
        Continue(left)
    }
}

/// Every mechanism of a system whose integration (phi) is positive, in order.
#[derive(Parser)]
#[command(name = "concepts")]
struct Args {
    /// Elements of the system (2 to 30): 2^N - 1 mechanisms to evaluate
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = RangedU64ValueParser::<usize>::new().range(2..=30))]
    elements: usize,
    /// Evaluate the mechanisms one by one on this thread
    #[arg(long)]
    sequential: bool,
}

fn main() {
    let Args { elements, sequential } = Args::parse();
    mapreduce::init_logging();
    let system = System::new(elements);
    let mechanisms = 1..(1u32 << elements);
    let concepts = Config::current()
        .with_parallel(!sequential)
        .scope(|| par_map_reduce(mechanisms, &system, CollectConcepts))
        .expect("no task fails");
    let total_phi: f64 = concepts.iter().map(|c| c.phi).sum();
    println!("concepts: {}", concepts.len());
    println!("first: {:?}", concepts.first());
    println!("last: {:?}", concepts.last());
    println!("sum of phi: {total_phi:.4}");
}
