//! `mapreduce::mpi` across real ranks: each test starts `mpirun -n 2` or
//! `-n 3` on this test binary, whose ignored `rank_program` test is then
//! one rank; every rank checks its answers against `seq_map_reduce` and
//! prints a line per check, which the test reads back from rank 0's and the
//! other ranks' output. A watchdog kills a run that hangs.
//!
//! Needs `mpirun` (Debian: openmpi-bin libopenmpi-dev); `.ci/run` installs
//! it and runs `cargo test --features mpi --test mpi`.
#![cfg(feature = "mpi")]

mod common;

use std::io::Read;
use std::ops::ControlFlow::{self, Continue};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::mpi::traits::*;
use mapreduce::prelude::*;
use mapreduce::{jobs, Config, ConfigError, Error, Outcome, ProgressSink};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use common::tmux::{tmux_available, Tmux};
use common::{pair_then_panic, BadMerge, FloatSum, PairSumsToFive, Scripted};

/// The longest any case may take before the watchdog calls it a hang.
const WATCHDOG: Duration = Duration::from_secs(120);

/// Start `mpirun -n ranks` on `case`; the output of every rank, each line
/// tagged `[job,rank]<stdout>:` or `<stderr>:` by mpirun.
fn mpirun(ranks: usize, case: &str, env: &[(&str, &str)]) -> String {
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new("mpirun");
    command
        .args(["--allow-run-as-root", "--oversubscribe", "--tag-output", "-n"])
        .arg(ranks.to_string())
        .arg(exe)
        .args([
            "rank_program",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MAPREDUCE_MPI_CASE", case)
        // Containers often forbid the cross-process memory reads of Open
        // MPI's shared-memory transport; copying works everywhere.
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .env("MAPREDUCE_PROGRESS", "0")
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("mpirun (Debian: openmpi-bin) must be installed");
    // Read both pipes on threads so that a full pipe cannot stall the ranks.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).unwrap();
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > WATCHDOG {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "case {case} on {ranks} ranks hung for {WATCHDOG:?}:\n{}{}",
                out.join().unwrap(),
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = format!("{}{}", out.join().unwrap(), err.join().unwrap());
    assert!(
        status.success(),
        "case {case} on {ranks} ranks failed ({status}):\n{output}"
    );
    output
}

/// The lines rank `rank` printed.
fn lines_of(output: &str, rank: usize) -> Vec<&str> {
    let tag = format!(",{rank}]<");
    output.lines().filter(|line| line.contains(&tag)).collect()
}

/// Every rank printed `checked <case>` with the same number of checks.
fn assert_checked(output: &str, ranks: usize, case: &str) {
    for rank in 0..ranks {
        assert!(
            lines_of(output, rank)
                .iter()
                .any(|line| line.contains(&format!("checked {case}"))),
            "rank {rank} did not finish {case}:\n{output}"
        );
    }
}

#[test]
fn results_equal_sequential_on_2_and_3_ranks() {
    for ranks in [2, 3] {
        let output = mpirun(ranks, "equal", &[]);
        assert_checked(&output, ranks, "equal");
    }
}

/// The same bits on 1 to 4 ranks with 1 and 2 workers each, equal to a
/// single-process in-order run: order-sensitive float sums, with and
/// without a `Break`, over several leaf sizes.
#[test]
fn the_same_bits_for_any_rank_and_worker_count() {
    let mut seen: Option<Vec<String>> = None;
    for ranks in 1..=4 {
        for workers in ["1", "2"] {
            let env = [("MAPREDUCE_WORKERS", workers), ("MAPREDUCE_OVERSUBSCRIBE", "1")];
            let output = mpirun(ranks, "reproducible", &env);
            assert_checked(&output, ranks, "reproducible");
            let bits: Vec<String> = lines_of(&output, 0)
                .iter()
                .filter_map(|line| line.split_once("bits ").map(|(_, bits)| bits.to_owned()))
                .collect();
            assert_eq!(bits.len(), 8, "{output}");
            match &seen {
                None => seen = Some(bits),
                Some(first) => assert_eq!(&bits, first, "{ranks} ranks, {workers} workers"),
            }
        }
    }
}

/// Ranks that call with other jobs, accumulator types or item counts, and a
/// panic in rank 0's sink as the run ends: every rank ends with the same
/// error, and the next run is clean.
#[test]
fn every_rank_ends_with_the_same_outcome() {
    for ranks in [2, 3] {
        let output = mpirun(ranks, "agree", &[]);
        assert_checked(&output, ranks, "agree");
    }
}

#[test]
fn random_runs_equal_sequential() {
    let output = mpirun(3, "random", &[]);
    assert_checked(&output, 3, "random");
}

#[test]
fn a_break_cancels_the_other_ranks_promptly() {
    let output = mpirun(3, "prompt", &[]);
    assert_checked(&output, 3, "prompt");
}

#[test]
fn panics_reach_every_rank_and_the_next_run_is_clean() {
    for ranks in [2, 3] {
        let output = mpirun(ranks, "panics", &[]);
        assert_checked(&output, ranks, "panics");
    }
}

#[test]
fn a_bad_config_on_one_rank_fails_every_rank() {
    let output = mpirun(3, "config", &[]);
    assert_checked(&output, 3, "config");
}

#[test]
fn thousands_of_runs_leave_threads_and_memory_flat() {
    let output = mpirun(2, "many", &[]);
    assert_checked(&output, 2, "many");
}

#[test]
fn waiting_ranks_leave_their_cores_alone() {
    let output = mpirun(2, "idle", &[]);
    assert_checked(&output, 2, "idle");
}

#[test]
fn rank_0_alone_shows_progress_for_every_ranks_items() {
    let output = mpirun(3, "progress", &[]);
    assert_checked(&output, 3, "progress");
}

#[test]
fn other_ranks_log_through_rank_0() {
    let output = mpirun(3, "logs", &[("RUST_LOG", "info")]);
    assert_checked(&output, 3, "logs");
    let rank0 = lines_of(&output, 0);
    for rank in 1..3 {
        let marker = format!("hello from rank {rank}");
        assert!(
            rank0
                .iter()
                .any(|line| line.contains(&marker) && line.contains(&format!("rank {rank} "))),
            "rank 0 did not print rank {rank}'s record with its rank:\n{output}"
        );
        assert!(
            rank0
                .iter()
                .any(|line| line.contains(&format!("item log on rank {rank}"))),
            "rank 0 did not print what rank {rank}'s workers logged:\n{output}"
        );
        assert!(
            !lines_of(&output, rank).iter().any(|line| line.contains("INFO")),
            "rank {rank} printed log lines itself:\n{output}"
        );
    }
    assert!(rank0.iter().any(|line| line.contains("hello from rank 0")));
}

/// An accumulator whose `Deserialize` fails (or panics) on one rank only,
/// wherever it is decoded (a block's result on rank 0, the answer on the
/// others): every rank ends the run with the same error.
#[test]
fn a_decode_failure_on_any_rank_fails_every_rank() {
    for ranks in [2, 3] {
        let output = mpirun(ranks, "decode", &[]);
        assert_checked(&output, ranks, "decode");
    }
}

/// Rank 0's logger (the application's) panics on a record another rank
/// sent, during a run and in `flush_logs`; its sink panics as the run
/// starts: every rank ends with the same error, and the next run is clean.
#[test]
fn a_panic_in_rank_0s_logger_or_sink_fails_every_rank() {
    for ranks in [2, 3] {
        let output = mpirun(ranks, "logger", &[("RUST_LOG", "info")]);
        assert_checked(&output, ranks, "logger");
    }
}

/// 4 ranks, logging set up on `world`, running on `world.split_by_color(rank
/// % 2)` and on `self_comm()`: every line rank 0 prints names the sender's
/// rank in `world`, once; the group whose rank 0 is world rank 1 gets its
/// lines printed; records logged after the last run are printed by
/// `flush_logs`; a burst of 100,000 lines is printed or counted, exactly.
#[test]
fn logs_name_the_world_rank_whatever_communicator_runs_use() {
    let output = mpirun(4, "split_logs", &[("RUST_LOG", "info")]);
    assert_checked(&output, 4, "split_logs");
    let rank0 = lines_of(&output, 0);
    for rank in 1..4 {
        for what in ["before any run", "inside a run", "on self_comm", "after the last run"] {
            let marker = format!("{what}, from world rank {rank}");
            let lines: Vec<_> = rank0.iter().filter(|line| line.contains(&marker)).collect();
            assert_eq!(
                lines.len(),
                1,
                "rank 0 printed {marker:?} {} times:\n{output}",
                lines.len()
            );
            assert!(
                lines[0].contains(&format!(" rank {rank} ")) && lines[0].matches("rank ").count() == 2,
                "not tagged once with world rank {rank}: {}",
                lines[0]
            );
        }
        assert!(
            !lines_of(&output, rank).iter().any(|line| line.contains("INFO")),
            "rank {rank} printed log lines itself:\n{output}"
        );
    }
    // Every line of the burst is printed, or counted in a drop note. The
    // output without mpirun's tags, which it puts before what it reads,
    // not always a whole line (only rank 0 prints these lines).
    let stderr = untagged(&output);
    let printed = stderr.matches("burst line ").count();
    let dropped: usize = stderr
        .split(" log records of rank 3 were dropped")
        .collect::<Vec<_>>()
        .iter()
        .rev()
        .skip(1)
        .filter_map(|before| before.rsplit(' ').next()?.parse::<usize>().ok())
        .sum();
    assert_eq!(
        printed + dropped,
        BURST,
        "{printed} printed, {dropped} counted as dropped"
    );
    println!("burst of {BURST}: {printed} printed, {dropped} dropped and counted");
}

/// `output` without mpirun's `[job,rank]<stream>:` tags, wherever they are
/// in a line, and without line breaks.
fn untagged(output: &str) -> String {
    let mut text = String::with_capacity(output.len());
    for mut line in output.lines() {
        while let Some(end) = ["]<stdout>:", "]<stderr>:"]
            .iter()
            .filter_map(|tag| line.find(tag))
            .min()
        {
            let start = line[..end].rfind('[').unwrap_or(end);
            text.push_str(&line[..start]);
            line = &line[end + "]<stdout>:".len()..];
        }
        text.push_str(line);
    }
    text
}

/// The lines of the burst in `split_logs`.
const BURST: usize = 100_000;

/// The `min_cut` example, built with the `mpi` feature whatever built it
/// before.
fn min_cut_with_mpi() -> std::path::PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--features", "mpi", "--example", "min_cut"])
        .status()
        .unwrap();
    assert!(status.success(), "building min_cut with --features mpi failed");
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples").join("min_cut")
}

#[test]
fn the_min_cut_demo_runs_under_mpirun() {
    let min_cut = min_cut_with_mpi();
    let best = |text: &str| {
        let line = text
            .lines()
            .find(|line| line.starts_with("best cut:"))
            .map(str::to_owned);
        line.unwrap_or_else(|| panic!("no best cut in:\n{text}"))
    };
    for flags in [&["--nodes", "16"][..], &["--nodes", "16", "--disconnected"]] {
        let sequential = Command::new(&min_cut)
            .args(flags)
            .args(["--sequential", "--no-progress"])
            .output()
            .unwrap();
        assert!(sequential.status.success());
        let sequential = String::from_utf8(sequential.stdout).unwrap();
        let distributed = Command::new("mpirun")
            .args(["--allow-run-as-root", "--oversubscribe", "-n", "3"])
            .arg(&min_cut)
            .args(flags)
            .args(["--mpi", "--no-progress"])
            .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&distributed.stdout);
        assert!(distributed.status.success(), "min_cut --mpi failed:\n{text}");
        assert_eq!(best(&text), best(&sequential));
        assert!(text.contains("on each of 3 MPI ranks"), "{text}");
        assert_eq!(text.matches("best cut:").count(), 1, "only rank 0 prints:\n{text}");
    }
}

/// Rank 0's bar, drawn through mpirun's pipe, on a real terminal: it
/// counts the items of both ranks and is gone at the end.
#[test]
fn rank_0_draws_the_bar_under_mpirun() {
    if !tmux_available() {
        return;
    }
    let min_cut = min_cut_with_mpi();
    let command = format!(
        "OMPI_MCA_btl_vader_single_copy_mechanism=none mpirun --allow-run-as-root --oversubscribe -n 2 {} \
         --mpi --workers 1 --nodes 21",
        min_cut.display()
    );
    let tmux = Tmux::start("mpi", &command);
    // At 80 columns the description is shortened (to "E…") to keep 20 bar
    // cells and the last two columns free.
    let is_bar = |line: &String| line.starts_with('E') && line.contains("/1,048,575 [");
    let live = tmux.wait_for("a live bar", |lines| lines.iter().any(is_bar));
    let bar = live.iter().find(|line| is_bar(line)).unwrap();
    assert!(!bar.contains("INFO"), "bar and log on one line: {bar:?}");
    let end = tmux.wait_for("the end of the run", |lines| {
        lines.iter().any(|line| line.starts_with("EXIT="))
    });
    assert!(end.iter().any(|line| line == "EXIT=0"), "{}", end.join("\n"));
    assert!(end.iter().any(|line| line.starts_with("best cut:")));
    assert!(!end.iter().any(is_bar), "the bar was left behind:\n{}", end.join("\n"));
}

// ---- The ranks' side -------------------------------------------------------

/// The entry point of every rank: `MAPREDUCE_MPI_CASE` says which case.
#[test]
#[ignore = "one MPI rank; the other tests start it under mpirun"]
fn rank_program() {
    let case = std::env::var("MAPREDUCE_MPI_CASE").expect("run by the tests of tests/mpi.rs under mpirun");
    let (universe, _) = ::mpi::initialize_with_threading(::mpi::Threading::Funneled).unwrap();
    let world = universe.world();
    WORLD_RANK.store(world.rank(), Ordering::Relaxed);
    if case == "logger" && world.rank() == 0 {
        // The application's own logger, which init_logging leaves alone.
        log::set_boxed_logger(Box::new(RefusesBoom)).unwrap();
        log::set_max_level(log::LevelFilter::Info);
    }
    mapreduce::mpi::init_logging(&world);
    common::quiet_scripted_panics();
    let rank = world.rank();
    match case.as_str() {
        "equal" => equal(&world),
        "random" => random(&world),
        "prompt" => prompt(&world),
        "panics" => panics(&world),
        "config" => config(&world),
        "logs" => logs(&world),
        "progress" => progress(&world),
        "many" => many(&world),
        "idle" => idle(&world),
        "reproducible" => reproducible(&world),
        "agree" => agree(&world),
        "decode" => decode(&world),
        "logger" => logger(&world),
        "split_logs" => split_logs(&world),
        other => panic!("unknown case {other}"),
    }
    println!("rank {rank}: checked {case}");
}

/// The distributed answer, and a check that every rank got it.
fn both<J>(world: &impl Communicator, items: std::ops::Range<u64>, job: &J) -> Result<J::Acc, Error>
where
    J: MapReduce<u64, ()>,
    J::Acc: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
{
    let distributed = mapreduce::mpi::par_map_reduce(world, indexed(items.clone()), &(), job);
    let sequential = seq_map_reduce(items, &(), job);
    match (&distributed, &sequential) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!((a.index(), a.to_string()), (b.index(), b.to_string())),
        _ => panic!("distributed {distributed:?} but sequential {sequential:?}"),
    }
    distributed
}

