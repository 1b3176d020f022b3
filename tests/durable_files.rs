//! Bad checkpoint files never lie (issue #12): a damaged, foreign,
//! nonsensical or unusable checkpoint is `Error::Checkpoint` naming its path
//! and the reason, computes nothing and is left as it was: never a panic,
//! never an answer.
//!
//! The seeds are real checkpoints: a search stopped midway (running) and one
//! run to its end (finished), for an `f64` sum and for a `Vec<Option<u32>>`
//! collection. Damage to the frame (truncations, bit flips, insertions,
//! deletions, overwrites) is judged by an independent reading of the frame
//! documented in `src/durable/file.rs` (`frame_verdict`): the refusal must
//! name the reason the format gives. Content behind a valid frame is
//! crafted with a mirror of the documented body (`Meta`, `State`,
//! checked to re-encode every seed byte for byte) and sealed with a fresh
//! checksum, so that the checks behind the checksum are the ones hit: other
//! versions, other searches, stacks that do not fit their leaves, leaves
//! beyond the input, items that disagree with the leaves, accumulators that
//! do not decode, bytes left over.
//!
//! What no file format can refuse is a forgery: a sealed file whose
//! well-typed accumulators are simply other numbers. Those are not tried.
//!
//! Paths where nothing can be written: root ignores permissions, so as root
//! the immutable attribute (`chattr +i`, set with the `FS_IOC_SETFLAGS`
//! ioctl) stands for "no write permission", on the checkpoint file or its
//! directory; other users get read-only permissions. `/sys` refuses new
//! files even to root.
#![cfg(feature = "durable")]

mod common;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mapreduce::durable::{par_map_reduce_durable, Checkpoint, CheckpointError, CheckpointProblem};
use mapreduce::{indexed_range, jobs, par_map_reduce_in_order, Config, Error, StopHandle};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// The format, as `src/durable/file.rs` documents it.

const MAGIC: [u8; 8] = *b"\x89MRCKPT\n";
const VERSION: u32 = 1;
/// Magic, version, body length.
const HEAD: usize = 20;

/// The header at the start of the body (postcard), field for field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Meta {
    key: String,
    acc_type: String,
    input: Input,
    leaf_size: u64,
    deterministic: bool,
    saved_at: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
enum Input {
    Indexed(u64),
    Stream(Option<u64>),
}

/// The state after the header (postcard), variant for variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum State<A> {
    Running {
        leaves: u64,
        items: u64,
        stack: Vec<(u32, A)>,
    },
    Finished {
        answer: A,
    },
}

/// A frame around `body`: magic, `version`, the body's length, the body,
/// the checksum of all that.
fn sealed(version: u32, body: &[u8]) -> Vec<u8> {
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
    bytes.extend_from_slice(body);
    let checksum = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&checksum.to_le_bytes());
    bytes
}

/// `bytes` with its last 4 bytes replaced by the checksum of the rest.
fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.truncate(bytes.len() - 4);
    let checksum = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&checksum.to_le_bytes());
    bytes
}

fn body_of(bytes: &[u8]) -> &[u8] {
    &bytes[HEAD..bytes.len() - 4]
}

fn encode<A: Serialize>(meta: &Meta, state: &State<A>) -> Vec<u8> {
    let mut body = postcard::to_allocvec(meta).unwrap();
    body.extend(postcard::to_allocvec(state).unwrap());
    body
}

/// A checkpoint's header and state, read with the mirror.
fn decode<A: DeserializeOwned>(bytes: &[u8]) -> (Meta, State<A>) {
    assert_eq!(frame_verdict(bytes), None, "not a valid frame");
    let (meta, rest) = postcard::take_from_bytes::<Meta>(body_of(bytes)).unwrap();
    let (state, left) = postcard::take_from_bytes::<State<A>>(rest).unwrap();
    assert!(left.is_empty());
    (meta, state)
}

/// Why the frame of `bytes` is refused, read as the format documents it
/// and in the order the reader checks it: the magic, whether the fixed
/// header is whole, the version, the body's length, the checksum. `None`:
/// a valid frame.
fn frame_verdict(bytes: &[u8]) -> Option<Expect> {
    if bytes.len() < MAGIC.len() {
        return Some(if MAGIC.starts_with(bytes) {
            Expect::Truncated
        } else {
            Expect::NotACheckpoint
        });
    }
    if bytes[..8] != MAGIC {
        return Some(Expect::NotACheckpoint);
    }
    if bytes.len() < HEAD {
        return Some(Expect::Truncated);
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if version != VERSION {
        return Some(Expect::OtherVersion(version));
    }
    let body = u64::from_le_bytes(bytes[12..20].try_into().unwrap());
    let have = (bytes.len() - HEAD) as u64;
    match body.checked_add(4) {
        None => return Some(Expect::Corrupt("an impossible length")),
        Some(want) if have < want => return Some(Expect::Truncated),
        Some(want) if have > want => return Some(Expect::Corrupt("byte(s) after its end")),
        Some(_) => {}
    }
    let end = bytes.len() - 4;
    if crc32fast::hash(&bytes[..end]).to_le_bytes() != bytes[end..] {
        return Some(Expect::Corrupt("its checksum does not match its content"));
    }
    None
}

/// The heights of the binary-counter stack of `leaves` leaves: its set
/// bits, highest first.
fn heights(leaves: u64) -> Vec<u32> {
    (0..u64::BITS).rev().filter(|bit| leaves >> bit & 1 == 1).collect()
}

// ---------------------------------------------------------------------------
// The searches whose checkpoints are damaged.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// `jobs::sum` of `f64`s: order-sensitive, so a wrong prefix shows.
    Sum,
    /// `jobs::collect` of `Option<u32>`s: a `Vec` of `Option`s.
    Collect,
}

