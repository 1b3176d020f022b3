//! Kill -9 anywhere (issue #12): a durable search killed with `SIGKILL` at
//! any moment, in the middle of a checkpoint write too, resumes to the bits
//! of an uninterrupted run, and each kill loses a bounded amount of work.
//!
//! [`kill_anywhere_resumes_to_the_same_bits_and_loses_little`] re-runs this
//! test binary as a child ([`scenario_durable_search`]) that runs one durable
//! search over `0..N` (an order-sensitive float sum and the leftmost
//! smallest key, in one accumulator) with a checkpoint every 20, 30 or 50
//! ms, on 1 or 2 workers, chosen per attempt, and kills it at seeded random
//! moments (from its start, before the file is even read, to late in the
//! search), rerunning it until it finishes. Some attempts pause each
//! checkpoint write halfway through its temporary file
//! (`MAPREDUCE_TEST_CHECKPOINT_PAUSE_MS`, 20–60 ms), and some of those are
//! killed once that file shows up; a kill landed inside a write when the
//! temporary file this attempt wrote is still there after it. Every
//! `compute` call of every attempt is counted in a memory-mapped file that
//! outlives the kills. The test asserts:
//!
//! - the answer is bit for bit what `par_map_reduce_in_order` returns
//!   uninterrupted in this process (same leaf size), and one more run
//!   returns it without computing anything;
//! - every attempt resumes at a whole leaf, never before the prefix the
//!   attempt before it resumed from, never past what that attempt computed
//!   (from the info line "resuming … after N item(s) saved"); the last
//!   attempt computes each remaining item exactly once; no attempt logs a
//!   warning or an error;
//! - the items computed over all attempts stay within `N` per round plus
//!   the sum, over the kills, of the bound [`Attempt::bound`] derives from
//!   the engine's rules (explained there); and no more than 1 kill in 32
//!   exceeds its own bound;
//! - at least 3 kills landed inside a write, 3 in resumed runs, and 3 on
//!   each worker count in runs that had computed something.
//!
//! **Sizes.** `N` is 1.2·10^7 items in a debug build (`cargo test`: on 2
//! cores at load 12, 13–14 s for the whole test, half of it the reference
//! run; 10–35 s under heavier load) and 10^8 in a release build (14 s),
//! with 32 kills. A soak, 200 kills over 6 × `N` (80 s in release), is
//! `MAPREDUCE_KILL_SOAK=1 cargo test --release --features durable --test
//! durable_kill`. `MAPREDUCE_KILL_SEED=<n>` draws another schedule of kills
//! (the seed fixes the choices; the moments also follow the machine's
//! pace), and `MAPREDUCE_KILL_VERBOSE=1` prints a line per kill (with
//! `--nocapture`). BENCHMARKS.md has the figures.
#![cfg(all(feature = "durable", unix))]

mod common;

use std::fs::{self, OpenOptions};
use std::ops::ControlFlow::{self, Continue};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::child::{scenario, spawn_scenario};
use common::{float_value, Rng};
use mapreduce::durable::{par_map_reduce_durable, Checkpoint};
use mapreduce::{env_logger, indexed_range, log, par_map_reduce_in_order, Config, Error, MapReduce};

/// Items per leaf, fixed so that the test knows the blocks' sizes: small
/// enough that blocks are sized by the pace, not by the floor of a leaf per
/// worker.
const LEAF: u64 = 2048;
/// No block holds more than a 16th of the leaves (`BLOCKS_AT_MOST` there).
const BLOCKS_AT_MOST: u64 = 16;
/// What a checkpoint write may take beyond the test's pause: waking the
/// writer thread, a few hundred bytes, two `fsync`s, a rename. Measured on
/// 2 cores at load 13, from handing a checkpoint over to its rename on
/// tmpfs: median 0.3 ms, 99th percentile 40 ms, worst 78 ms in 546 writes.
/// The `fsync`s of a disk add to that (here: median 4.5 ms, worst 33 ms).
fn write_slack(dir: &Path) -> Duration {
    if dir.starts_with("/dev/shm") {
        Duration::from_millis(30)
    } else {
        Duration::from_millis(60)
    }
}
/// Paces are measured over stretches at least this long.
const PACE_SPAN: Duration = Duration::from_millis(10);
const CHECKPOINT: &str = "search.ckpt";
/// Where the library writes a checkpoint before renaming it.
const TEMPORARY: &str = ".search.ckpt.tmp";
const TALLY: &str = "computed.tally";
/// What the child prints before its answer.
const ANSWER: &str = "ANSWER:";