fn equal(world: &impl Communicator) {
    for workers in [1, 2] {
        Config::current().with_workers(workers).scope(|| {
            // No break: every index, in order.
            let all = both(world, 0..600, &jobs::collect(|x: u64, _: &()| x)).unwrap();
            assert_eq!(all.len(), 600);
            // A break in the middle, at item 3, at the last item.
            for at in [300, 3, 599] {
                let found = both(world, 0..600, &scripted(&[at], &[])).unwrap();
                assert_eq!(found.last(), Some(&at));
            }
            // Nothing at all.
            assert_eq!(both(world, 0..0, &jobs::sum(|x: u64, _: &()| x)).unwrap(), 0);
            // A break made by merge.
            assert!(both(world, 0..600, &jobs::any(|x: &u64, _: &()| *x == 450)).unwrap());
            // A break that only a merge across blocks finds, with a panic
            // right after it: the items before the panic travel with it.
            for at in 0..60 {
                let values = pair_then_panic(at, 80);
                let job = Valued(&values, &PairSumsToFive);
                assert_eq!(both(world, 0..80, &job).unwrap().len(), at + 2);
            }
            // Runs nested in the ranks' tasks.
            let nested = jobs::sum(|x: u64, _: &()| par_map_reduce(0..x, &(), jobs::sum(|y: u64, _: &()| y)).unwrap());
            both(world, 0..300, &nested).unwrap();
        });
    }
    // Any order: the first answer found, a real one.
    Config::current().with_deterministic(false).scope(|| {
        let found = mapreduce::mpi::par_map_reduce(
            world,
            indexed(0..600),
            &(),
            jobs::find_first(|x: &u64, _: &()| x % 97 == 96),
        )
        .unwrap()
        .expect("some match");
        assert_eq!(found % 97, 96);
    });
}