#[derive(Clone, Debug)]
struct Search {
    kind: Kind,
    key: &'static str,
    len: u64,
    leaf: usize,
    deterministic: bool,
}

const SUM: Search = Search {
    kind: Kind::Sum,
    key: "float sum of 1000 items, leaves of 10",
    len: 1000,
    leaf: 10,
    deterministic: true,
};

const COLLECT: Search = Search {
    kind: Kind::Collect,
    key: "collect 200 options, leaves of 4",
    len: 200,
    leaf: 4,
    deterministic: true,
};

/// What a search answered (a sum by its bits).
#[derive(Clone, Debug, PartialEq)]
enum Answer {
    Sum(u64),
    Collect(Vec<Option<u32>>),
}

fn sum_value(x: u64) -> f64 {
    common::float_value(x)
}

/// Values of one to three varint bytes, and `None`s.
fn collect_value(x: u64) -> Option<u32> {
    (x % 3 != 0).then_some((x * 7919 % 70_000) as u32)
}

/// Counts the items computed; pulls `stop` at the item `stop_at`.
struct Hook {
    computed: Arc<AtomicU64>,
    stop: StopHandle,
    stop_at: Option<u64>,
}

impl Hook {
    fn see(&self, x: u64) {
        self.computed.fetch_add(1, Ordering::Relaxed);
        if self.stop_at == Some(x) {
            self.stop.stop();
        }
    }
}

struct Outcome {
    result: Result<Answer, Error>,
    computed: u64,
}

impl Search {
    fn leaves(&self) -> u64 {
        self.len.div_ceil(self.leaf as u64)
    }

    fn config(&self) -> Config {
        Config::current()
            .with_progress_bars(false)
            .with_leaf_size(self.leaf)
            .with_deterministic(self.deterministic)
    }

    /// A durable run on `checkpoint` that stops itself at item `stop_at`.
    fn run_with(&self, checkpoint: &Checkpoint, stop_at: Option<u64>) -> Outcome {
        let computed = Arc::new(AtomicU64::new(0));
        let hook = Hook {
            computed: Arc::clone(&computed),
            stop: checkpoint.stop_handle(),
            stop_at,
        };
        let items = indexed_range(0..self.len);
        let result = self.config().scope(|| match self.kind {
            Kind::Sum => par_map_reduce_durable(
                items,
                &(),
                jobs::sum(move |x: u64, _: &()| {
                    hook.see(x);
                    sum_value(x)
                }),
                checkpoint,
            )
            .map(|sum| Answer::Sum(sum.to_bits())),
            Kind::Collect => par_map_reduce_durable(
                items,
                &(),
                jobs::collect(move |x: u64, _: &()| {
                    hook.see(x);
                    collect_value(x)
                }),
                checkpoint,
            )
            .map(Answer::Collect),
        });
        Outcome {
            result,
            computed: computed.load(Ordering::Relaxed),
        }
    }

    fn run(&self, path: &Path) -> Outcome {
        self.run_with(&Checkpoint::new(path, self.key), None)
    }

    /// What an uninterrupted in-order run answers.
    fn reference(&self) -> Answer {
        let items = indexed_range(0..self.len);
        self.config()
            .scope(|| match self.kind {
                Kind::Sum => par_map_reduce_in_order(items, &(), jobs::sum(|x: u64, _: &()| sum_value(x)))
                    .map(|sum| Answer::Sum(sum.to_bits())),
                Kind::Collect => par_map_reduce_in_order(items, &(), jobs::collect(|x: u64, _: &()| collect_value(x)))
                    .map(Answer::Collect),
            })
            .unwrap()
    }

    /// A running checkpoint at `path`, of a run stopped at 60% of its
    /// items after saving every block: its bytes and the items it holds.
    fn stopped(&self, path: &Path) -> (Vec<u8>, u64) {
        let checkpoint = Checkpoint::new(path, self.key).every(Duration::ZERO);
        match self.run_with(&checkpoint, Some(self.len * 6 / 10)).result {
            Err(Error::Stopped { done, .. }) => {
                assert!(done > 0 && done < self.len, "{done} items saved");
                (std::fs::read(path).unwrap(), done)
            }
            other => panic!("{other:?}"),
        }
    }

    /// A finished checkpoint at `path`.
    fn finished(&self, path: &Path) -> Vec<u8> {
        assert_eq!(self.run(path).result.unwrap(), self.reference());
        std::fs::read(path).unwrap()
    }
}

// ---------------------------------------------------------------------------
// Refusals.

