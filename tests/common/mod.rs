//! Shared test jobs and helpers.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::ops::ControlFlow::{self, Break, Continue};
use std::sync::Once;
use std::time::Duration;

use mapreduce::MapReduce;

pub mod child;
pub mod tmux;

/// Panic messages of scripted panics start with this; the test panic hook
/// keeps them off the test output.
pub const SCRIPTED: &str = "scripted panic";

/// Keep expected (scripted) panics quiet; everything else prints as usual.
pub fn quiet_scripted_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let text = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !text.starts_with(SCRIPTED) {
                default(info);
            }
        }));
    });
}

/// Collects its items in order, with scripted events: `Break` after an item
/// in `breaks`, a panic in `compute` for items in `compute_panics`, in
/// `process_result` for items in `process_panics`. It obeys the merge law.
#[derive(Clone, Debug, Default)]
pub struct Scripted {
    pub breaks: BTreeSet<u64>,
    pub compute_panics: BTreeSet<u64>,
    pub process_panics: BTreeSet<u64>,
}

impl Scripted {
    /// Whether `acc` is a valid answer of an any-order run: in order, and
    /// ending at a break item.
    pub fn ends_at_break(&self, acc: &[u64]) -> bool {
        acc.windows(2).all(|w| w[0] < w[1]) && acc.last().is_some_and(|last| self.breaks.contains(last))
    }
}

impl<C: ?Sized> MapReduce<u64, C> for Scripted {
    type Output = u64;
    type Acc = Vec<u64>;

    fn description(&self) -> &str {
        "Scripted"
    }
    fn empty_result(&self, _: &C) -> Vec<u64> {
        Vec::new()
    }
    fn compute(&self, item: u64, _: &C) -> u64 {
        if self.compute_panics.contains(&item) {
            panic!("{SCRIPTED} in compute at {item}");
        }
        item
    }
    fn process_result(&self, item: u64, mut acc: Vec<u64>) -> ControlFlow<Vec<u64>, Vec<u64>> {
        if self.process_panics.contains(&item) {
            panic!("{SCRIPTED} in process_result at {item}");
        }
        acc.push(item);
        if self.breaks.contains(&item) {
            Break(acc)
        } else {
            Continue(acc)
        }
    }
    fn merge(&self, mut left: Vec<u64>, mut right: Vec<u64>) -> ControlFlow<Vec<u64>, Vec<u64>> {
        left.append(&mut right);
        Continue(left)
    }
}

/// The number of OS threads of this process (Linux).
pub fn os_threads() -> usize {
    status_field("Threads:")
}

/// Peak resident memory of this process, in KiB (Linux).
pub fn peak_rss_kib() -> usize {
    status_field("VmHWM:")
}

fn status_field(name: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /proc/self/status"))
}

/// The path of example `name`, built for the profile and with the features
/// the tests run with: `cargo test` builds the examples so, but a lone
/// `--test` run may find one that another command built with other
/// features (`--features durable` adds flags to `min_cut`), so each is
/// built here once per test process (a no-op when it is up to date).
pub fn example(name: &str) -> std::path::PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let path = dir.join(name);
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !built.iter().any(|built| built == name) {
        let release = dir.parent().unwrap().ends_with("release");
        let mut build = std::process::Command::new(env!("CARGO"));
        build.args(["build", "--quiet", "--example", name]);
        if release {
            build.arg("--release");
        }
        let features: Vec<&str> = [("mpi", cfg!(feature = "mpi")), ("durable", cfg!(feature = "durable"))]
            .into_iter()
            .filter_map(|(feature, on)| on.then_some(feature))
            .collect();
        if !features.is_empty() {
            build.args(["--features", &features.join(",")]);
        }
        assert!(build.status().unwrap().success(), "building example {name} failed");
        built.push(name.to_owned());
    }
    path
}