/// See `every_rank_ends_with_the_same_outcome`.
fn agree(world: &impl Communicator) {
    let rank = world.rank();
    let disagree = |result: Result<(), Error>| match result {
        Err(Error::Config(ConfigError::RanksDisagree { what })) => what,
        other => panic!("rank {rank}: expected the ranks to disagree, got {other:?}"),
    };
    // Rank 0 sums, the others collect: each would decode the other's
    // accumulator as its own.
    let result = if rank == 0 {
        mapreduce::mpi::par_map_reduce(world, indexed(0..1000), &(), jobs::sum(|x: u64, _: &()| x)).map(drop)
    } else {
        mapreduce::mpi::par_map_reduce(world, indexed(0..1000), &(), jobs::collect(|x: u64, _: &()| x)).map(drop)
    };
    assert!(disagree(result).contains("types"));
    // Another number of items on the last rank.
    let len = if rank == world.size() - 1 { 999 } else { 1000 };
    let result = mapreduce::mpi::par_map_reduce(world, indexed(0..len), &(), jobs::sum(|x: u64, _: &()| x)).map(drop);
    assert!(disagree(result).contains("number of items"));
    // A panic in rank 0's sink as the run ends fails every rank.
    struct FailsAtTheEnd;
    impl ProgressSink for FailsAtTheEnd {
        fn finish(&self, _: u64, _: Outcome) {
            panic!("{}: the sink refuses the end", common::SCRIPTED);
        }
    }
    let config = Config::current().with_progress_sink(Arc::new(FailsAtTheEnd));
    let result =
        config.scope(|| mapreduce::mpi::par_map_reduce(world, indexed(0..1000), &(), jobs::sum(|x: u64, _: &()| x)));
    match result {
        Err(Error::Panicked { message, .. }) => assert!(message.contains("the sink refuses the end"), "{message}"),
        other => panic!("rank {rank}: expected the sink's panic, got {other:?}"),
    }
    // The next run is clean.
    let total = mapreduce::mpi::par_map_reduce(world, indexed(0..1000), &(), jobs::sum(|x: u64, _: &()| x)).unwrap();
    assert_eq!(total, 499_500);
}