/// What one run of the test does.
struct Plan {
    items: u64,
    kills: usize,
    seed: u64,
    verbose: bool,
}

impl Plan {
    fn from_env() -> Plan {
        let on = |name| std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0");
        let items = if cfg!(debug_assertions) {
            12_000_000
        } else {
            100_000_000
        };
        let (items, kills) = if on("MAPREDUCE_KILL_SOAK") {
            (items * 6, 200)
        } else {
            (items, 32)
        };
        let seed = std::env::var("MAPREDUCE_KILL_SEED")
            .ok()
            .map(|s| s.parse().expect("MAPREDUCE_KILL_SEED: a number"))
            .unwrap_or(0x6B69_6C6C);
        Plan {
            items,
            kills,
            seed,
            verbose: on("MAPREDUCE_KILL_VERBOSE"),
        }
    }
}

/// The search: an order-sensitive float sum (values over 20 orders of
/// magnitude: any other grouping changes its last bits) and the leftmost
/// item with the smallest key (a key is shared by about one item in 10^6,
/// so the leftmost of equals matters), in one pass. `compute` counts its
/// calls in `computed`.
struct SumAndLeast<'t> {
    computed: Option<&'t AtomicU64>,
}

type Acc = (f64, Option<(u32, u64)>);

fn key(item: u64) -> u32 {
    (Rng(item).next() % 1_000_003) as u32
}

impl MapReduce<u64> for SumAndLeast<'_> {
    type Output = (f64, u32, u64);
    type Acc = Acc;

    fn empty_result(&self, _: &()) -> Acc {
        (0.0, None)
    }
    fn compute(&self, item: u64, _: &()) -> (f64, u32, u64) {
        if let Some(computed) = self.computed {
            // Counted as it starts, so that an item cut short by a kill
            // counts too: the tally never undercounts.
            computed.fetch_add(1, Ordering::Relaxed);
        }
        (float_value(item), key(item), item)
    }
    fn process_result(&self, (value, key, item): (f64, u32, u64), acc: Acc) -> ControlFlow<Acc, Acc> {
        self.merge(acc, (value, Some((key, item))))
    }
    fn merge(&self, left: Acc, right: Acc) -> ControlFlow<Acc, Acc> {
        let least = match (left.1, right.1) {
            (Some(l), Some(r)) => Some(if r.0 < l.0 { r } else { l }),
            (l, r) => l.or(r),
        };
        Continue((left.0 + right.0, least))
    }
}

/// An answer, as the bits to compare.
fn describe((sum, least): Acc) -> String {
    format!("sum {:#018x} least {least:?}", sum.to_bits())
}

/// One counter per attempt in a file mapped `MAP_SHARED` by the test and
/// its children: a count is in the file the moment it is made, so it
/// survives the attempt's `kill -9`.
struct Tally {
    base: *mut u64,
    slots: usize,
    _map: memmap2::MmapMut,
}

impl Tally {
    fn create(path: &Path, slots: usize) -> Tally {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap();
        file.set_len((slots * 8) as u64).unwrap();
        Tally::map(&file)
    }

    fn open(path: &Path) -> Tally {
        let file = OpenOptions::new().read(true).write(true).open(path).unwrap();
        Tally::map(&file)
    }

    fn map(file: &fs::File) -> Tally {
        // SAFETY: the file is this test's own, and its processes change it
        // only through the atomics of `computed`.
        let mut map = unsafe { memmap2::MmapMut::map_mut(file) }.unwrap();
        Tally {
            base: map.as_mut_ptr().cast(),
            slots: map.len() / 8,
            _map: map,
        }
    }

