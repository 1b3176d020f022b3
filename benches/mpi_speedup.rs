//! `mapreduce::mpi` on two ranks, measured in one MPI job, each round
//! timing rank 0 alone (on a communicator of its own, while rank 1 waits
//! without using a core) and then both ranks together:
//!
//! - `coarse`: 600 items of ~2 ms of CPU work, 1 worker per rank; the
//!   speedup (1-rank time / 2-rank time).
//! - `answer`: a 100 MB answer (100 items of 1 MB each, collected), 1
//!   worker per rank; the slowdown (2-rank time / 1-rank time): the answer
//!   travels to rank 0 in block results and back in the broadcast.
//! - `tiny`: 1,000 runs of 4 items each on both ranks; the time per run.
//!
//! ```text
//! cargo bench --features mpi --bench mpi_speedup            # every group
//! cargo bench --features mpi --bench mpi_speedup -- answer  # one group
//! ```
//!
//! Started by cargo (not under `mpirun`), it starts itself under
//! `mpirun -n 2`, with Open MPI's shared memory copying
//! (`btl_vader_single_copy_mechanism=none`, as in the tests). Prints each
//! round and the median with the min–max; `ratios.py` is not involved
//! (criterion cannot time MPI jobs).

mod common;

use std::time::{Duration, Instant};

use ::mpi::collective::{CommunicatorCollectives, Root};
use ::mpi::topology::{Color, Communicator, SimpleCommunicator};
use mapreduce::{jobs, Config};

const ITEMS: usize = 600;
const ITEM_TIME: Duration = Duration::from_millis(2);
const ROUNDS: usize = 7;
/// Marks the processes started under `mpirun`.
const RANK_ENV: &str = "MAPREDUCE_MPI_BENCH_RANK";
/// The groups to run (a substring of their names), passed to the ranks.
const FILTER_ENV: &str = "MAPREDUCE_MPI_BENCH_FILTER";
/// The size of the `answer` group's answer, in 1 MB items.
const ANSWER_MB: usize = 100;
/// Runs per round of the `tiny` group.
const TINY_RUNS: usize = 1000;

fn main() {
    if std::env::var_os(RANK_ENV).is_none() {
        launch();
        return;
    }
    let (universe, _) = ::mpi::initialize_with_threading(::mpi::Threading::Funneled).unwrap();
    let world = universe.world();
    let rank = world.rank();
    let alone = world.split_by_color(Color::with_value(if rank == 0 { 0 } else { 1 }));
    let alone = alone.as_ref().unwrap();
    let filter = std::env::var(FILTER_ENV).unwrap_or_default();
    Config::current().with_workers(1).with_progress_bars(false).scope(|| {
        if "coarse".contains(&filter) {
            coarse(&world, alone);
        }
        if "answer".contains(&filter) {
            answer(&world, alone);
        }
        if "tiny".contains(&filter) {
            tiny(&world, alone);
        }
    });
}

/// `time(comm)` on rank 0 alone, then on both ranks, `ROUNDS` times: the
/// rounds' (1-rank, 2-rank) times on rank 0.
fn rounds(
    world: &SimpleCommunicator,
    alone: &SimpleCommunicator,
    name: &str,
    time: impl Fn(&SimpleCommunicator) -> Duration,
) -> Vec<(Duration, Duration)> {
    let rank = world.rank();
    let mut times = Vec::new();
    for round in 0..ROUNDS {
        let one = (rank == 0).then(|| time(alone));
        idle_barrier(world);
        let two = time(world);
        if let Some(one) = one {
            println!("{name} round {round}: 1 rank {one:.2?}, 2 ranks {two:.2?}");
            times.push((one, two));
        }
    }
    times
}

/// The median, min and max of `values`, as text.
fn summary(mut values: Vec<f64>) -> String {
    values.sort_by(f64::total_cmp);
    format!(
        "{:.3} (min {:.3}, max {:.3})",
        values[values.len() / 2],
        values[0],
        values[values.len() - 1]
    )
}