/// Float sums whose bits depend on the grouping: the distributed answer is
/// a single-process in-order run's, and rank 0 prints the bits.
fn reproducible(world: &impl Communicator) {
    for leaf in [0, 1, 37, 1000] {
        for stop_above in [f64::INFINITY, 60.0] {
            let job = FloatSum {
                stop_above,
                delay_every: Some(1009),
            };
            let config = Config::current().with_leaf_size(leaf);
            let distributed = config
                .clone()
                .scope(|| mapreduce::mpi::par_map_reduce(world, indexed(0..50_000), &(), &job))
                .unwrap();
            let single = config
                .with_workers(1)
                .scope(|| par_map_reduce_in_order(indexed(0..50_000), &(), &job))
                .unwrap();
            assert_eq!(
                distributed.to_bits(),
                single.to_bits(),
                "leaf {leaf}, stop above {stop_above}"
            );
            if world.rank() == 0 {
                println!("bits {leaf} {stop_above} {:016x}", distributed.to_bits());
            }
        }
    }
}

/// The property "distributed equals sequential", checked by proptest in
/// lockstep on every rank: the same seed gives every rank the same cases,
/// and every rank sees the same answers (they are broadcast), so a failure
/// shrinks the same way everywhere. Lengths from 0, breaks and panics at
/// random items, 1–2 workers, ranges and vectors, both modes (any order: a
/// valid answer). `PROPTEST_CASES` (default 150) and `MAPREDUCE_MPI_SEED`
/// vary it.
fn random(world: &impl Communicator) {
    use proptest::test_runner::{Config as Cases, RngAlgorithm, TestRng, TestRunner};
    let cases = std::env::var("PROPTEST_CASES").map_or(150, |cases| cases.parse().expect("a number"));
    let seed: u64 = std::env::var("MAPREDUCE_MPI_SEED").map_or(0x5eed, |seed| seed.parse().expect("a number"));
    let config = Cases {
        cases,
        failure_persistence: None,
        ..Cases::default()
    };
    let rng = TestRng::from_seed(
        RngAlgorithm::ChaCha,
        &[seed.to_le_bytes(), [0; 8], [0; 8], [0; 8]].concat(),
    );
    let events = |len: u64| proptest::collection::btree_set(0..len.max(1), 0..3);
    let case = (0..700u64).prop_flat_map(move |len| {
        (
            Just(len),
            events(len),
            events(len),
            1..=2isize,
            any::<bool>(),
            prop::bool::weighted(0.25),
        )
    });
    let result = TestRunner::new_with_rng(config, rng).run(
        &case,
        |(len, breaks, compute_panics, workers, from_vec, any_order)| {
            let job = Scripted {
                breaks,
                compute_panics,
                ..Scripted::default()
            };
            let distributed = Config::current()
                .with_workers(workers)
                .with_deterministic(!any_order)
                .scope(|| {
                    if from_vec {
                        mapreduce::mpi::par_map_reduce(world, (0..len).collect::<Vec<_>>(), &(), &job)
                    } else {
                        mapreduce::mpi::par_map_reduce(world, indexed(0..len), &(), &job)
                    }
                })
                .map_err(|err| (err.index(), err.to_string()));
            let sequential = seq_map_reduce(0..len, &(), &job).map_err(|err| (err.index(), err.to_string()));
            match (&distributed, any_order) {
                (Ok(acc), true) if job.ends_at_break(acc) => {}
                (Err((_, message)), true) => prop_assert!(message.contains(common::SCRIPTED), "{}", message),
                _ => prop_assert_eq!(distributed, sequential),
            }
            Ok(())
        },
    );
    if let Err(failure) = result {
        panic!("rank {}: {failure}", world.rank());
    }
}