/// The refusal a bad file must get.
#[derive(Clone, Debug, PartialEq)]
enum Expect {
    NotACheckpoint,
    Truncated,
    OtherVersion(u32),
    /// Corrupt, for a reason containing this.
    Corrupt(&'static str),
    /// Saved for another search: its `what` differs.
    Mismatch(&'static str),
    IsADirectory,
    /// An I/O error while `doing` this.
    Io(&'static str),
}

/// Whether `err`, for the checkpoint at `path`, is the refusal `expect`,
/// with a message that names the path and says the reason.
fn judge(err: &CheckpointError, path: &Path, expect: &Expect) -> Result<(), String> {
    let text = err.to_string();
    if err.path() != path || !text.starts_with(&format!("checkpoint {}: ", path.display())) {
        return Err(format!("does not name {}: {text}", path.display()));
    }
    let says = |phrase: &str| {
        if text.contains(phrase) {
            Ok(())
        } else {
            Err(format!("{text:?} does not say {phrase:?}"))
        }
    };
    match (expect, err.problem()) {
        (Expect::NotACheckpoint, CheckpointProblem::NotACheckpoint) => says("not a checkpoint file"),
        (Expect::Truncated, CheckpointProblem::Truncated) => says("truncated: the file ends early"),
        (Expect::OtherVersion(version), CheckpointProblem::OtherVersion { found, supported })
            if found == version && *supported == VERSION =>
        {
            says(&format!(
                "written in format version {version}; this build reads version {VERSION}"
            ))
        }
        (Expect::Corrupt(phrase), CheckpointProblem::Corrupt(what)) if what.contains(phrase) => {
            says(&format!("corrupt: {what}"))
        }
        (Expect::Mismatch(expected), CheckpointProblem::Mismatch { what, saved, now }) if what == expected => {
            if saved == now {
                return Err(format!("{what} said to differ but is {saved} both times"));
            }
            says(&format!(
                "saved for another search: its {what} is {saved}, this run's is {now}"
            ))
        }
        (Expect::IsADirectory, CheckpointProblem::IsADirectory) => says("is a directory"),
        (Expect::Io(doing), CheckpointProblem::Io { doing: done, source }) if doing == done => {
            says(&format!("{doing}: {source}"))
        }
        (_, problem) => Err(format!("expected {expect:?}, got {problem:?}: {text}")),
    }
}

/// Mutations tried, by kind.
#[derive(Default)]
struct Tally {
    by_kind: BTreeMap<&'static str, usize>,
}

impl Tally {
    fn total(&self) -> usize {
        self.by_kind.values().sum()
    }

    fn report(&self, what: &str, took: Duration) {
        eprintln!("{what}: {} bad files refused in {took:.2?}", self.total());
        for (kind, count) in &self.by_kind {
            eprintln!("  {count:6}  {kind}");
        }
    }
}

/// Runs of one search on one path.
struct Bench {
    search: Search,
    path: PathBuf,
    tally: Tally,
}

impl Bench {
    fn new(search: Search, dir: &Path) -> Bench {
        Bench {
            path: dir.join(format!("{:?}.ckpt", search.kind)),
            search,
            tally: Tally::default(),
        }
    }

    /// Put `bytes` at the path as a new file (rewriting a file in place
    /// makes ext4 flush it, a hundred times slower).
    fn place(&self, bytes: &[u8]) {
        let _ = std::fs::remove_file(&self.path);
        std::fs::write(&self.path, bytes).unwrap();
    }

    /// The search, run on `bytes`, must be refused for `expect`, compute
    /// nothing and leave the file as it was.
    fn refuse(&mut self, kind: &'static str, label: impl Debug, bytes: &[u8], expect: Expect) {
        self.place(bytes);
        let outcome = self.search.run(&self.path);
        let verdict = match outcome.result {
            Ok(answer) => Err(if answer == self.search.reference() {
                "accepted (with the right answer)".to_owned()
            } else {
                format!("accepted, WRONG ANSWER {answer:?}")
            }),
            Err(Error::Checkpoint(err)) => judge(&err, &self.path, &expect),
            Err(other) => Err(format!("not a checkpoint error: {other}")),
        };
        if let Err(why) = verdict {
            panic!("{kind} {label:?} ({} bytes): {why}", bytes.len());
        }
        assert_eq!(outcome.computed, 0, "{kind} {label:?}: refused after computing");
        assert!(
            std::fs::read(&self.path).unwrap() == bytes,
            "{kind} {label:?}: the refused file was changed"
        );
        *self.tally.by_kind.entry(kind).or_default() += 1;
    }

    /// Damage to the frame of `seed`: the refusal is the one the format
    /// gives (and the checksum sees every such damage).
    fn refuse_damaged(&mut self, kind: &'static str, label: impl Debug, bytes: &[u8]) {
        let expect = frame_verdict(bytes)
            .unwrap_or_else(|| panic!("{kind} {label:?}: a damage the checksum does not see (impossible by accident)"));
        self.refuse(kind, label, bytes, expect);
    }

    /// The search run on `bytes` must answer the reference, computing
    /// `computed` items.
    fn accept(&self, label: &str, bytes: &[u8], computed: u64) {
        self.place(bytes);
        let outcome = self.search.run(&self.path);
        match outcome.result {
            Ok(answer) => assert_eq!(answer, self.search.reference(), "{label}: a wrong answer"),
            Err(err) => panic!("{label}: {err}"),
        }
        assert_eq!(outcome.computed, computed, "{label}");
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Every damage to the frame of `seed`: truncations at every length, every
/// single bit flipped, random sets of 2 to 16 bits and bursts flipped, a
/// byte inserted, deleted and overwritten at every position, spans deleted.
fn damage(bench: &mut Bench, seed: &[u8], rng: &mut Rng) {
    for len in 0..seed.len() {
        bench.refuse_damaged("truncated", len, &seed[..len]);
    }
    for bit in 0..seed.len() * 8 {
        let mut bytes = seed.to_vec();
        bytes[bit / 8] ^= 1 << (bit % 8);
        bench.refuse_damaged("one bit flipped", bit, &bytes);
    }
    for round in 0..seed.len() {
        let mut bytes = seed.to_vec();
        let flips = 2 + round % 15;
        let mut bits = Vec::new();
        while bits.len() < flips {
            let bit = rng.below(seed.len() * 8);
            if !bits.contains(&bit) {
                bits.push(bit);
                bytes[bit / 8] ^= 1 << (bit % 8);
            }
        }
        bench.refuse_damaged("2 to 16 bits flipped", &bits, &bytes);
    }
    for round in 0..seed.len() / 2 {
        let mut bytes = seed.to_vec();
        let length = 2 + round % 63;
        let start = rng.below(seed.len() * 8 - length);
        for bit in start..start + length {
            bytes[bit / 8] ^= 1 << (bit % 8);
        }
        bench.refuse_damaged("burst of 2 to 64 bits flipped", (start, length), &bytes);
    }
    for at in 0..=seed.len() {
        let before = at.checked_sub(1).map(|i| seed[i]);
        let mut values = vec![0x00, 0xFF, rng.byte()];
        values.extend(before);
        values.sort_unstable();
        values.dedup();
        for value in values {
            let mut bytes = seed.to_vec();
            bytes.insert(at, value);
            bench.refuse_damaged("byte inserted", (at, value), &bytes);
        }
    }
    for at in 0..seed.len() {
        let mut bytes = seed.to_vec();
        bytes.remove(at);
        bench.refuse_damaged("byte deleted", at, &bytes);
        let mut bytes = seed.to_vec();
        bytes[at] = loop {
            let value = rng.byte();
            if value != seed[at] {
                break value;
            }
        };
        bench.refuse_damaged("byte overwritten", at, &bytes);
    }
    for length in [2, 3, 4, 8, 16] {
        for at in (0..seed.len().saturating_sub(length)).step_by(3) {
            let mut bytes = seed.to_vec();
            bytes.drain(at..at + length);
            bench.refuse_damaged("span deleted", (at, length), &bytes);
        }
    }
}

/// An accumulator type of the searches, and encodings of it that cannot
/// decode as the last thing in a state.
trait Acc: Serialize + DeserializeOwned + Clone + Debug {
    fn garbage() -> Vec<(&'static str, Vec<u8>)>;
    fn sample() -> Self;
}

impl Acc for f64 {
    fn garbage() -> Vec<(&'static str, Vec<u8>)> {
        (0..8).map(|len| ("an f64 cut short", vec![0x3F; len])).collect()
    }
    fn sample() -> f64 {
        1.5
    }
}

impl Acc for Vec<Option<u32>> {
    fn garbage() -> Vec<(&'static str, Vec<u8>)> {
        let mut garbage = vec![
            ("nothing", vec![]),
            ("an option tagged 2", vec![1, 2]),
            ("an option tagged 255", vec![1, 0xFF]),
            ("a third option tagged 7", vec![3, 0, 1, 5, 7]),
            ("a u32 over u32::MAX", vec![1, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F]),
            (
                "a u32 varint of 6 bytes",
                vec![1, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
            ),
            ("a u32 varint cut short", vec![1, 1, 0x80, 0x80]),
            ("2 options promised, 1 given", vec![2, 0]),
            ("5 options promised, 4 given", vec![5, 0, 0, 1, 9, 0]),
            ("a length varint of 11 bytes", [vec![0x80; 10], vec![1]].concat()),
            ("a length varint cut short", vec![0x80, 0x80]),
        ];
        for (what, length) in [
            ("2^32 options promised", 1u64 << 32),
            ("u64::MAX options promised", u64::MAX),
        ] {
            garbage.push((what, [postcard::to_allocvec(&length).unwrap(), vec![0; 3]].concat()));
        }
        garbage
    }
    fn sample() -> Vec<Option<u32>> {
        vec![Some(7), None]
    }
}

/// Files with a valid frame (and, unless the version is the point, the
/// right version) whose content is nonsense, crafted from the seeds `running`
/// and `finished`.
fn nonsense<A: Acc>(bench: &mut Bench, running: &[u8], finished: &[u8]) {
    let (meta, state) = decode::<A>(running);
    let search = bench.search.clone();
    let accs: Vec<A> = match &state {
        State::Running { stack, .. } => stack.iter().map(|(_, acc)| acc.clone()).collect(),
        State::Finished { .. } => unreachable!("a running seed"),
    };
    let acc = |i: usize| accs.get(i % accs.len().max(1)).cloned().unwrap_or_else(A::sample);
    let items_in = |leaves: u64| (leaves * search.leaf as u64).min(search.len);
    let stack_for = |heights: &[u32]| -> Vec<(u32, A)> {
        heights
            .iter()
            .enumerate()
            .map(|(i, height)| (*height, acc(i)))
            .collect()
    };
    let running_state = |leaves: u64, items: u64, heights: &[u32]| State::Running {
        leaves,
        items,
        stack: stack_for(heights),
    };
    let with = |body: Vec<u8>| sealed(VERSION, &body);

    // Other versions, sealed (the version is read before the checksum, so
    // unsealed ones are refused the same way).
    for seed in [running, finished] {
        for version in [0, 2, 3, 7, 0xFF, 0x100, 0x0100_0001, 1 << 31, u32::MAX] {
            let mut bytes = seed.to_vec();
            bytes[8..12].copy_from_slice(&version.to_le_bytes());
            bench.refuse(
                "other format version",
                version,
                &reseal(bytes.clone()),
                Expect::OtherVersion(version),
            );
            bench.refuse("other format version", version, &bytes, Expect::OtherVersion(version));
        }
        for body_len in [u64::MAX, u64::MAX - 3] {
            let mut bytes = seed.to_vec();
            bytes[12..20].copy_from_slice(&body_len.to_le_bytes());
            bench.refuse(
                "impossible body length",
                body_len,
                &bytes,
                Expect::Corrupt("an impossible length"),
            );
        }
        bench.refuse(
            "empty body",
            "",
            &sealed(VERSION, &[]),
            Expect::Corrupt("its header does not decode"),
        );
    }

    // Headers of other searches, each field alone.
    for seed in [running, finished] {
        let body = body_of(seed);
        let state = &body[postcard::to_allocvec(&meta).unwrap().len()..];
        let other = |change: &dyn Fn(&mut Meta)| {
            let mut meta = meta.clone();
            change(&mut meta);
            [postcard::to_allocvec(&meta).unwrap(), state.to_vec()].concat()
        };
        let mut keys = vec![
            String::new(),
            format!("{} ", search.key),
            search.key[1..].to_owned(),
            search.key.to_uppercase(),
            if search.kind == Kind::Sum { COLLECT.key } else { SUM.key }.to_owned(),
        ];
        for at in 0..search.key.len() {
            let mut key = search.key.as_bytes().to_vec();
            key[at] = if key[at] == b'x' { b'y' } else { b'x' };
            keys.push(String::from_utf8(key).unwrap());
        }
        for key in keys {
            let bytes = with(other(&|meta: &mut Meta| meta.key = key.clone()));
            bench.refuse("other key (sealed)", &key, &bytes, Expect::Mismatch("key"));
        }
        let types = [
            "f32",
            "f64 ",
            "",
            "alloc::vec::Vec<f64>",
            "alloc::vec::Vec<core::option::Option<u32>>",
            "alloc::vec::Vec<core::option::Option<u64>>",
            "core::option::Option<(u64, u64)>",
        ];
        for acc_type in types.into_iter().filter(|t| *t != meta.acc_type) {
            let bytes = with(other(&|meta: &mut Meta| meta.acc_type = acc_type.into()));
            bench.refuse(
                "other accumulator type (sealed)",
                acc_type,
                &bytes,
                Expect::Mismatch("accumulator type"),
            );
        }
        let inputs = [
            Input::Indexed(search.len + 1),
            Input::Indexed(search.len - 1),
            Input::Indexed(0),
            Input::Indexed(search.len * 2),
            Input::Indexed(u64::MAX),
            Input::Stream(None),
            Input::Stream(Some(search.len)),
            Input::Stream(Some(search.len + 1)),
        ];
        for input in inputs {
            let bytes = with(other(&|meta: &mut Meta| meta.input = input));
            bench.refuse("other input (sealed)", input, &bytes, Expect::Mismatch("input"));
        }
        let leaf = search.leaf as u64;
        for leaf_size in [0, 1, leaf - 1, leaf + 1, leaf * 2, search.len, u64::MAX] {
            if leaf_size != leaf {
                let bytes = with(other(&|meta: &mut Meta| meta.leaf_size = leaf_size));
                bench.refuse(
                    "other leaf size (sealed)",
                    leaf_size,
                    &bytes,
                    Expect::Mismatch("leaf size"),
                );
            }
        }
        let bytes = with(other(&|meta: &mut Meta| meta.deterministic = !meta.deterministic));
        bench.refuse("other mode (sealed)", "", &bytes, Expect::Mismatch("mode"));

        // Headers that do not decode.
        let header = postcard::to_allocvec(&meta).unwrap();
        for cut in 0..header.len() {
            let bytes = with(header[..cut].to_vec());
            bench.refuse(
                "header cut short (sealed)",
                cut,
                &bytes,
                Expect::Corrupt("its header does not decode"),
            );
        }
        let key_start = 1; // after the key's one-byte length
        for bad in [0xFF, 0xC0, 0x80] {
            let mut body = body.to_vec();
            body[key_start] = bad;
            bench.refuse(
                "key not UTF-8 (sealed)",
                bad,
                &with(body),
                Expect::Corrupt("its header does not decode"),
            );
        }
        let mut body_with = |what, patch: &dyn Fn(&mut Vec<u8>)| {
            let mut meta_bytes = header.clone();
            patch(&mut meta_bytes);
            let bytes = with([meta_bytes, state.to_vec()].concat());
            bench.refuse(what, "", &bytes, Expect::Corrupt("its header does not decode"));
        };
        body_with("key longer than the file (sealed)", &|m: &mut Vec<u8>| {
            m.splice(0..1, [0xFF, 0x7F]);
        });
        // The input's variant: after the key and type, each a length byte
        // and its bytes.
        let input_at = 1 + meta.key.len() + 1 + meta.acc_type.len();
        for variant in [2u8, 3, 0x7F] {
            body_with("input of no known kind (sealed)", &|m: &mut Vec<u8>| {
                m[input_at] = variant
            });
        }
        // The mode's bool: before the time, a varint whose bytes but the
        // last have the high bit.
        let time_len = postcard::to_allocvec(&meta.saved_at).unwrap().len();
        let mode_at = header.len() - time_len - 1;
        for value in [2u8, 0xFF] {
            body_with("mode neither true nor false (sealed)", &|m: &mut Vec<u8>| {
                m[mode_at] = value
            });
        }
        body_with("time varint of 11 bytes (sealed)", &|m: &mut Vec<u8>| {
            m.truncate(m.len() - time_len);
            m.extend([0x80; 10]);
            m.push(1);
        });
    }

    // States that do not decode, or hold bytes after their end.
    for seed in [running, finished] {
        let body = body_of(seed);
        let header = postcard::to_allocvec(&meta).unwrap();
        let state = &body[header.len()..];
        for cut in 0..state.len() {
            let bytes = with(body[..header.len() + cut].to_vec());
            bench.refuse(
                "state cut short (sealed)",
                cut,
                &bytes,
                Expect::Corrupt("its saved state does not decode"),
            );
        }
        for variant in [2u8, 3, 0x7F, 0xFF] {
            let mut body = body.to_vec();
            body[header.len()] = variant;
            bench.refuse(
                "state of no known kind (sealed)",
                variant,
                &with(body),
                Expect::Corrupt("its saved state does not decode"),
            );
        }
        let tails: [&[u8]; 6] = [&[0], &[0xFF], &[1, 2, 3], &[0; 16], state, &MAGIC];
        for tail in tails {
            let bytes = with([body, tail].concat());
            bench.refuse(
                "bytes after the state (sealed)",
                tail.len(),
                &bytes,
                Expect::Corrupt("left after its state"),
            );
        }
    }

    // Accumulators that do not decode: as the answer, and as the last
    // entry of a stack that fits its leaves.
    let garbled = |state: &State<A>, garbage: &[u8]| {
        // Encode with a sample in the slot, then swap its bytes for the garbage.
        let sample = postcard::to_allocvec(&A::sample()).unwrap();
        let bytes = encode(&meta, state);
        assert!(bytes.ends_with(&sample));
        with([&bytes[..bytes.len() - sample.len()], garbage].concat())
    };
    for (what, garbage) in A::garbage() {
        let answer = State::Finished { answer: A::sample() };
        bench.refuse(
            "answer that does not decode (sealed)",
            what,
            &garbled(&answer, &garbage),
            Expect::Corrupt("its saved state does not decode"),
        );
        for leaves in [1, 3, 6, search.leaves()] {
            let mut stack = stack_for(&heights(leaves));
            stack.last_mut().unwrap().1 = A::sample();
            let state = State::Running {
                leaves,
                items: items_in(leaves),
                stack,
            };
            bench.refuse(
                "stack accumulator that does not decode (sealed)",
                (what, leaves),
                &garbled(&state, &garbage),
                Expect::Corrupt("its saved state does not decode"),
            );
        }
    }

    // Stacks whose heights do not fit their leaves, with the right items.
    for leaves in 0..=search.leaves() {
        let right = heights(leaves);
        let mut wrong: Vec<Vec<u32>> = Vec::new();
        for drop in 0..right.len() {
            let mut h = right.clone();
            h.remove(drop);
            wrong.push(h);
        }
        wrong.push([right.clone(), vec![0]].concat());
        wrong.push([vec![right.first().map_or(0, |h| h + 1)], right.clone()].concat());
        for raise in 0..right.len() {
            let mut h = right.clone();
            h[raise] += 1;
            wrong.push(h);
        }
        wrong.push(right.iter().rev().copied().collect());
        wrong.push(vec![0; right.len().max(2)]);
        wrong.push(vec![u32::MAX]);
        wrong.sort();
        wrong.dedup();
        for heights in wrong.into_iter().filter(|h| *h != right) {
            let bytes = with(encode(&meta, &running_state(leaves, items_in(leaves), &heights)));
            bench.refuse(
                "stack that does not fit its leaves (sealed)",
                (leaves, heights),
                &bytes,
                Expect::Corrupt("do not fit"),
            );
        }
    }

    // More leaves than the input holds, each with its own stack.
    let count = search.leaves();
    for leaves in [
        count + 1,
        count + 2,
        count + 7,
        count * 2,
        count * 64 + 1,
        1 << 40,
        u64::MAX,
    ] {
        for items in [search.len, leaves.saturating_mul(search.leaf as u64)] {
            let bytes = with(encode(&meta, &running_state(leaves, items, &heights(leaves))));
            bench.refuse(
                "leaves beyond the input (sealed)",
                (leaves, items),
                &bytes,
                Expect::Corrupt("more than the input holds"),
            );
        }
    }

    // Items that disagree with the leaves, with the right stack.
    for leaves in 0..=count {
        let right = items_in(leaves);
        let mut wrong = vec![
            right + 1,
            right.saturating_sub(1),
            0,
            search.len + 1,
            u64::MAX,
            right + search.leaf as u64,
        ];
        wrong.sort_unstable();
        wrong.dedup();
        for items in wrong.into_iter().filter(|items| *items != right) {
            let bytes = with(encode(&meta, &running_state(leaves, items, &heights(leaves))));
            bench.refuse(
                "items that disagree with the leaves (sealed)",
                (leaves, items),
                &bytes,
                Expect::Corrupt("leaves done, but"),
            );
        }
    }
}

/// Both seeds of `search`, every damage and every nonsense: all refused.
fn bad_files_never_lie<A: Acc>(search: Search, name: &str) -> Tally {
    let started = Instant::now();
    let dir = scratch(name);
    let mut bench = Bench::new(search.clone(), &dir);
    let (running, done) = search.stopped(&dir.join("running.ckpt"));
    let finished = search.finished(&dir.join("finished.ckpt"));

    // The seeds are what the mirror says, byte for byte, and resume right.
    for seed in [&running, &finished] {
        let (meta, state) = decode::<A>(seed);
        assert_eq!(
            &sealed(VERSION, &encode(&meta, &state)),
            seed,
            "the mirror does not re-encode a seed"
        );
        assert_eq!(meta.key, search.key);
    }
    assert!(matches!(decode::<A>(&running).1, State::Running { items, .. } if items == done));
    assert!(matches!(decode::<A>(&finished).1, State::Finished { .. }));
    bench.accept("the running seed", &running, search.len - done);
    bench.accept("the finished seed", &finished, 0);
    // Only when it was saved differs: the same search, resumed.
    for seed in [&running, &finished] {
        let (mut meta, state) = decode::<A>(seed);
        meta.saved_at = 12345;
        let computed = if seed == &running { search.len - done } else { 0 };
        bench.accept(
            "a seed saved at another time",
            &sealed(VERSION, &encode(&meta, &state)),
            computed,
        );
    }

    let mut rng = Rng(0x5EED_F11E_5BAD_0001 ^ search.len);
    damage(&mut bench, &running, &mut rng);
    damage(&mut bench, &finished, &mut rng);
    nonsense::<A>(&mut bench, &running, &finished);

    // After all that, the running seed still resumes to the same answer.
    bench.accept("the running seed, at the end", &running, search.len - done);
    std::fs::remove_dir_all(&dir).unwrap();
    bench.tally.report(name, started.elapsed());
    bench.tally
}

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mapreduce-files-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn bad_checkpoints_of_a_float_sum_never_lie() {
    let tally = bad_files_never_lie::<f64>(SUM, "sum");
    assert!(tally.total() >= 5000, "only {} bad files", tally.total());
}

#[test]
fn bad_checkpoints_of_a_collection_never_lie() {
    let tally = bad_files_never_lie::<Vec<Option<u32>>>(COLLECT, "collect");
    assert!(tally.total() >= 5000, "only {} bad files", tally.total());
}

/// Files that real runs of other searches saved (another key, input
/// length, leaf size, mode or accumulator type; running and finished) are
/// refused by this search, naming what differs.
#[test]
fn files_saved_by_other_searches_are_refused() {
    let dir = scratch("other");
    let mut refused = 0;
    for search in [SUM, COLLECT] {
        let mut bench = Bench::new(search.clone(), &dir);
        let other_kind = if search.kind == Kind::Sum {
            Kind::Collect
        } else {
            Kind::Sum
        };
        let others = [
            (
                "key",
                Search {
                    key: "another search",
                    ..search.clone()
                },
            ),
            (
                "input",
                Search {
                    len: search.len + 1,
                    ..search.clone()
                },
            ),
            (
                "leaf size",
                Search {
                    leaf: search.leaf + 1,
                    ..search.clone()
                },
            ),
            (
                "mode",
                Search {
                    deterministic: false,
                    ..search.clone()
                },
            ),
            (
                "accumulator type",
                Search {
                    kind: other_kind,
                    ..search.clone()
                },
            ),
        ];
        for (what, other) in others {
            let seeds = [dir.join("seed-running.ckpt"), dir.join("seed-finished.ckpt")];
            let (running, _) = other.stopped(&seeds[0]);
            let finished = other.finished(&seeds[1]);
            for seed in seeds {
                std::fs::remove_file(seed).unwrap();
            }
            for bytes in [running, finished] {
                bench.refuse("other search (real run)", what, &bytes, Expect::Mismatch(what));
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 20);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Makes a path unwritable while it lives, even for root: immutable
/// (`chattr +i`, which root cannot ignore) where the file system allows,
/// else read-only permissions (which bind users other than root). Set with
/// `ioctl`, not by running `chattr`: a child forked while another test's
/// run holds its lock would hold that lock too until it execs, and a run
/// starting then is refused as `Locked`.
#[cfg(unix)]
struct Unwritable {
    path: PathBuf,
    immutable: bool,
}

#[cfg(unix)]
impl Unwritable {
    /// `None` when neither way works here.
    fn make(path: &Path) -> Option<Unwritable> {
        use std::os::unix::fs::PermissionsExt;
        if set_immutable(path, true).is_ok() {
            return Some(Unwritable {
                path: path.to_owned(),
                immutable: true,
            });
        }
        let root = unsafe { libc::geteuid() } == 0;
        let mode = if path.is_dir() { 0o555 } else { 0o444 };
        (!root && std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).is_ok()).then(|| Unwritable {
            path: path.to_owned(),
            immutable: false,
        })
    }
}

#[cfg(unix)]
impl Drop for Unwritable {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.immutable {
            set_immutable(&self.path, false).unwrap();
        } else {
            std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
}

/// Set or clear the immutable attribute of `path` (`chattr +i` / `-i`).
#[cfg(target_os = "linux")]
fn set_immutable(path: &Path, on: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    const FS_IMMUTABLE_FL: libc::c_int = 0x10;
    let file = std::fs::File::open(path)?;
    let mut flags: libc::c_int = 0;
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    flags = if on {
        flags | FS_IMMUTABLE_FL
    } else {
        flags & !FS_IMMUTABLE_FL
    };
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(all(unix, not(target_os = "linux")))]
fn set_immutable(_: &Path, _: bool) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// A path that is no checkpoint file, or where none can be written, is
/// refused when the run starts, before any item is computed.
#[cfg(unix)]
#[test]
fn unusable_paths_are_refused_before_anything_is_computed() {
    let dir = scratch("paths");
    let search = SUM;
    let mut bench = Bench::new(search.clone(), &dir);
    let run = |path: &Path| search.run(path);
    let refused = |path: &Path, expect: Expect| {
        let outcome = run(path);
        match outcome.result {
            Err(Error::Checkpoint(err)) => judge(&err, path, &expect).unwrap_or_else(|why| panic!("{why}")),
            other => panic!("{}: {other:?}", path.display()),
        }
        assert_eq!(outcome.computed, 0, "{}", path.display());
    };

    bench.refuse("empty file", "", b"", Expect::Truncated);
    bench.refuse(
        "not a checkpoint",
        "",
        b"PK\x03\x04 a zip file, say",
        Expect::NotACheckpoint,
    );

    // A directory in its place, empty or not, and through a symlink.
    let in_place = dir.join("dir.ckpt");
    std::fs::create_dir(&in_place).unwrap();
    refused(&in_place, Expect::IsADirectory);
    std::fs::write(in_place.join("inside"), b"x").unwrap();
    refused(&in_place, Expect::IsADirectory);
    assert_eq!(std::fs::read(in_place.join("inside")).unwrap(), b"x");
    let link = dir.join("link.ckpt");
    std::os::unix::fs::symlink(&in_place, &link).unwrap();
    refused(&link, Expect::IsADirectory);

    // A FIFO or a device in its place: refused at once, never opened (a
    // FIFO's open waits for a writer forever; /dev/zero never ends).
    let fifo = dir.join("fifo.ckpt");
    let fifo_name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(
        unsafe { libc::mkfifo(fifo_name.as_ptr(), 0o644) },
        0,
        "{}",
        std::io::Error::last_os_error()
    );
    let (sender, receiver) = std::sync::mpsc::channel();
    let waiting = fifo.clone();
    std::thread::spawn(move || {
        let outcome = SUM.run(&waiting);
        let _ = sender.send((outcome.result.map(drop), outcome.computed));
    });
    match receiver.recv_timeout(Duration::from_secs(20)) {
        Ok((Err(Error::Checkpoint(err)), 0)) => judge(&err, &fifo, &Expect::NotACheckpoint).unwrap(),
        Ok(other) => panic!("a FIFO in its place: {other:?}"),
        Err(_) => panic!("a FIFO in its place: the run hangs"),
    }
    let zero = dir.join("zero.ckpt");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    refused(&zero, Expect::NotACheckpoint);

    // Where no file can be made: under /sys (even for root), under a
    // regular file, in a directory that does not exist.
    if Path::new("/sys/kernel").is_dir() {
        refused(
            Path::new("/sys/mapreduce-test.ckpt"),
            Expect::Io("cannot create its lock file"),
        );
    }
    let file = dir.join("plain-file");
    std::fs::write(&file, b"").unwrap();
    refused(&file.join("c.ckpt"), Expect::Io("cannot create its lock file"));
    refused(
        &dir.join("missing").join("c.ckpt"),
        Expect::Io("cannot create its lock file"),
    );

    // Unwritable (immutable for root, read-only otherwise): a directory
    // that takes no lock file; a directory with the lock file of an earlier
    // run that takes no new file; a checkpoint file that cannot be
    // replaced. A finished checkpoint that cannot be written still gives
    // its answer: nothing needs writing.
    let (running, done) = search.stopped(&dir.join("seed.ckpt"));
    let finished = search.finished(&dir.join("seed-finished.ckpt"));
    let probe = dir.join("probe");
    std::fs::write(&probe, b"").unwrap();
    if Unwritable::make(&probe).is_none() {
        eprintln!("neither `chattr +i` nor read-only permissions work here: unwritable paths not tried");
        std::fs::remove_dir_all(&dir).unwrap();
        return;
    }
    let locked_out = dir.join("no-lock");
    std::fs::create_dir(&locked_out).unwrap();
    {
        let _guard = Unwritable::make(&locked_out).unwrap();
        refused(&locked_out.join("c.ckpt"), Expect::Io("cannot create its lock file"));
    }
    let no_new_files = dir.join("no-new-files");
    std::fs::create_dir(&no_new_files).unwrap();
    let path = no_new_files.join("c.ckpt");
    std::fs::write(&path, &running).unwrap();
    std::fs::write(no_new_files.join("c.ckpt.lock"), b"").unwrap();
    {
        let _guard = Unwritable::make(&no_new_files).unwrap();
        refused(&path, Expect::Io("cannot create its temporary file"));
    }
    let path = dir.join("immutable.ckpt");
    std::fs::write(&path, &running).unwrap();
    {
        let _guard = Unwritable::make(&path).unwrap();
        refused(&path, Expect::Io("cannot write it"));
        assert_eq!(std::fs::read(&path).unwrap(), running);
    }
    // Once writable again, it resumes where it was.
    let outcome = run(&path);
    assert_eq!(outcome.result.unwrap(), search.reference());
    assert_eq!(outcome.computed, search.len - done);
    let path = dir.join("immutable-finished.ckpt");
    std::fs::write(&path, &finished).unwrap();
    {
        let _guard = Unwritable::make(&path).unwrap();
        let outcome = run(&path);
        assert_eq!(outcome.result.unwrap(), search.reference());
        assert_eq!(outcome.computed, 0);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A run on a file that no run holds is never told that "another process
/// is using it", also while another thread starts commands: a child forked
/// while the previous run held the lock shares that lock until it execs.
/// (Before a held lock was waited for, 8,737 of 20,000 runs in a tight
/// loop were refused as `Locked`.)
#[cfg(unix)]
#[test]
fn no_lock_is_claimed_while_other_threads_start_commands() {
    let dir = scratch("forks");
    let search = SUM;
    let mut bench = Bench::new(search.clone(), &dir);
    let finished = search.finished(&dir.join("finished.ckpt"));
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let spawning = scope.spawn(|| {
            let mut children = 0;
            while !stop.load(Ordering::Relaxed) {
                std::process::Command::new("true").status().unwrap();
                children += 1;
            }
            children
        });
        // Stop spawning also when an assertion fails (the scope joins).
        struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let stopping = Stop(&stop);
        for round in 0..3000 {
            bench.refuse(
                "not a checkpoint, children forking",
                round,
                b"junk",
                Expect::NotACheckpoint,
            );
            bench.accept("a finished checkpoint, children forking", &finished, 0);
        }
        drop(stopping);
        assert!(spawning.join().unwrap() > 0);
    });
    std::fs::remove_dir_all(&dir).unwrap();
}