    /// The items attempt `attempt` computed.
    fn computed(&self, attempt: usize) -> &AtomicU64 {
        assert!(attempt < self.slots, "more attempts than the tally holds");
        // SAFETY: the map is page-aligned, so every slot is aligned for a
        // u64; it lives as long as `self`; every access to it is atomic.
        unsafe { AtomicU64::from_ptr(self.base.add(attempt)) }
    }
}

/// The child: one attempt at the durable search, told what to do by
/// environment variables; prints its answer if it gets to the end.
#[test]
#[ignore = "a child of kill_anywhere_resumes_to_the_same_bits_and_loses_little"]
fn scenario_durable_search() {
    let Some(dir) = scenario() else { return };
    let dir = PathBuf::from(dir);
    let var = |name: &str| -> u64 {
        let value = std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"));
        value.parse().unwrap()
    };
    let (items, attempt, workers, interval) = (
        var("KILL_ITEMS"),
        var("KILL_ATTEMPT") as usize,
        var("KILL_WORKERS") as isize,
        var("KILL_INTERVAL_MS"),
    );
    // Warnings, and the line that says where a resumed run starts.
    let mut logs = env_logger::Builder::new();
    logs.filter_level(log::LevelFilter::Warn)
        .filter_module("mapreduce::durable", log::LevelFilter::Info)
        .format_timestamp(None);
    mapreduce::logging::init_logging_with(logs);
    let tally = Tally::open(&dir.join(TALLY));
    let job = SumAndLeast {
        computed: Some(tally.computed(attempt)),
    };
    let checkpoint = Checkpoint::new(
        dir.join(CHECKPOINT),
        format!("kill test: sum and least key of 0..{items}, leaves of {LEAF}"),
    )
    .every(Duration::from_millis(interval));
    let answer = Config::current()
        .with_progress_bars(false)
        .with_workers(workers)
        .with_leaf_size(LEAF as usize)
        .scope(|| par_map_reduce_durable(indexed_range(0..items), &(), job, &checkpoint));
    match answer {
        Ok(answer) => println!("{ANSWER} {}", describe(answer)),
        Err(err) => panic!("the durable search failed: {err}"),
    }
}

/// The uninterrupted run's answer, in this process.
fn reference(items: u64) -> Result<Acc, Error> {
    Config::current()
        .with_progress_bars(false)
        .with_leaf_size(LEAF as usize)
        .scope(|| par_map_reduce_in_order(indexed_range(0..items), &(), SumAndLeast { computed: None }))
}

