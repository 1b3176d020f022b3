//! The PyPhi search, in miniature: find the bipartition (cut) of a weighted
//! directed network that severs the least connection weight, stopping at
//! once if a cut severs nothing.
//!
//! ```text
//! cargo run --release --example min_cut                      # 24 nodes, ~8 million cuts
//! cargo run --release --example min_cut -- --disconnected    # plants a free cut: shortcircuit
//! cargo run --release --example min_cut -- --nodes 18 --sequential
//! RUST_LOG=warn cargo run --release --example min_cut        # without the workers' log lines
//!
//! # On a cluster (README "Running on a cluster"): every rank runs the search
//! cargo build --release --features mpi --example min_cut
//! mpirun -n 4 target/release/examples/min_cut --mpi
//!
//! # A long run (README "Long runs"): Ctrl-C saves and exits 85; the same
//! # command resumes, and once done prints the saved answer at once
//! cargo run --release --features durable --example min_cut -- --nodes 30 --checkpoint min_cut.ckpt
//! ```
//!
//! Flags (`--help` lists them): `--nodes N` (default 24), `--seed S`
//! (default 1), `--workers W` (PyPhi's NUMBER_OF_CORES rule: -1 all cores;
//! per rank with `--mpi`), `--sequential`, `--any-order`, `--no-progress`,
//! `--disconnected`, `--mpi` (built with `--features mpi`: the ranks of
//! an `mpirun`/`srun` job share the search; rank 0 prints, and shows the
//! workers' info lines when every rank has `RUST_LOG=info`), and
//! `--checkpoint PATH` with `--checkpoint-every SECS` (built with
//! `--features durable`: the search saves its progress in PATH, stops
//! gracefully on Ctrl-C, SIGTERM or SIGUSR1 with exit code 85, "stopped,
//! resume me", and the same command resumes it, with `--mpi` too).
//!
//! A cut puts each node on side A or side B; its cost is the total weight of
//! the edges from one side to the other, in either direction. Cut `k`
//! (1 ≤ k < 2^(N-1)) has on side A the nodes whose bit is set in `k`; the
//! last node is always on side B, so every bipartition is counted once.

use std::ops::ControlFlow::{self, Break, Continue};
#[cfg(feature = "durable")]
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(feature = "durable")]
use std::time::Duration;
use std::time::Instant;

use clap::builder::RangedU64ValueParser;
#[cfg(not(all(feature = "mpi", feature = "durable")))]
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::Parser;
#[cfg(feature = "durable")]
use mapreduce::durable::{par_map_reduce_durable, Checkpoint};
use mapreduce::prelude::*;

/// The exit code of a search stopped with its progress saved: "stopped,
/// resume me" (HTCondor's convention, and our SLURM script's: it requeues
/// the job on 85).
const STOPPED: i32 = 85;

/// A weighted directed network: `weights[i][j]` is the weight of edge i → j.
struct Network {
    weights: Vec<Vec<u64>>,
}

impl Network {
    /// A seeded random network: each edge exists with probability 1/2 and
    /// has a weight from 1 to 9. `disconnected` removes every edge between
    /// the even- and odd-numbered nodes, so that cut costs nothing.
    fn random(nodes: usize, seed: u64, disconnected: bool) -> Network {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let weights = (0..nodes)
            .map(|i| {
                (0..nodes)
                    .map(|j| {
                        let r = next();
                        let severed = disconnected && (i % 2 != j % 2);
                        if i == j || severed || r % 2 == 0 {
                            0
                        } else {
                            1 + (r >> 8) % 9
                        }
                    })
                    .collect()
            })
            .collect();
        Network { weights }
    }

    fn nodes(&self) -> usize {
        self.weights.len()
    }

    /// The weight crossing cut `k`, in both directions.
    fn cost(&self, cut: u64) -> u64 {
        let mut cost = 0;
        for (i, row) in self.weights.iter().enumerate() {
            let side = cut >> i & 1;
            for (j, weight) in row.iter().enumerate() {
                if cut >> j & 1 != side {
                    cost += weight;
                }
            }
        }
        cost
    }
}

/// The best cut found so far by any worker, for the log lines.
struct MinCut {
    best_seen: AtomicU64,
    evaluated: AtomicU64,
}

impl MapReduce<u64, Network> for MinCut {
    type Output = (u64, u64);
    type Acc = Option<(u64, u64)>;

    fn description(&self) -> &str {
        "Evaluating cuts"
    }

    fn empty_result(&self, _: &Network) -> Self::Acc {
        None
    }