/// Breaks while every item right of the break waits for `is_cancelled`
/// (up to 60 s): the runs end promptly only if the ranks holding those
/// items see the cancellation. First a break at item 3 on rank 0, in
/// deterministic mode; then, in any-order mode, a break at the first item
/// rank 1 computes, which must stop ranks 0 and 2 too.
fn prompt(world: &impl Communicator) {
    let rank = world.rank();
    let waited = AtomicUsize::new(0);
    let wait_for_cancel = || {
        let started = Instant::now();
        while !mapreduce::is_cancelled() && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(1));
        }
        waited.fetch_add(1, Ordering::Relaxed);
        false
    };
    let at_3 = jobs::find_first(|x: &u64, _: &()| match x {
        0..=2 => false,
        // Late enough that every rank holds a block right of it by then.
        3 => {
            std::thread::sleep(Duration::from_millis(300));
            true
        }
        _ => wait_for_cancel(),
    });
    let started = Instant::now();
    let found = mapreduce::mpi::par_map_reduce(world, indexed(0..600), &(), &at_3).unwrap();
    let took = started.elapsed();
    assert_eq!(found, Some(3));
    assert!(
        took < Duration::from_secs(30),
        "the break took {took:?} to stop every rank"
    );
    if rank != 0 {
        assert!(
            waited.load(Ordering::Relaxed) > 0,
            "rank {rank} had no item in flight to cancel"
        );
    }
    println!(
        "rank {rank}: a break at item 3 stopped every rank in {took:?}; {} item(s) here saw is_cancelled",
        waited.load(Ordering::Relaxed)
    );

    waited.store(0, Ordering::Relaxed);
    let first_on_rank_1 = AtomicUsize::new(0);
    let on_rank_1 = jobs::find_first(|_: &u64, _: &()| {
        if rank == 1 && first_on_rank_1.fetch_add(1, Ordering::Relaxed) == 0 {
            std::thread::sleep(Duration::from_millis(300));
            return true;
        }
        wait_for_cancel()
    });
    let started = Instant::now();
    let found = Config::current()
        .with_deterministic(false)
        .scope(|| mapreduce::mpi::par_map_reduce(world, indexed(0..600), &(), &on_rank_1))
        .unwrap();
    let took = started.elapsed();
    assert!(found.is_some());
    assert!(
        took < Duration::from_secs(30),
        "a break on rank 1 took {took:?} to stop every rank"
    );
    if rank != 1 {
        assert!(
            waited.load(Ordering::Relaxed) > 0,
            "rank {rank} had no item in flight to cancel"
        );
    }
    println!("rank {rank}: a break on rank 1 (item {found:?}) stopped every rank in {took:?}");
}

fn panics(world: &impl Communicator) {
    for at in [0, 3, 299, 599] {
        let err = both(world, 0..600, &scripted(&[], &[at])).unwrap_err();
        assert_eq!(err.index(), Some(at as usize));
        assert!(matches!(&err, Error::Panicked { message, .. } if message.contains("scripted panic")));
    }
    // A panic left of a break wins; a break left of a panic wins.
    both(world, 0..600, &scripted(&[400], &[200])).unwrap_err();
    both(world, 0..600, &scripted(&[200], &[400])).unwrap();
    // A panic in merge fails the run everywhere, without an item.
    let err = mapreduce::mpi::par_map_reduce(world, indexed(0..600), &(), &BadMerge).unwrap_err();
    assert!(matches!(&err, Error::Panicked { index: None, message, .. } if message.contains("merge")));
    // A panic in rank 0's progress sink (user code outside the items) fails
    // the run on every rank instead of stranding the others.
    struct PanickySink;
    impl ProgressSink for PanickySink {
        fn update(&self, _: u64) {
            panic!("{} in the sink", common::SCRIPTED);
        }
    }
    let slow = jobs::sum(|x: u64, _: &()| {
        std::thread::sleep(Duration::from_millis(2));
        x
    });
    let err = Config::current()
        .with_progress_sink(Arc::new(PanickySink))
        .scope(|| mapreduce::mpi::par_map_reduce(world, indexed(0..400), &(), &slow))
        .unwrap_err();
    assert!(matches!(&err, Error::Panicked { index: None, message, .. } if message.contains("in the sink")));
    // An answer that encodes but cannot be decoded (postcard cannot read an
    // untagged enum) fails alike on every rank.
    let untagged = jobs::collect(|x: u64, _: &()| Untyped::Number(x));
    let err = mapreduce::mpi::par_map_reduce(world, indexed(0..4), &(), &untagged).unwrap_err();
    assert!(err.to_string().contains("could not be decoded"), "{err}");
    // And the communicator is clean for the next run.
    assert_eq!(both(world, 0..600, &jobs::count(|_: &u64, _: &()| true)).unwrap(), 600);
}

fn config(world: &impl Communicator) {
    let rank = world.rank();
    let config = if rank == 1 {
        Config::current().with_workers(0)
    } else {
        Config::current()
    };
    let err = config
        .scope(|| mapreduce::mpi::par_map_reduce(world, indexed(0..10), &(), jobs::sum(|x: u64, _: &()| x)))
        .unwrap_err();
    match (rank, &err) {
        (1, Error::Config(ConfigError::ZeroWorkers)) => {}
        (_, Error::Config(ConfigError::OnRank { rank: 1, reason })) => assert!(reason.contains("0 workers")),
        _ => panic!("rank {rank}: unexpected {err:?}"),
    }
    assert_eq!(
        mapreduce::mpi::par_map_reduce(world, indexed(0..10), &(), jobs::sum(|x: u64, _: &()| x)).unwrap(),
        45
    );
}