/// Run example `name` with `args`; its standard output, which must succeed.
pub fn run_example(name: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(example(name))
        .args(args)
        .env("MAPREDUCE_PROGRESS", "0")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "example {name} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Collects items; `merge` panics once both sides are non-empty.
pub struct BadMerge;

impl MapReduce<u64> for BadMerge {
    type Output = u64;
    type Acc = Vec<u64>;

    fn empty_result(&self, _: &()) -> Vec<u64> {
        Vec::new()
    }
    fn compute(&self, item: u64, _: &()) -> u64 {
        item
    }
    fn process_result(&self, item: u64, mut acc: Vec<u64>) -> ControlFlow<Vec<u64>, Vec<u64>> {
        acc.push(item);
        Continue(acc)
    }
    fn merge(&self, left: Vec<u64>, right: Vec<u64>) -> ControlFlow<Vec<u64>, Vec<u64>> {
        if !left.is_empty() && !right.is_empty() {
            panic!("{SCRIPTED}: merge refuses");
        }
        Continue(if left.is_empty() { right } else { left })
    }
}

/// Stops at the first adjacent pair of items that sums to 5; `compute`
/// panics on item 100. Lawful: a pair that straddles two stretches is found
/// by `merge`, which then ends the stretch at the pair.
pub struct PairSumsToFive;

impl MapReduce<u64> for PairSumsToFive {
    type Output = u64;
    type Acc = Vec<u64>;

    fn empty_result(&self, _: &()) -> Vec<u64> {
        Vec::new()
    }
    fn compute(&self, item: u64, _: &()) -> u64 {
        if item == 100 {
            panic!("{SCRIPTED}: compute refuses 100");
        }
        item
    }
    fn process_result(&self, new: u64, mut acc: Vec<u64>) -> ControlFlow<Vec<u64>, Vec<u64>> {
        let pair = acc.last().is_some_and(|last| last + new == 5);
        acc.push(new);
        if pair {
            Break(acc)
        } else {
            Continue(acc)
        }
    }
    fn merge(&self, mut left: Vec<u64>, right: Vec<u64>) -> ControlFlow<Vec<u64>, Vec<u64>> {
        if let (Some(last), Some(&first)) = (left.last(), right.first()) {
            if last + first == 5 {
                left.push(first);
                return Break(left);
            }
        }
        left.extend(right);
        Continue(left)
    }
}

/// `len` items of 10 with `2, 3, 100` at `at`: the pair at `at` breaks,
/// and the panicking item right after it is never reached sequentially.
pub fn pair_then_panic(at: usize, len: usize) -> Vec<u64> {
    let mut items = vec![10; len];
    items[at..at + 3].copy_from_slice(&[2, 3, 100]);
    items
}

/// An order-sensitive float sum: values of both signs over 20 orders of
/// magnitude, so any other grouping changes the last bits. Breaks once the
/// running sum passes `stop_above` (a lawful job: the merge re-checks).
pub struct FloatSum {
    pub stop_above: f64,
    pub delay_every: Option<u64>,
}

pub fn float_value(item: u64) -> f64 {
    let mut z = item.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mantissa = (z >> 11) as f64 / (1u64 << 53) as f64;
    let exponent = (z % 21) as i32 - 10;
    let sign = if z & (1 << 5) == 0 { 1.0 } else { -1.0 };
    sign * mantissa * 10f64.powi(exponent)
}

impl MapReduce<u64> for FloatSum {
    type Output = f64;
    type Acc = f64;

    fn empty_result(&self, _: &()) -> f64 {
        0.0
    }
    fn compute(&self, item: u64, _: &()) -> f64 {
        if self.delay_every.is_some_and(|every| item % every == 0) {
            std::thread::sleep(Duration::from_micros(50 + item % 200));
        }
        float_value(item)
    }
    fn process_result(&self, new: f64, acc: f64) -> ControlFlow<f64, f64> {
        self.merge(acc, new)
    }
    fn merge(&self, left: f64, right: f64) -> ControlFlow<f64, f64> {
        let sum = left + right;
        if sum > self.stop_above {
            Break(sum)
        } else {
            Continue(sum)
        }
    }
}

/// A tiny seeded generator (splitmix64), so that a seed replays a case
/// exactly and tests need no dependency for it.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform-ish in `0..n` (`0` for `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}