    fn compute(&self, cut: u64, network: &Network) -> (u64, u64) {
        self.evaluated.fetch_add(1, Ordering::Relaxed);
        let cost = network.cost(cut);
        if self.best_seen.fetch_min(cost, Ordering::Relaxed) > cost {
            log::info!("new best cut {cut:#b} costs {cost}");
        }
        (cost, cut)
    }

    fn process_result(&self, new: (u64, u64), acc: Self::Acc) -> ControlFlow<Self::Acc, Self::Acc> {
        self.merge(acc, Some(new))
    }

    /// The cheaper cut, the leftmost on ties; a free cut ends the search.
    fn merge(&self, left: Self::Acc, right: Self::Acc) -> ControlFlow<Self::Acc, Self::Acc> {
        let best = match (left, right) {
            (Some(l), Some(r)) => Some(if r.0 < l.0 { r } else { l }),
            (l, r) => l.or(r),
        };
        match best {
            Some((0, _)) => Break(best),
            _ => Continue(best),
        }
    }
}

/// The cheapest cut of a seeded random network: every bipartition is
/// evaluated in parallel, in order, and a free cut ends the search.
#[derive(Parser)]
#[command(name = "min_cut")]
struct Args {
    /// Nodes of the network (2 to 40): 2^(N-1) - 1 cuts to evaluate
    #[arg(long, value_name = "N", default_value_t = 24, value_parser = RangedU64ValueParser::<usize>::new().range(2..=40))]
    nodes: usize,
    /// Seed of the random network
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// Worker threads, PyPhi's NUMBER_OF_CORES rule: -1 all cores, -2 all but
    /// one, ...; per rank of an MPI job
    #[arg(long, value_name = "W", default_value_t = -1, allow_negative_numbers = true)]
    workers: isize,
    /// Evaluate the cuts one by one on this thread
    #[arg(long)]
    sequential: bool,
    /// Stop at the first free cut any worker finds, not the leftmost one
    #[arg(long)]
    any_order: bool,
    /// Draw no progress bar
    #[arg(long)]
    no_progress: bool,
    /// Remove every edge between even and odd nodes, planting a free cut
    #[arg(long)]
    disconnected: bool,
    /// Share the search among the ranks of an `mpirun`/`srun` job (rank 0
    /// prints)
    #[cfg(feature = "mpi")]
    #[arg(long)]
    mpi: bool,
    /// Save the search's progress in PATH: Ctrl-C, SIGTERM or SIGUSR1 stop it
    /// (exit code 85) and the same command resumes it
    #[cfg(feature = "durable")]
    #[arg(long, value_name = "PATH")]
    checkpoint: Option<PathBuf>,
    /// Seconds between saves of the progress, with --checkpoint
    #[cfg(feature = "durable")]
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_seconds, requires = "checkpoint")]
    checkpoint_every: Duration,
}

/// A positive number of seconds, fractions allowed (`0.5`).
#[cfg(feature = "durable")]
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if seconds.is_nan() || seconds <= 0.0 {
        return Err(format!("{text} s: the interval must be more than 0 s"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|err| format!("{text} s: {err}"))
}

/// The cargo feature that a flag of a fuller build needs, if `arg` is one.
#[cfg(not(all(feature = "mpi", feature = "durable")))]
fn feature_needed_by(arg: &str) -> Option<&'static str> {
    match arg.split('=').next().unwrap_or(arg) {
        #[cfg(not(feature = "mpi"))]
        "--mpi" => Some("mpi"),
        #[cfg(not(feature = "durable"))]
        "--checkpoint" | "--checkpoint-every" => Some("durable"),
        _ => None,
    }
}

impl Args {
    /// The command line, or exit with clap's message (status 2; 0 for
    /// `--help`).
    fn parse_or_exit() -> Args {
        Args::try_parse().unwrap_or_else(|err| {
            #[cfg(not(all(feature = "mpi", feature = "durable")))]
            if err.kind() == ErrorKind::UnknownArgument {
                if let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) {
                    if let Some(feature) = feature_needed_by(arg) {
                        let flag = arg.split('=').next().unwrap_or(arg);
                        eprintln!("error: {flag} needs the example built with --features {feature}");
                        std::process::exit(2);
                    }
                }
            }
            err.exit()
        })
    }

    /// Whether the search runs across the ranks of an MPI job.
    fn mpi(&self) -> bool {
        #[cfg(feature = "mpi")]
        let mpi = self.mpi;
        #[cfg(not(feature = "mpi"))]
        let mpi = false;
        mpi
    }

    /// Where the search saves its progress (`--checkpoint`), if anywhere.
    /// Its key names everything that changes the answer: a file saved for
    /// another network or mode is refused, never resumed (the library also
    /// checks the number of cuts and the leaf size). Change the `v1` when
    /// the cost function changes.
    #[cfg(feature = "durable")]
    fn checkpoint(&self) -> Option<Checkpoint> {
        let key = format!(
            "min_cut v1: {} nodes, seed {}{}{}",
            self.nodes,
            self.seed,
            if self.disconnected { ", disconnected" } else { "" },
            if self.any_order { ", any order" } else { "" },
        );
        let path = self.checkpoint.as_ref()?;
        Some(
            Checkpoint::new(path, key)
                .every(self.checkpoint_every)
                .stop_on_signals(true),
        )
    }
}