fn logs(world: &impl Communicator) {
    let rank = world.rank();
    log::info!("hello from rank {rank}");
    let job = jobs::sum(|x: u64, _: &()| {
        if x % 10 == 0 {
            log::info!("item log on rank {rank}: item {x}");
        }
        x
    });
    // Slow enough that every rank gets blocks.
    let slow = jobs::sum(|x: u64, _: &()| {
        std::thread::sleep(Duration::from_millis(1));
        job.compute(x, &())
    });
    assert_eq!(
        mapreduce::mpi::par_map_reduce(world, indexed(0..600), &(), &slow).unwrap(),
        179_700
    );
}

/// `inner` over the items' values: item `i` is `values[i]`.
struct Valued<'a, J>(&'a [u64], &'a J);

impl<J: MapReduce<u64>> MapReduce<u64> for Valued<'_, J> {
    type Output = J::Output;
    type Acc = J::Acc;
    fn empty_result(&self, ctx: &()) -> J::Acc {
        self.1.empty_result(ctx)
    }
    fn compute(&self, item: u64, ctx: &()) -> J::Output {
        self.1.compute(self.0[item as usize], ctx)
    }
    fn process_result(&self, new: J::Output, acc: J::Acc) -> ControlFlow<J::Acc, J::Acc> {
        self.1.process_result(new, acc)
    }
    fn merge(&self, left: J::Acc, right: J::Acc) -> ControlFlow<J::Acc, J::Acc> {
        self.1.merge(left, right)
    }
}

/// `range` as an indexed parallel iterator (rayon indexes `usize` ranges,
/// not `u64` ones; `indexed_range` does).
fn indexed(range: std::ops::Range<u64>) -> impl IndexedParallelIterator<Item = u64> {
    mapreduce::indexed_range(range)
}

/// Collects its items; breaks after the items in `breaks`, panics at those
/// in `panics`.
fn scripted(breaks: &[u64], panics: &[u64]) -> Scripted {
    Scripted {
        breaks: breaks.iter().copied().collect(),
        compute_panics: panics.iter().copied().collect(),
        ..Scripted::default()
    }
}

/// 3000 short runs after 300 of warm-up: no thread and no memory (each
/// run duplicates and frees a communicator) is left behind.
fn many(world: &impl Communicator) {
    let job = scripted(&[7], &[]);
    let runs = |count: usize| {
        for _ in 0..count {
            let found = mapreduce::mpi::par_map_reduce(world, indexed(0..40), &(), &job).unwrap();
            assert_eq!(found.last(), Some(&7));
        }
    };
    runs(300);
    let (threads, memory) = (common::os_threads(), common::peak_rss_kib());
    runs(3000);
    let (threads_after, memory_after) = (common::os_threads(), common::peak_rss_kib());
    assert_eq!(threads_after, threads, "threads grew over 3000 runs");
    assert!(
        memory_after < memory + 8 * 1024,
        "peak memory grew from {memory} KiB to {memory_after} KiB over 3000 runs"
    );
    println!(
        "rank {}: 3000 runs, threads {threads} -> {threads_after}, peak memory {memory} -> {memory_after} KiB",
        world.rank()
    );
}

/// CPU time of this process so far (user + system), from /proc (Linux
/// counts it in hundredths of a second there).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<u64> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|field| field.parse().unwrap())
        .collect();
    Duration::from_millis((fields[0] + fields[1]) * 10)
}

/// A rank that waits (for a late rank to arrive, then for the other rank's
/// one long item) costs next to no CPU: MPI's blocking calls would poll a
/// core for the whole second each time.
fn idle(world: &impl Communicator) {
    let rank = world.rank();
    let job = jobs::sum(|x: u64, _: &()| {
        std::thread::sleep(Duration::from_secs(1));
        x
    });
    let waiting = || {
        let (cpu, wall) = (cpu_time(), Instant::now());
        let sum = mapreduce::mpi::par_map_reduce(world, indexed(0..1), &(), &job).unwrap();
        assert_eq!(sum, 0);
        (cpu_time() - cpu, wall.elapsed())
    };
    // Rank 0 arrives a second late.
    if rank == 0 {
        std::thread::sleep(Duration::from_secs(1));
    }
    let (late_cpu, late_wall) = waiting();
    // Rank 0 gets the only item (its first block) and sleeps on it.
    let (item_cpu, item_wall) = waiting();
    // Rank 0's first join of block results (on its calling thread) takes a
    // second, while rank 1 sends block results too large to be buffered.
    let slow_join = AtomicUsize::new(0);
    let job = SlowFirstJoin(&slow_join);
    let (cpu, wall) = (cpu_time(), Instant::now());
    let all = mapreduce::mpi::par_map_reduce(world, indexed(0..200_000), &(), &job).unwrap();
    assert_eq!(all.len(), 200_000);
    let (send_cpu, send_wall) = (cpu_time() - cpu, wall.elapsed());
    if rank == 1 {
        assert!(
            send_cpu < Duration::from_millis(500),
            "{send_cpu:?} of CPU over {send_wall:?} while rank 0 was busy"
        );
    }
    println!("rank {rank}: sent results to a busy rank 0 for {send_wall:?} with {send_cpu:?} of CPU");
    if rank == 1 {
        assert!(late_wall >= Duration::from_millis(1900), "{late_wall:?}");
        assert!(
            late_cpu < Duration::from_millis(400),
            "{late_cpu:?} of CPU over {late_wall:?}"
        );
        assert!(item_wall >= Duration::from_millis(900), "{item_wall:?}");
        assert!(
            item_cpu < Duration::from_millis(200),
            "{item_cpu:?} of CPU over {item_wall:?}"
        );
    }
    println!("rank {rank}: waited {late_wall:?} with {late_cpu:?} of CPU, then {item_wall:?} with {item_cpu:?}");
}