fn coarse(world: &SimpleCommunicator, alone: &SimpleCommunicator) {
    let rounds_per_item = calibrate(world);
    let job = jobs::sum(move |item: usize, _: &()| common::busy(item as u64, rounds_per_item) & 1);
    let times = rounds(world, alone, "coarse", |comm| {
        let started = Instant::now();
        let sum = mapreduce::mpi::par_map_reduce(comm, 0..ITEMS, &(), &job).unwrap();
        std::hint::black_box(sum);
        started.elapsed()
    });
    if world.rank() == 0 {
        let speedups = times
            .iter()
            .map(|(one, two)| one.as_secs_f64() / two.as_secs_f64())
            .collect();
        println!(
            "mpi/coarse 600 x 2 ms, 1 worker per rank: speedup 2 ranks / 1 rank {}",
            summary(speedups)
        );
    }
}

fn answer(world: &SimpleCommunicator, alone: &SimpleCommunicator) {
    let job = jobs::collect(|item: usize, _: &()| vec![item as u8; 1 << 20]);
    let times = rounds(world, alone, "answer", |comm| {
        let started = Instant::now();
        let chunks = mapreduce::mpi::par_map_reduce(comm, 0..ANSWER_MB, &(), &job).unwrap();
        assert_eq!(chunks.len(), ANSWER_MB);
        let took = started.elapsed();
        drop(std::hint::black_box(chunks));
        took
    });
    if world.rank() == 0 {
        let slowdowns = times
            .iter()
            .map(|(one, two)| two.as_secs_f64() / one.as_secs_f64())
            .collect();
        let ones = times.iter().map(|(one, _)| one.as_secs_f64()).collect();
        let twos = times.iter().map(|(_, two)| two.as_secs_f64()).collect();
        println!(
            "mpi/answer {ANSWER_MB} MB, 1 worker per rank: 1 rank {} s, 2 ranks {} s, slowdown 2 ranks / 1 rank {}",
            summary(ones),
            summary(twos),
            summary(slowdowns)
        );
    }
}

fn tiny(world: &SimpleCommunicator, alone: &SimpleCommunicator) {
    let job = jobs::sum(|item: usize, _: &()| item);
    let times = rounds(world, alone, "tiny", |comm| {
        let started = Instant::now();
        for _ in 0..TINY_RUNS {
            let sum = mapreduce::mpi::par_map_reduce(comm, 0..4usize, &(), &job).unwrap();
            assert_eq!(sum, 6);
        }
        started.elapsed() / TINY_RUNS as u32
    });
    if world.rank() == 0 {
        let ones = times.iter().map(|(one, _)| one.as_secs_f64() * 1e3).collect();
        let twos = times.iter().map(|(_, two)| two.as_secs_f64() * 1e3).collect();
        println!(
            "mpi/tiny {TINY_RUNS} runs of 4 items: per run 1 rank {} ms, 2 ranks {} ms",
            summary(ones),
            summary(twos)
        );
    }
}

/// Start this program as two ranks.
fn launch() {
    // `cargo bench -- answer`: the first argument that is not a flag.
    let filter = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .unwrap_or_default();
    let exe = std::env::current_exe().unwrap();
    let status = std::process::Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-n", "2"])
        .arg(exe)
        .env(RANK_ENV, "1")
        .env(FILTER_ENV, filter)
        // Containers often forbid the cross-process memory reads of Open
        // MPI's shared-memory transport; copying works everywhere.
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .status()
        .expect("mpirun (Debian: openmpi-bin) must be installed");
    assert!(status.success(), "the benchmark failed under mpirun: {status}");
}

/// Busy-work rounds per item for `ITEM_TIME` on rank 0, shared with all.
fn calibrate(world: &SimpleCommunicator) -> u64 {
    let mut rounds = 0;
    if world.rank() == 0 {
        let probe = 1_000_000;
        let started = Instant::now();
        std::hint::black_box(common::busy(1, probe));
        rounds = (probe as f64 * ITEM_TIME.as_secs_f64() / started.elapsed().as_secs_f64()) as u64;
    }
    world.process_at_rank(0).broadcast_into(&mut rounds);
    rounds
}

/// A barrier that waits without spinning a core (MPI's blocking one polls).
fn idle_barrier(world: &SimpleCommunicator) {
    let mut request = world.immediate_barrier();
    loop {
        match request.test() {
            Ok(_) => return,
            Err(pending) => request = pending,
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