fn main() {
    let args = Args::parse_or_exit();
    let cluster = Cluster::join(args.mpi());
    cluster.init_logging();
    let network = Network::random(args.nodes, args.seed, args.disconnected);
    // Cuts are bitmasks over the nodes but the last (which stays on side B).
    let cuts = 1..(1u64 << (network.nodes() - 1));
    let job = MinCut {
        best_seen: AtomicU64::new(u64::MAX),
        evaluated: AtomicU64::new(0),
    };
    let mut config = Config::current()
        .with_workers(args.workers)
        .with_parallel(!args.sequential)
        .with_deterministic(!args.any_order)
        .with_progress_bars(!args.no_progress);
    if args.mpi() && std::env::var_os(mapreduce::ENV_PROGRESS).is_none() {
        // Under mpirun, rank 0's stderr is a pipe that mpirun copies to the
        // terminal: the demo draws its bar there all the same.
        config = config.with_progress_bars_always(!args.no_progress);
    }
    let workers = match config.num_workers() {
        Ok(workers) if !args.sequential => workers,
        Ok(_) => 1,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::exit(2);
        }
    };
    #[cfg(feature = "durable")]
    let checkpoint = args.checkpoint();
    #[cfg(feature = "durable")]
    let saving = checkpoint.as_ref().map_or(String::new(), |checkpoint| {
        format!(
            ", saving to {} every {:?}",
            checkpoint.path().display(),
            checkpoint.interval()
        )
    });
    #[cfg(not(feature = "durable"))]
    let saving = "";
    let lead = cluster.rank() == 0;
    if lead {
        println!(
            "Searching {} cuts of a {}-node network (seed {}) with {workers} worker(s){}{}{saving}",
            cuts.end - 1,
            args.nodes,
            args.seed,
            cluster.describe(),
            if args.any_order { ", any order" } else { "" }
        );
    }
    let started = Instant::now();
    // In order: a free cut at index k is found after about k / workers cuts'
    // time, wherever it lies. (`indexed_range`: rayon indexes no u64 range.)
    let result = config.scope(|| {
        // Durable: the same in-order search, its progress saved now and then
        // and when a signal stops it; a rerun resumes (and a finished search
        // answers from the file at once).
        #[cfg(feature = "durable")]
        if let Some(checkpoint) = &checkpoint {
            return cluster.search_durable(indexed_range(cuts.clone()), &network, &job, checkpoint);
        }
        cluster.search(indexed_range(cuts.clone()), &network, &job)
    });
    let elapsed = started.elapsed();
    let evaluated = cluster.total(job.evaluated.load(Ordering::Relaxed));
    if !lead {
        return;
    }
    // A durable search evaluates only the cuts not saved before.
    #[cfg(feature = "durable")]
    let this_run = match &checkpoint {
        Some(checkpoint) if evaluated == 0 => format!(" (the answer saved in {})", checkpoint.path().display()),
        Some(_) => " in this run".to_owned(),
        None => String::new(),
    };
    #[cfg(not(feature = "durable"))]
    let this_run = "";
    match result {
        Ok(Some((cost, cut))) => {
            let side_a: Vec<usize> = (0..network.nodes()).filter(|i| cut >> i & 1 == 1).collect();
            println!("best cut:    {cut} (side A: nodes {side_a:?})");
            println!("cost:        {cost}");
            println!("evaluated:   {evaluated} of {} cuts{this_run}", cuts.end - 1);
            println!("time:        {:.2?}", elapsed);
            println!(
                "shortcircuit: {}",
                if cost == 0 {
                    "yes (a free cut ends the search)"
                } else {
                    "no"
                }
            );
        }
        Ok(None) => println!("no cuts to evaluate"),
        // Stopped by a signal with its progress saved (`--checkpoint`):
        // "stopped, resume me".
        Err(mapreduce::Error::Stopped {
            done,
            checkpoint: Some(path),
        }) => {
            eprintln!(
                "stopped: {done} of {} cuts saved in {}; run the same command to resume",
                cuts.end - 1,
                path.display()
            );
            std::process::exit(STOPPED);
        }
        Err(err) => {
            eprintln!("error: {err}");
            #[cfg(feature = "durable")]
            if let mapreduce::Error::Checkpoint(err) = &err {
                use mapreduce::durable::CheckpointProblem::{Io, Locked};
                if !matches!(err.problem(), Io { .. } | Locked) {
                    eprintln!(
                        "(to start over, delete {} or give --checkpoint another path)",
                        err.path().display()
                    );
                }
            }
            std::process::exit(1);
        }
    }
}