/// Rank 0's progress sink hears of every rank's items; the others' hear
/// nothing (rank 0 alone shows progress).
fn progress(world: &impl Communicator) {
    #[derive(Default)]
    struct Recorder {
        started: Mutex<Vec<Option<u64>>>,
        updates: Mutex<Vec<u64>>,
        finished: Mutex<Vec<(u64, Outcome)>>,
    }
    impl ProgressSink for Recorder {
        fn start(&self, _: &str, total: Option<u64>) {
            self.started.lock().unwrap().push(total);
        }
        fn update(&self, done: u64) {
            self.updates.lock().unwrap().push(done);
        }
        fn finish(&self, done: u64, outcome: Outcome) {
            self.finished.lock().unwrap().push((done, outcome));
        }
    }
    let recorder = Arc::new(Recorder::default());
    let computed_here = AtomicUsize::new(0);
    let job = jobs::count(|_: &u64, _: &()| {
        computed_here.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(2));
        true
    });
    let counted = Config::current()
        .with_workers(1)
        .with_progress_sink(recorder.clone())
        .scope(|| mapreduce::mpi::par_map_reduce(world, indexed(0..600), &(), &job))
        .unwrap();
    assert_eq!(counted, 600);
    let here = computed_here.load(Ordering::Relaxed) as u64;
    if world.rank() == 0 {
        assert_eq!(*recorder.started.lock().unwrap(), [Some(600)]);
        assert_eq!(*recorder.finished.lock().unwrap(), [(600, Outcome::Completed)]);
        let updates = recorder.updates.lock().unwrap();
        assert!(updates.windows(2).all(|pair| pair[0] <= pair[1]), "{updates:?}");
        assert!(
            updates.iter().any(|&done| done > here && done < 600),
            "no update counted the other ranks' items while the run went on: {updates:?} ({here} here)"
        );
    } else {
        assert!(recorder.started.lock().unwrap().is_empty());
        assert!(recorder.updates.lock().unwrap().is_empty());
        assert!(recorder.finished.lock().unwrap().is_empty());
    }
    assert!(here > 0 && here < 600, "rank {} computed {here} items", world.rank());
}

/// An accumulator postcard writes but cannot read back.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Untyped {
    Number(u64),
}

/// Collects its items; the first `merge` of a block from item 50,000 on, on
/// a thread outside the pool (rank 0's calling thread, joining block
/// results, while rank 1 is sending more), takes a second.
struct SlowFirstJoin<'a>(&'a AtomicUsize);

impl MapReduce<u64> for SlowFirstJoin<'_> {
    type Output = u64;
    type Acc = Vec<u64>;
    fn empty_result(&self, _: &()) -> Vec<u64> {
        Vec::new()
    }
    fn compute(&self, item: u64, _: &()) -> u64 {
        item
    }
    fn process_result(&self, new: u64, mut acc: Vec<u64>) -> ControlFlow<Vec<u64>, Vec<u64>> {
        acc.push(new);
        Continue(acc)
    }
    fn merge(&self, mut left: Vec<u64>, mut right: Vec<u64>) -> ControlFlow<Vec<u64>, Vec<u64>> {
        let late = right.first().is_some_and(|&first| first >= 50_000);
        if late && rayon::current_thread_index().is_none() && self.0.fetch_add(1, Ordering::Relaxed) == 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        left.append(&mut right);
        Continue(left)
    }
}

/// This process's rank in `world` (set first thing in `rank_program`).
/// `Relaxed`: set before any run, read by the same process's threads after.
static WORLD_RANK: AtomicI32 = AtomicI32::new(-1);

/// How `Picky` decodes on the rank `PICKY_RANK` names: refused (0),
/// panicking (1). `Relaxed`: set between runs on the thread that runs them.
static PICKY_RANK: AtomicI32 = AtomicI32::new(-1);
static PICKY_PANICS: AtomicBool = AtomicBool::new(false);

/// Collected items whose `Deserialize` fails (or panics) on one rank.
#[derive(Debug, PartialEq, Serialize)]
struct Picky(Vec<u64>);

impl<'de> Deserialize<'de> for Picky {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Picky, D::Error> {
        let items = Vec::<u64>::deserialize(deserializer)?;
        let rank = WORLD_RANK.load(Ordering::Relaxed);
        if rank == PICKY_RANK.load(Ordering::Relaxed) {
            if PICKY_PANICS.load(Ordering::Relaxed) {
                panic!("{}: Picky will not be decoded on world rank {rank}", common::SCRIPTED);
            }
            return Err(serde::de::Error::custom(format!("Picky refused on world rank {rank}")));
        }
        Ok(Picky(items))
    }
}

struct CollectPicky;

impl MapReduce<u64> for CollectPicky {
    type Output = u64;
    type Acc = Picky;
    fn empty_result(&self, _: &()) -> Picky {
        Picky(Vec::new())
    }
    fn compute(&self, item: u64, _: &()) -> u64 {
        // Slow enough that every rank runs blocks.
        std::thread::sleep(Duration::from_micros(500));
        item
    }
    fn process_result(&self, new: u64, mut acc: Picky) -> ControlFlow<Picky, Picky> {
        acc.0.push(new);
        Continue(acc)
    }
    fn merge(&self, mut left: Picky, mut right: Picky) -> ControlFlow<Picky, Picky> {
        left.0.append(&mut right.0);
        Continue(left)
    }
}

