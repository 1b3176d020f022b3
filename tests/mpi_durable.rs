//! Durable runs across MPI ranks (features `mpi` and `durable`): a search
//! under `mpirun -n 3` stopped by a signal (SIGUSR1, which OpenMPI forwards
//! to every rank) or killed by SIGTERM to `mpirun` (which OpenMPI follows
//! with SIGKILL), resumed under `mpirun -n 2`, answers the bits of an
//! uninterrupted single-process run. Each test starts `mpirun` on this test
//! binary, whose ignored `durable_rank` test is then one rank.
#![cfg(all(feature = "mpi", feature = "durable"))]

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ::mpi::traits::*;
use mapreduce::durable::Checkpoint;
use mapreduce::{indexed_range, jobs, par_map_reduce_in_order, Config, Error};

/// The items of the search, and its leaf size: many leaves, so that a
/// stop leaves a prefix of some of them.
const ITEMS: u64 = 400_000;
const LEAF: usize = 1000;
/// The longest a case may take before it counts as a hang.
const WATCHDOG: Duration = Duration::from_secs(120);

/// An order-sensitive float sum, slow enough (a few microseconds per item)
/// that a run lasts seconds.
fn search() -> impl mapreduce::MapReduce<u64, (), Acc = f64> {
    jobs::sum(|x: u64, _: &()| {
        COMPUTED.fetch_add(1, Ordering::Relaxed);
        let mut z = common::float_value(x);
        for _ in 0..200 {
            z = std::hint::black_box(z);
        }
        z
    })
}

static COMPUTED: AtomicU64 = AtomicU64::new(0);

/// What an uninterrupted single-process run answers.
fn reference() -> f64 {
    Config::current()
        .with_progress_bars(false)
        .with_leaf_size(LEAF)
        .scope(|| par_map_reduce_in_order(indexed_range(0..ITEMS), &(), search()))
        .unwrap()
}

/// Start `mpirun -n ranks` on the durable rank program with checkpoint
/// `path`.
fn start(ranks: usize, path: &Path) -> (Child, std::thread::JoinHandle<String>) {
    let mut child = Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "--tag-output", "-n"])
        .arg(ranks.to_string())
        .arg(std::env::current_exe().unwrap())
        .args([
            "durable_rank",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MAPREDUCE_DURABLE_CHECKPOINT", path)
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .env("MAPREDUCE_PROGRESS", "0")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun (Debian: openmpi-bin) must be installed");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let output = std::thread::spawn(move || {
        let err = std::thread::spawn(move || {
            let mut text = String::new();
            stderr.read_to_string(&mut text).unwrap();
            text
        });
        let mut text = String::new();
        stdout.read_to_string(&mut text).unwrap();
        text + &err.join().unwrap()
    });
    (child, output)
}