/// Where the search runs: this process, or (`--mpi`) every rank of the MPI
/// job this process belongs to.
struct Cluster {
    #[cfg(feature = "mpi")]
    world: Option<(::mpi::environment::Universe, ::mpi::topology::SimpleCommunicator)>,
}

impl Cluster {
    #[cfg(feature = "mpi")]
    fn join(mpi: bool) -> Cluster {
        let world = mpi.then(|| {
            let (universe, _) =
                ::mpi::initialize_with_threading(::mpi::Threading::Funneled).expect("MPI initializes once");
            let world = universe.world();
            (universe, world)
        });
        Cluster { world }
    }

    #[cfg(not(feature = "mpi"))]
    fn join(_: bool) -> Cluster {
        Cluster {}
    }

    #[cfg(feature = "mpi")]
    fn communicator(&self) -> Option<&::mpi::topology::SimpleCommunicator> {
        self.world.as_ref().map(|(_, world)| world)
    }

    /// The crate's logger. Alone, the demo shows the workers' info lines
    /// (each new best cut) unless `RUST_LOG` says otherwise: the default
    /// filter is `info` instead of `warn`, set on the builder (never with
    /// `std::env::set_var`, which is `unsafe` from edition 2024 on). Under
    /// `--mpi` the ranks filter with `RUST_LOG` (default `warn`): run with
    /// `RUST_LOG=info` to see every rank's lines.
    fn init_logging(&self) {
        #[cfg(feature = "mpi")]
        if let Some(world) = self.communicator() {
            return mapreduce::mpi::init_logging(world);
        }
        let mut builder = mapreduce::logging::default_builder();
        // env_logger's `default_filter_or("info")`: RUST_LOG when it is set
        // (and UTF-8), else info.
        if std::env::var(env_logger::DEFAULT_FILTER_ENV).is_err() {
            builder.filter_level(log::LevelFilter::Info);
        }
        mapreduce::logging::init_logging_with(builder);
    }

    fn rank(&self) -> i32 {
        #[cfg(feature = "mpi")]
        if let Some(world) = self.communicator() {
            use ::mpi::traits::Communicator;
            return world.rank();
        }
        0
    }

    fn describe(&self) -> String {
        #[cfg(feature = "mpi")]
        if let Some(world) = self.communicator() {
            use ::mpi::traits::Communicator;
            return format!(" on each of {} MPI ranks", world.size());
        }
        String::new()
    }

    fn search<P>(&self, cuts: P, network: &Network, job: &MinCut) -> Result<Option<(u64, u64)>, mapreduce::Error>
    where
        P: IndexedParallelIterator<Item = u64>,
    {
        #[cfg(feature = "mpi")]
        if let Some(world) = self.communicator() {
            return mapreduce::mpi::par_map_reduce(world, cuts, network, job);
        }
        par_map_reduce_in_order(cuts, network, job)
    }

    /// [`search`](Self::search), its progress saved in `checkpoint` (rank 0
    /// alone reads and writes it under MPI).
    #[cfg(feature = "durable")]
    fn search_durable<P>(
        &self,
        cuts: P,
        network: &Network,
        job: &MinCut,
        checkpoint: &Checkpoint,
    ) -> Result<Option<(u64, u64)>, mapreduce::Error>
    where
        P: IndexedParallelIterator<Item = u64>,
    {
        #[cfg(feature = "mpi")]
        if let Some(world) = self.communicator() {
            return mapreduce::mpi::par_map_reduce_durable(world, cuts, network, job, checkpoint);
        }
        par_map_reduce_durable(cuts, network, job, checkpoint)
    }

    /// The sum of `count` over the ranks.
    fn total(&self, count: u64) -> u64 {
        #[cfg(feature = "mpi")]
        if let Some(world) = self.communicator() {
            use ::mpi::collective::{CommunicatorCollectives, SystemOperation};
            let mut total = 0;
            world.all_reduce_into(&count, &mut total, SystemOperation::sum());
            return total;
        }
        count
    }
}