/// Every rank of `world` has the same outcome: all `Ok` with equal values,
/// or all `Err` with equal messages. The outcome, as text.
fn same_everywhere<A: std::fmt::Debug>(world: &impl Communicator, result: &Result<A, Error>) -> String {
    use std::hash::{Hash, Hasher};
    let text = match result {
        Ok(value) => format!("Ok {value:?}"),
        Err(err) => format!("Err {:?} {err}", err.index()),
    };
    let mut hasher = std::hash::DefaultHasher::new();
    text.hash(&mut hasher);
    let hash = hasher.finish();
    let (mut min, mut max) = (0u64, 0u64);
    world.all_reduce_into(&hash, &mut min, ::mpi::collective::SystemOperation::min());
    world.all_reduce_into(&hash, &mut max, ::mpi::collective::SystemOperation::max());
    assert_eq!(
        min,
        max,
        "rank {}: the ranks ended differently; here: {text}",
        world.rank()
    );
    text
}

fn decode(world: &impl Communicator) {
    let size = world.size();
    for (picky, panics) in [(1, false), (size - 1, true), (0, false), (size - 1, false)] {
        PICKY_RANK.store(picky, Ordering::Relaxed);
        PICKY_PANICS.store(panics, Ordering::Relaxed);
        let result = mapreduce::mpi::par_map_reduce(world, indexed(0..600), &(), &CollectPicky);
        let text = same_everywhere(world, &result);
        if picky != 0 {
            // The answer does not decode on that rank.
            // (postcard does not keep a custom error's message.)
            let expected = if panics {
                "will not be decoded"
            } else {
                "could not be decoded"
            };
            assert!(
                text.starts_with("Err None") && text.contains(expected) && text.contains(&format!("on rank {picky}")),
                "{text}"
            );
        } else if let Err(err) = &result {
            // Rank 0 decodes other ranks' blocks: their failure is the run's.
            assert!(err.to_string().contains("could not be decoded"), "{err}");
        }
        println!(
            "rank {}: Picky on rank {picky} (panics: {panics}): {}",
            world.rank(),
            &text[..text.len().min(80)]
        );
    }
    PICKY_RANK.store(-1, Ordering::Relaxed);
    let all = mapreduce::mpi::par_map_reduce(world, indexed(0..600), &(), &CollectPicky).unwrap();
    assert_eq!(all.0, (0..600).collect::<Vec<_>>());
}

/// Rank 0's logger in the `logger` case: prints to stdout, panics on
/// records that say "boom".
struct RefusesBoom;

impl log::Log for RefusesBoom {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }
    fn log(&self, record: &log::Record<'_>) {
        let text = record.args().to_string();
        if text.contains("boom") {
            panic!("{}: the logger refuses boom", common::SCRIPTED);
        }
        println!("logged: {text}");
    }
    fn flush(&self) {}
}

fn logger(world: &impl Communicator) {
    let rank = world.rank();
    let slow = jobs::sum(|x: u64, _: &()| {
        std::thread::sleep(Duration::from_millis(1));
        x
    });
    // Logged before a run, sent during it: rank 0's logger panics.
    if rank == 1 {
        log::warn!("boom before the run");
    }
    let result = mapreduce::mpi::par_map_reduce(world, indexed(0..400), &(), &slow);
    let text = same_everywhere(world, &result);
    assert!(text.contains("the logger refuses boom"), "{text}");
    // Logged after the last run: `flush_logs` prints it, and fails alike.
    if rank == world.size() - 1 {
        log::warn!("boom after the last run");
    }
    let flushed = mapreduce::mpi::flush_logs(world);
    let text = same_everywhere(world, &flushed);
    assert!(text.contains("the logger refuses boom"), "{text}");
    // A sink that panics as the run starts.
    struct FailsAtStart;
    impl ProgressSink for FailsAtStart {
        fn start(&self, _: &str, _: Option<u64>) {
            panic!("{}: the sink refuses the start", common::SCRIPTED);
        }
    }
    let result = Config::current()
        .with_progress_sink(Arc::new(FailsAtStart))
        .scope(|| mapreduce::mpi::par_map_reduce(world, indexed(0..400), &(), &slow));
    let text = same_everywhere(world, &result);
    assert!(text.contains("the sink refuses the start"), "{text}");
    // Then all is well.
    log::info!("fine from rank {rank}");
    assert_eq!(
        mapreduce::mpi::par_map_reduce(world, indexed(0..400), &(), &slow).unwrap(),
        79_800
    );
    mapreduce::mpi::flush_logs(world).unwrap();
}

fn split_logs(world: &impl Communicator) {
    let rank = world.rank();
    let half = world
        .split_by_color(::mpi::topology::Color::with_value(rank % 2))
        .unwrap();
    log::info!("before any run, from world rank {rank}");
    let (inside, burst) = (AtomicBool::new(false), AtomicBool::new(false));
    let job = jobs::sum(|x: u64, _: &()| {
        std::thread::sleep(Duration::from_millis(1));
        if !inside.swap(true, Ordering::Relaxed) {
            log::info!("inside a run, from world rank {rank}");
        }
        if rank == 3 && !burst.swap(true, Ordering::Relaxed) {
            for line in 0..BURST {
                log::info!("burst line {line}");
            }
        }
        x
    });
    assert_eq!(
        mapreduce::mpi::par_map_reduce(&half, indexed(0..200), &(), &job).unwrap(),
        19_900
    );
    log::info!("on self_comm, from world rank {rank}");
    let alone = ::mpi::topology::SimpleCommunicator::self_comm();
    assert_eq!(
        mapreduce::mpi::par_map_reduce(&alone, indexed(0..10), &(), jobs::sum(|x: u64, _: &()| x)).unwrap(),
        45
    );
    log::info!("after the last run, from world rank {rank}");
    mapreduce::mpi::flush_logs(world).unwrap();
}