/// Wait for `child` to end, under the watchdog.
fn wait(child: &mut Child) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > WATCHDOG {
            child.kill().unwrap();
            panic!("mpirun still running after {WATCHDOG:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until the checkpoint at `path` holds a saved prefix (it is
/// replaced by renames, so a file there is whole).
fn wait_for_a_save(path: &Path, child: &mut Child) {
    let started = Instant::now();
    while std::fs::metadata(path).map_or(true, |meta| meta.len() == 0) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "mpirun ended before the first save"
        );
        assert!(started.elapsed() < WATCHDOG, "no checkpoint after {WATCHDOG:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A few more saves, so that the prefix is not empty.
    std::thread::sleep(Duration::from_millis(300));
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args(["-s", name])
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -s {name} failed");
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mapreduce-mpi-durable-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The values a rank printed after `key`, per line of every rank.
fn values<'o>(output: &'o str, key: &str) -> Vec<&'o str> {
    output
        .lines()
        .filter_map(|line| line.split_once(key).map(|(_, value)| value.trim()))
        .collect()
}

/// Finish the search under `mpirun -n 2` from what `path` holds: the
/// answer's bits (every rank agreeing), and the items computed.
fn finish(path: &Path) -> (String, u64) {
    let (mut child, output) = start(2, path);
    let status = wait(&mut child);
    let output = output.join().unwrap();
    assert!(status.success(), "the resumed run failed ({status}):\n{output}");
    let answers = values(&output, "answer");
    assert_eq!(answers.len(), 2, "every rank answers:\n{output}");
    assert!(answers.iter().all(|answer| *answer == answers[0]), "{output}");
    let computed = values(&output, "computed")
        .iter()
        .map(|n| n.parse::<u64>().unwrap())
        .sum();
    (answers[0].to_owned(), computed)
}

#[test]
fn a_search_stopped_by_sigusr1_on_3_ranks_resumes_on_2_with_the_same_bits() {
    let dir = scratch("usr1");
    let path = dir.join("search.ckpt");
    let (mut child, output) = start(3, &path);
    wait_for_a_save(&path, &mut child);
    signal(&child, "USR1");
    let status = wait(&mut child);
    let output = output.join().unwrap();
    assert!(status.success(), "mpirun failed ({status}):\n{output}");
    let stopped = values(&output, "stopped");
    assert_eq!(stopped.len(), 3, "every rank stops:\n{output}");
    assert!(
        stopped.iter().all(|done| *done == stopped[0]),
        "the ranks agree on what is saved:\n{output}"
    );
    let saved: u64 = stopped[0].parse().unwrap();
    assert!(saved > 0 && saved < ITEMS, "saved {saved}");
    let (answer, computed) = finish(&path);
    assert_eq!(answer, format!("{:016x}", reference().to_bits()));
    assert!(
        computed <= ITEMS - saved + 64 * LEAF as u64,
        "resumed, yet computed {computed}"
    );
    // Done is remembered: a third run computes nothing.
    let (again, computed) = finish(&path);
    assert_eq!((again, computed), (answer, 0));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_sigterm_to_mpirun_kills_and_the_periodic_checkpoint_survives() {
    let dir = scratch("term");
    let path = dir.join("search.ckpt");
    let (mut child, output) = start(3, &path);
    wait_for_a_save(&path, &mut child);
    signal(&child, "TERM");
    wait(&mut child);
    drop(output.join().unwrap());
    let (answer, computed) = finish(&path);
    assert_eq!(answer, format!("{:016x}", reference().to_bits()));
    assert!(computed < ITEMS, "nothing was resumed: computed {computed}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- The ranks' side -------------------------------------------------------

/// One rank of a durable search: prints `answer <bits>` or `stopped
/// <items saved>`, and `computed <items>`.
#[test]
#[ignore = "one MPI rank; the other tests start it under mpirun"]
fn durable_rank() {
    let path = std::env::var("MAPREDUCE_DURABLE_CHECKPOINT").expect("run by tests/mpi_durable.rs under mpirun");
    let (universe, _) = ::mpi::initialize_with_threading(::mpi::Threading::Funneled).unwrap();
    let world = universe.world();
    let rank = world.rank();
    let checkpoint = Checkpoint::new(&path, "mpi float sum")
        .every(Duration::from_millis(50))
        .stop_on_signals(true);
    let result = Config::current()
        .with_progress_bars(false)
        .with_leaf_size(LEAF)
        .with_workers(1)
        .scope(|| mapreduce::mpi::par_map_reduce_durable(&world, indexed_range(0..ITEMS), &(), search(), &checkpoint));
    match result {
        Ok(sum) => println!("rank {rank}: answer {:016x}", sum.to_bits()),
        Err(Error::Stopped { done, checkpoint }) => {
            assert_eq!(checkpoint.as_deref(), Some(Path::new(&path)));
            println!("rank {rank}: stopped {done}");
        }
        Err(other) => panic!("rank {rank}: {other}"),
    }
    println!("rank {rank}: computed {}", COMPUTED.load(Ordering::Relaxed));
}