/// A scratch directory, on tmpfs when there is one: a `kill -9` needs no
/// `fsync`, and without a disk's latency the bound is tighter.
fn scratch() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let parent = if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    };
    let dir = parent.join(format!("mapreduce-kill-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// The temporary file as a write left it (inode, modification time,
/// length), if there is one.
type Trace = Option<(u64, i64, i64, u64)>;

fn temporary(dir: &Path) -> Trace {
    let meta = fs::metadata(dir.join(TEMPORARY)).ok()?;
    Some((meta.ino(), meta.mtime(), meta.mtime_nsec(), meta.len()))
}

/// How the test drives one attempt.
struct Orders {
    index: usize,
    items: u64,
    workers: u64,
    interval: Duration,
    /// The test pause inside each write (zero: none).
    pause: Duration,
    /// Kill it this long after its start; `None`: let it finish.
    kill_after: Option<Duration>,
    /// Then wait for a write to begin, and this long more.
    into_write: Option<Duration>,
}

/// Where an attempt is in its orders.
#[derive(Clone, Copy)]
enum Phase {
    /// To finish.
    Run,
    /// To be killed at this time, or to wait then for a write.
    Wait(Instant),
    /// To be killed inside the next write, or at this time if none comes.
    AwaitWrite(Instant),
    KillAt(Instant),
}

/// What one attempt was asked to do and did.
struct Attempt {
    workers: u64,
    interval: Duration,
    pause: Duration,
    into_write: bool,
    /// `(time, items computed)`, from its start to its end.
    samples: Vec<(Instant, u64)>,
    /// When it was killed.
    killed: Option<Instant>,
    /// Whether the kill landed inside a checkpoint write: between the
    /// creation of the temporary file and its rename.
    in_write: bool,
    computed: u64,
    /// Where it resumed, if it said so (`None`: from the start, or it did
    /// not get as far as reading the file).
    resumed: Option<u64>,
    /// Whether it returned the answer a finished run saved.
    remembered: bool,
    answer: Option<String>,
}

/// Start an attempt, sample its count every half millisecond or so, kill
/// it as ordered.
fn attempt(dir: &Path, tally: &Tally, orders: Orders) -> Attempt {
    let before = temporary(dir);
    let writing = || temporary(dir).is_some_and(|trace| Some(trace) != before);
    let counter = tally.computed(orders.index);
    let env = [
        ("KILL_ITEMS", orders.items.to_string()),
        ("KILL_ATTEMPT", orders.index.to_string()),
        ("KILL_WORKERS", orders.workers.to_string()),
        ("KILL_INTERVAL_MS", orders.interval.as_millis().to_string()),
        (
            "MAPREDUCE_TEST_CHECKPOINT_PAUSE_MS",
            orders.pause.as_millis().to_string(),
        ),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let started = Instant::now();
    let mut child = spawn_scenario("scenario_durable_search", dir.to_str().unwrap(), &env);
    let mut samples = vec![(started, 0)];
    let mut phase = match orders.kill_after {
        Some(after) => Phase::Wait(started + after),
        None => Phase::Run,
    };
    let mut killed = None;
    while child.try_wait().unwrap().is_none() {
        let now = Instant::now();
        samples.push((now, counter.load(Ordering::Relaxed)));
        if now - started > Duration::from_secs(300) {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "attempt {} still running after 300 s (a hang?); stderr:\n{}",
                orders.index,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        phase = match phase {
            Phase::Wait(at) if now >= at => match orders.into_write {
                // A write begins every interval: give up if none comes
                // (the search may be over).
                Some(_) => Phase::AwaitWrite(now + 3 * (orders.interval + orders.pause)),
                None => Phase::KillAt(now),
            },
            Phase::AwaitWrite(_) if writing() => Phase::KillAt(now + orders.into_write.unwrap_or_default()),
            Phase::AwaitWrite(give_up) if now >= give_up => Phase::KillAt(now),
            phase => phase,
        };
        if matches!(phase, Phase::KillAt(at) if now >= at) {
            killed = Some(Instant::now());
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let output = child.wait_with_output().unwrap();
    let computed = counter.load(Ordering::Relaxed);
    samples.push((Instant::now(), computed));
    let in_write = killed.is_some() && writing();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let answer = stdout
        .lines()
        .find_map(|line| line.split_once(ANSWER))
        .map(|(_, answer)| answer.trim().to_owned());
    if killed.is_none() {
        assert!(
            output.status.success() && answer.is_some(),
            "attempt {} failed ({}):\n{stderr}",
            orders.index,
            output.status
        );
    }
    for line in stderr.lines() {
        assert!(
            !["WARN", "ERROR", "panicked"].iter().any(|bad| line.contains(bad)),
            "attempt {}: {line}",
            orders.index
        );
    }
    let resumed = stderr.lines().find(|line| line.contains("resuming")).map(|line| {
        let (_, after) = line.split_once(" after ").expect("resuming … after N item(s)");
        after.split_whitespace().next().unwrap().parse().unwrap()
    });
    Attempt {
        workers: orders.workers,
        interval: orders.interval,
        pause: orders.pause,
        into_write: orders.into_write.is_some(),
        samples,
        killed,
        in_write,
        computed,
        resumed,
        remembered: stderr.contains("returning the answer saved"),
        answer,
    }
}

impl Attempt {
    /// Its pace (items per second) from its first item to its end, if it
    /// computed for long enough to tell.
    fn pace(&self) -> Option<f64> {
        let first = self.samples.iter().find(|(_, count)| *count > 0)?;
        let (end, count) = *self.samples.last().unwrap();
        let time = (end - first.0).as_secs_f64();
        (time > 0.02).then(|| count as f64 / time)
    }

    /// The items computed by `at` at least: the count of the last sample
    /// before it.
    fn computed_by(&self, at: Option<Instant>) -> u64 {
        let Some(at) = at else { return 0 };
        self.samples
            .iter()
            .take_while(|(time, _)| *time <= at)
            .last()
            .map_or(0, |(_, count)| *count)
    }

    /// The most items it may have computed in any stretch of `length`: a
    /// stretch `(a, a + length]` lies between the last sample at or before
    /// `a` and the first sample at least `length` after the sample after it.
    fn most_in(&self, length: Duration) -> u64 {
        let samples = &self.samples;
        let mut most = 0;
        let mut end = 0;
        for i in 0..samples.len() - 1 {
            let reach = samples[i + 1].0 + length;
            end = end.max(i + 1);
            while end < samples.len() - 1 && samples[end].0 < reach {
                end += 1;
            }
            most = most.max(samples[end].1 - samples[i].1);
        }
        most
    }

    /// The fastest pace (items per second) between two samples at least
    /// `span` apart.
    fn fastest_pace(&self, span: Duration) -> f64 {
        let samples = &self.samples;
        let mut fastest: f64 = 0.0;
        let mut end = 0;
        for (i, &(start, from)) in samples.iter().enumerate() {
            end = end.max(i);
            while end < samples.len() && samples[end].0 - start < span {
                end += 1;
            }
            let Some(&(stop, to)) = samples.get(end) else { break };
            fastest = fastest.max((to - from) as f64 / (stop - start).as_secs_f64());
        }
        fastest
    }

    /// The most items its kill may lose, in a search of `items` items whose
    /// writes take at most the pause plus `slack`.
    ///
    /// **Why.** A durable scan evaluates blocks of whole leaves one after
    /// another. After each, if the interval has passed since its last save,
    /// it hands the prefix done so far to its writer thread and that is a
    /// save; its start counts as one (of the prefix it resumed, already in
    /// the file). The writer writes the newest prefix handed to it, one
    /// write at a time. Let `W` bound a write (waking the writer, the
    /// test's pause, the I/O and the rename), `t` be the kill, and `s` the
    /// last save at or before `t - 2W`. By `t` the writer has finished the
    /// write it was in at `s`, then one of a prefix at least `s`'s: the file
    /// holds all that was done at `s`, and the kill loses at most what was
    /// computed after `s`, which is
    ///
    /// 1. the blocks that ended before `s + interval` (else one of them
    ///    would have been the next save): at most the most items computed in
    ///    any interval;
    /// 2. the block running at `s + interval`, whose end is the next save
    ///    `s'`: at most the largest block (below);
    /// 3. the blocks after `s'`, computed after `t - 2W` (since `s` is the
    ///    last save by then): at most the items computed in the last `2W`
    ///    before the kill (its partial block included).
    ///
    /// **Blocks** (`Scan::callback`, `Blocks::next` and `fitting_block` in
    /// `src/engine/in_order.rs`). The first block of a durable scan holds a
    /// leaf per worker (rounded up to a power of two). Each later one holds
    /// at most what the block before it did in a quarter interval at that
    /// block's pace (rounded down to a power of two), but at least a leaf
    /// per worker, and never more than a 16th of the leaves (or the first
    /// block, if that is more). A block's pace is taken as at most twice
    /// the fastest pace sampled over 10 ms.
    ///
    /// Terms 1 and 3 are counted from the samples, so the bound follows the
    /// machine's pace as load comes and goes. It assumes `W` and the pace of
    /// a block; a machine that stalls the writer thread for longer than the
    /// slack (or runs one block at more than twice its best 10 ms pace) can
    /// break it for a kill now and then, which the sum over the kills
    /// absorbs (and the test lets 1 kill in 32 exceed its own bound). Typical
    /// losses are a fifth to a third of it: a kill lands half an interval and
    /// a block after a save on average, and writes take well under a
    /// millisecond. The largest share seen in some 800 kills was 0.71.
    fn bound(&self, items: u64, slack: Duration) -> u64 {
        let killed = self.killed.expect("a killed attempt");
        let write = self.pause + slack;
        let last = self.computed - self.computed_by(killed.checked_sub(2 * write));
        let interval = self.most_in(self.interval);
        let leaves = items.div_ceil(LEAF);
        let largest = prev_power_of_two(leaves / BLOCKS_AT_MOST);
        let floor = self.workers.next_power_of_two();
        let paced = (2.0 * self.fastest_pace(PACE_SPAN) * (self.interval / 4).as_secs_f64()) as u64;
        let block = (floor * LEAF).max(paced).min(largest.max(floor) * LEAF);
        last + interval + block
    }
}

/// The largest power of two at most `n` (1 for 0).
fn prev_power_of_two(n: u64) -> u64 {
    if n <= 1 {
        1
    } else {
        1 << (63 - n.leading_zeros())
    }
}

/// Check a round of attempts, from an empty file to the answer; the items
/// each attempt lost (computed, but not in the prefix the next one resumed
/// from).
fn check_round(round: &[Attempt], items: u64, reference: &str) -> Vec<u64> {
    let last = round.last().expect("an attempt");
    assert_eq!(
        last.answer.as_deref(),
        Some(reference),
        "the answer differs from the uninterrupted run's"
    );
    // Where each attempt started, if it got that far: an attempt reads the
    // file (and says where it resumes) before it computes anything.
    let starts: Vec<Option<u64>> = round
        .iter()
        .map(|a| {
            if a.remembered {
                Some(items)
            } else if a.resumed.is_some() || a.computed > 0 {
                Some(a.resumed.unwrap_or(0))
            } else {
                None
            }
        })
        .collect();
    let mut lost = Vec::new();
    for (i, attempt) in round.iter().enumerate() {
        let Some(start) = starts[i] else {
            lost.push(0);
            continue;
        };
        assert!(
            start % LEAF == 0 || start == items,
            "attempt {i} resumed after {start} items, not a whole leaf"
        );
        // Attempts that did not get as far as reading the file left it
        // alone.
        let next = starts[i + 1..].iter().flatten().next().copied().unwrap_or(items);
        assert!(
            next >= start,
            "attempt {i} resumed after {start} items, the next one after {next}: saved work was lost"
        );
        assert!(
            next - start <= attempt.computed,
            "attempt {i} resumed after {start} items and computed {}, yet the next one resumed after {next}",
            attempt.computed
        );
        lost.push(attempt.computed - (next - start));
    }
    if last.remembered {
        assert_eq!(last.computed, 0, "a saved answer was returned after computing items");
    } else {
        assert_eq!(lost.last(), Some(&0), "the last attempt computed some items twice");
    }
    lost
}

#[test]
fn kill_anywhere_resumes_to_the_same_bits_and_loses_little() {
    let plan = Plan::from_env();
    let dir = scratch();
    let slack = write_slack(&dir);
    let began = Instant::now();
    let reference = describe(reference(plan.items).unwrap());
    let reference_time = began.elapsed();
    let tally = Tally::create(&dir.join(TALLY), plan.kills * 4 + 64);
    let mut rng = Rng(plan.seed);
    // Each attempt is killed after a random time between 0 and twice the
    // time the rest of the search would take at the fastest pace seen,
    // shared among the kills still to come and 3 more: the kills leave some
    // of the search to a last attempt, which finishes it. An attempt that
    // finishes before its kill (the machine got faster) ends the round, and
    // another round starts from an empty file.
    let mut pace = plan.items as f64 / reference_time.as_secs_f64();
    let mut rounds: Vec<Vec<Attempt>> = Vec::new();
    let mut kills = 0;
    let mut index = 0;
    while kills < plan.kills {
        let _ = fs::remove_file(dir.join(CHECKPOINT));
        let mut round: Vec<Attempt> = Vec::new();
        loop {
            let workers = 1 + rng.below(2);
            let interval = Duration::from_millis([20, 30, 50][rng.below(3) as usize]);
            // 30% of the attempts are killed inside a write, 15% more pause
            // their writes too.
            let kind = rng.below(100);
            let pause = if kind < 45 {
                Duration::from_millis(20 + rng.below(41))
            } else {
                Duration::ZERO
            };
            let into_write = (kind < 30).then(|| Duration::from_micros(rng.below(pause.as_micros() as u64 * 9 / 10)));
            let share = rng.below(2001) as f64 / 1000.0;
            // How far the last attempt got (further than it saved).
            let reached = round
                .iter()
                .rev()
                .find(|a| a.computed > 0)
                .map_or(0, |a| a.resumed.unwrap_or(0) + a.computed);
            let rest = plan.items.saturating_sub(reached) as f64 / pace;
            let mean = rest / (plan.kills - kills + 3) as f64;
            let orders = Orders {
                index,
                items: plan.items,
                workers,
                interval,
                pause,
                kill_after: (kills < plan.kills).then(|| Duration::from_secs_f64(mean * share)),
                into_write,
            };
            index += 1;
            let attempt = attempt(&dir, &tally, orders);
            kills += usize::from(attempt.killed.is_some());
            pace = pace.max(attempt.pace().unwrap_or(0.0));
            let finished = attempt.answer.is_some();
            round.push(attempt);
            if finished {
                break;
            }
        }
        rounds.push(round);
    }

    // Done is remembered: one more run answers at once.
    let again = attempt(
        &dir,
        &tally,
        Orders {
            index,
            items: plan.items,
            workers: 2,
            interval: Duration::from_millis(20),
            pause: Duration::ZERO,
            kill_after: None,
            into_write: None,
        },
    );
    assert!(
        again.remembered && again.computed == 0,
        "the finished search was not remembered"
    );
    assert_eq!(again.answer.as_deref(), Some(reference.as_str()));

    let (mut computed, mut lost, mut allowed) = (0, 0, 0);
    let mut over = Vec::new();
    let mut worst = (0.0, 0, 0);
    for round in &rounds {
        for (attempt, lost_here) in round.iter().zip(check_round(round, plan.items, &reference)) {
            computed += attempt.computed;
            lost += lost_here;
            let Some(killed) = attempt.killed else { continue };
            let bound = attempt.bound(plan.items, slack);
            allowed += bound;
            let share = lost_here as f64 / bound as f64;
            if share > worst.0 {
                worst = (share, lost_here, bound);
            }
            if lost_here > bound {
                over.push((lost_here, bound));
            }
            if plan.verbose {
                eprintln!(
                    "kill after {:>4} ms: {} worker(s), every {:?}, pause {:?}{}{}: computed {:>8}, lost {:>7}, bound {:>7}",
                    (killed - attempt.samples[0].0).as_millis(),
                    attempt.workers,
                    attempt.interval,
                    attempt.pause,
                    if attempt.into_write { ", aimed at a write" } else { "" },
                    if attempt.in_write { ", inside a write" } else { "" },
                    attempt.computed,
                    lost_here,
                    bound,
                );
            }
        }
    }
    let killed: Vec<&Attempt> = rounds.iter().flatten().filter(|a| a.killed.is_some()).collect();
    let in_write = killed.iter().filter(|a| a.in_write).count();
    let aimed = killed.iter().filter(|a| a.into_write).count();
    let resumed = killed.iter().filter(|a| a.resumed.is_some() && a.computed > 0).count();
    let on = |workers| killed.iter().filter(|a| a.workers == workers && a.computed > 0).count();
    let per_round = rounds.len() as u64 * plan.items;
    eprintln!(
        "{} items, {} round(s), {index} attempts, {kills} kills: {in_write} inside a write ({aimed} aimed at one), \
         {resumed} of resumed runs, {} and {} on 1 and 2 workers with items computed; \
         {computed} items computed, {lost} lost, bound {} + {allowed}; worst kill lost {} of its bound {}, \
         {} over; reference run {reference_time:.1?}, all {:.1?}",
        plan.items,
        rounds.len(),
        on(1),
        on(2),
        per_round,
        worst.1,
        worst.2,
        over.len(),
        began.elapsed()
    );
    assert_eq!(computed, per_round + lost);
    assert!(
        computed <= per_round + allowed,
        "{computed} items computed for {} round(s) of {} items and {kills} kills: more than the {allowed} the kills may lose",
        rounds.len(),
        plan.items
    );
    assert!(
        over.len() <= kills / 32,
        "{} kill(s) lost more than their bound (lost, bound): {over:?}",
        over.len()
    );
    assert!(in_write >= 3, "only {in_write} kill(s) landed inside a write");
    assert!(resumed >= 3, "only {resumed} kill(s) of resumed runs");
    assert!(on(1) >= 3 && on(2) >= 3, "too few kills on 1 or 2 workers");
    fs::remove_dir_all(&dir).unwrap();
}
