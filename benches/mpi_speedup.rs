//! `mapreduce::mpi` scaling: coarse items (600 items of ~2 ms of CPU work,
//! 1 worker per rank), two ranks against one, measured in the same MPI job:
//! each round times rank 0 alone (on a communicator of its own, while rank 1
//! waits without using a core) and then both ranks together.
//!
//! ```text
//! cargo bench --features mpi --bench mpi_speedup
//! ```
//!
//! Started by cargo (not under `mpirun`), it starts itself under
//! `mpirun -n 2`. Prints the speedup (1-rank time / 2-rank time) per round
//! and the median; `ratios.py` is not involved (criterion cannot time MPI
//! jobs).

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

fn main() {
    if std::env::var_os(RANK_ENV).is_none() {
        launch();
        return;
    }
    let (universe, _) = ::mpi::initialize_with_threading(::mpi::Threading::Funneled).unwrap();
    let world = universe.world();
    let rank = world.rank();
    let alone = world.split_by_color(Color::with_value(if rank == 0 { 0 } else { 1 }));
    let rounds = calibrate(&world);
    let job = jobs::sum(move |item: usize, _: &()| common::busy(item as u64, rounds) & 1);
    let search = |comm: &SimpleCommunicator| {
        let started = Instant::now();
        let sum = mapreduce::mpi::par_map_reduce(comm, 0..ITEMS, &(), &job).unwrap();
        std::hint::black_box(sum);
        started.elapsed()
    };
    let mut speedups = Vec::new();
    Config::current().with_workers(1).with_progress_bars(false).scope(|| {
        for round in 0..ROUNDS {
            let one = (rank == 0).then(|| search(alone.as_ref().unwrap()));
            idle_barrier(&world);
            let two = search(&world);
            if let Some(one) = one {
                let speedup = one.as_secs_f64() / two.as_secs_f64();
                println!("round {round}: 1 rank {one:.2?}, 2 ranks {two:.2?}: speedup {speedup:.3}");
                speedups.push(speedup);
            }
        }
    });
    if rank == 0 {
        speedups.sort_by(f64::total_cmp);
        println!(
            "mpi/coarse 600 x 2 ms, 1 worker per rank: speedup 2 ranks / 1 rank {:.3} (min {:.3}, max {:.3})",
            speedups[speedups.len() / 2],
            speedups[0],
            speedups[speedups.len() - 1]
        );
    }
}

/// Start this program as two ranks.
fn launch() {
    let exe = std::env::current_exe().unwrap();
    let status = std::process::Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-n", "2"])
        .arg(exe)
        .env(RANK_ENV, "1")
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
