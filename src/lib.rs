//! Map every item on a rayon thread pool, reduce the results in order, and
//! stop the moment the answer is known: PyPhi's `MapReduce` engine for Rust.
//!
//! ```
//! use mapreduce::{jobs, par_map_reduce};
//!
//! let cost = |cut: u64, _: &()| (cut * 7919 % 10_007, cut); // (cost, cut)
//! let cheapest = par_map_reduce(1..100_000u64, &(), jobs::min_by_key(cost).stop_at(0)).unwrap();
//! assert_eq!(cheapest, Some((0, 10_007))); // found, and the search stopped there
//! ```
//!
//! Jobs for the common cases are in [`jobs`]; implement [`MapReduce`] for
//! your own. Runnable programs for every use are in the crate's `examples/`
//! (`cargo run --release --example min_cut`).
//!
//! # The mental model
//!
//! A job ([`MapReduce`]) says what to do with one item and how results
//! combine. A run splits the items into stretches of adjacent items, one per
//! task, the way rayon splits work:
//!
//! ```text
//!                 merge                      items  0 1 2 3 4 5 6 7
//!               /       \                    tasks  [0 1 2][3 4][5 6 7]
//!           merge        fold(5 6 7)         each task: acc = empty_result
//!          /     \                                   acc = process_result(compute(item), acc)
//!   fold(0 1 2)  fold(3 4)                   joins: merge(left, right), always in order
//! ```
//!
//! Each task folds its stretch: `compute` maps an item (the heavy work),
//! `process_result` folds the output into the accumulator. Adjacent
//! accumulators are joined by `merge`, left before right. For the parallel
//! answer to equal the sequential one, `merge` must obey **the merge law**:
//! folding `xs ++ ys` equals `merge(fold(xs), fold(ys))`, `Break` included.
//! [`testing::check_merge_law`] checks it on random splits.
//!
//! **Break.** `process_result` or `merge` may return `Break(acc)`: the
//! answer is known and the run stops (PyPhi's `self.done = True`).
//!
//! # Determinism and its cost
//!
//! In deterministic mode (the default) the answer of [`par_map_reduce`]
//! equals [`seq_map_reduce`]'s for every job obeying the merge law, any
//! worker count, any input (0 items included), `Break`s and panics included:
//! the leftmost `Break` or panic wins, as it would sequentially. The cost:
//! items left of a `Break` are still computed (the sequential run would have
//! computed them); items right of a known `Break` are never started, and the
//! one in flight on each worker sees [`is_cancelled`]. The pruning is by
//! position in the input, for indexed and unindexed iterators alike, and
//! costs one relaxed atomic load per item.
//!
//! **Time to the first match.** Rayon hands each worker a half of the input,
//! so a deterministic search whose answer sits at a third of the input
//! spends about as long as one worker scanning that third alone: the other
//! worker's half lies right of the answer. When time to the first `Break`
//! is what matters (PyPhi's search for a cut that costs nothing), run an
//! indexed input with [`par_map_reduce_in_order`] (or
//! [`IndexedParallelMapReduce::map_reduce_in_order`]): it scans growing
//! blocks from the start with all workers, with the same answer. Rayon's
//! `by_exponential_blocks()` composes with [`ParallelMapReduce::map_reduce`]
//! to the same effect, and the streamed [`par_map_reduce_iter`] reads in
//! growing batches:
//!
//! ```
//! use mapreduce::{jobs, par_map_reduce_in_order};
//!
//! let first = par_map_reduce_in_order(0..30_000_000usize, &(), jobs::find_first(|x: &usize, _: &()| *x == 10_000_000));
//! assert_eq!(first.unwrap(), Some(10_000_000));
//! ```
//!
//! In any-order mode ([`Config::with_deterministic`]`(false)`) the first
//! `Break` or panic found wins and everything else stops at once; a
//! shortcircuited answer is still an answer that ends at a `Break`, and an
//! answer without one equals the sequential answer.
//!
//! # Reproducible reductions: the same bits everywhere
//!
//! A float `merge` is not associative: a sum grouped differently changes
//! its last bits, and rayon's grouping follows work stealing. The in-order
//! entry points ([`par_map_reduce_in_order`],
//! [`IndexedParallelMapReduce::map_reduce_in_order`]), the streamed
//! [`par_map_reduce_iter`] and `mpi::par_map_reduce` group by a **fixed tree
//! of leaves** instead: their answer is a function of the items (in order),
//! `ctx`, the job and the leaf size only — never of the worker count, the
//! rank count, scheduling, timing, progress bars or stream batches.
//!
//! **Leaves.** The input is cut into leaves of `leaf_size` consecutive items
//! ([`Config::with_leaf_size`], `MAPREDUCE_LEAF_SIZE`); each leaf is folded
//! left to right from `empty_result`. The automatic size (`0`, the default)
//! is `clamp(len / 1024, 1, 16384)` for an input of `len` items: 400 coarse
//! items make 400 leaves that spread over all workers, and no leaf of
//! ordinary items lasts long. A stream with an exact `size_hint` uses the
//! same rule; a stream of unknown length has leaves that grow with position:
//! 1 item for each of the first 16 leaves, then 2, 4, …, doubling every 16
//! leaves up to 16,384. (A leaf may span a stream's batches: it is what is
//! folded in one go, not what is held in memory.)
//!
//! **The tree: the binary-counter rule.** Leaves are pushed in order onto a
//! stack; a leaf has height 0. After each push, while the two entries on top
//! have equal heights, they are replaced by `merge(lower, upper)`, one
//! higher. When the leaves run out, the stack is collapsed left to right:
//! `merge(merge(s0, s1), s2)`, and so on. The tree is a row of perfect
//! binary trees, one per bit of the leaf count, largest first; for 6 leaves:
//!
//! ```text
//!                 collapse
//!                /        \
//!           m(0..4)        m(4..6)
//!           /     \         /   \
//!      m(0..2)   m(2..4)   L4   L5
//!      /   \     /   \
//!     L0   L1   L2   L3
//! ```
//!
//! The leaf rule and this tree are part of the crate's semver contract:
//! changing either changes answers, and is a breaking change.
//!
//! **Break and panics.** In deterministic mode the answer is the one-worker
//! evaluation of this tree, bottom-up and left to right (leaf 0, leaf 1,
//! their merge, leaf 2, …), stopping at the first `Break` or panic met in
//! that order, whether `process_result` or `merge` returns or raises it.
//! What lies left of it is then collapsed left to right with the event's
//! own piece (the broken accumulator; or, after a panic in `compute`, the
//! leaf's items folded before it); a `Break` that this collapse finds wins
//! over a panic, as it does sequentially. For jobs whose merge law holds
//! exactly, the answer is [`seq_map_reduce`]'s. Any-order mode is
//! reproducible when no `Break` occurs.
//!
//! **The reference.** [`Config::with_parallel`]`(false)` evaluates the same
//! tree on one worker: the sequential reference every parallel answer
//! equals. (`par_map_reduce` under `with_parallel(false)` stays a plain
//! fold, equal to `seq_map_reduce`: the two differ in the last bits of
//! non-associative merges.) [`Config::with_oversubscription`] lets tests run
//! more workers than cores.
//!
//! ```
//! use mapreduce::prelude::*;
//!
//! // An order-sensitive float sum: the same bits for 1, 2, 3 and 8 workers.
//! let sum = |workers| {
//!     Config::current()
//!         .with_workers(workers)
//!         .with_oversubscription(true)
//!         .scope(|| par_map_reduce_in_order(0..100_000usize, &(), jobs::sum(|i: usize, _: &()| (i as f64).sin() * 1e-3f64.powi((i % 7) as i32))))
//!         .unwrap()
//!         .to_bits()
//! };
//! assert!([2, 3, 8].iter().all(|&workers| sum(workers) == sum(1)));
//! ```
//!
//! **What is promised, and what is not.** The same bits for the same binary
//! on the same target, run after run, machine after machine of that target,
//! whatever the workers or ranks. Not promised: the same bits across CPUs
//! whose `libm` or fused multiply-add differ (a `sin` in `compute` may
//! round differently elsewhere), nor through [`par_map_reduce`] over
//! arbitrary parallel iterators, which keeps rayon's adaptive splitting
//! (its non-associative merges vary there). Pitfalls a job can still fall
//! into: iterating a `HashMap` inside an accumulator (its order is random
//! per process), a random generator in `compute` that is not seeded from
//! the item, and a nested run inside `compute` that is not itself in order.
//! For sums that need no tree at all, [`jobs::exact_sum`] is correctly
//! rounded and order-free: the same bits over any iterator and any split.
//!
//! # Configuration
//!
//! [`Config`] holds the worker count (PyPhi's `NUMBER_OF_CORES` rule:
//! `n > 0`, `-1` all cores, `-2` all but one), progress bars, parallel and
//! deterministic flags, and the cap on the items a stream holds in flight.
//! Defaults come from `MAPREDUCE_WORKERS`, `MAPREDUCE_PROGRESS`,
//! `MAPREDUCE_PARALLEL`, `MAPREDUCE_DETERMINISTIC` and
//! `MAPREDUCE_STREAM_BUFFER`;
//! [`Config::scope`] overrides them for a block of code, on this thread and
//! in every task and nested run started inside it, whatever thread runs it:
//!
//! ```
//! use mapreduce::{jobs, par_map_reduce, Config};
//!
//! let workers_seen = Config::current().with_workers(1).scope(|| {
//!     par_map_reduce(0..3, &(), jobs::collect(|_: i32, _: &()| Config::current().workers()))
//! });
//! assert_eq!(workers_seen.unwrap(), [1, 1, 1]);
//! ```
//!
//! Pools are built once per worker count and reused; their threads are
//! named `mapreduce-<index>` (`mapreduce-<index>of<n>` in a pool of `n`
//! workers other than all cores). A run started on any thread that is not one of
//! these workers (the main thread, a thread of the application's own rayon
//! pool, inside `rayon::scope`) is a top-level run: it honours its config's
//! worker count, bar and sink. Runs started inside a task are nested: they
//! stay on the pool they are called from, without extra threads or
//! deadlock, and draw no bar of their own.
//!
//! **How deep.** A nested run runs on the worker that started it, so nesting
//! uses that worker's stack. Our workers get 64 MiB stacks (rayon's default
//! is 2 MiB) of address space, of which only what nesting touches is used:
//! in release builds, 10,000 levels of nested one-item runs fit (each level
//! takes 3–4 KiB plus the job's own frames). Deeper than its stack, a
//! program overflows and aborts, as any recursion does.
//!
//! # Cancellation
//!
//! [`is_cancelled`] is true inside `compute` once the item's result can no
//! longer matter: a `Break` or panic left of it (deterministic) or anywhere
//! (any order), or the cancellation of the task that started the run. Long
//! computations poll it and return early; what they return is discarded.
//! A nested run whose task is cancelled ends with [`Error::Cancelled`].
//!
//! **Inside data-parallel `compute`.** `is_cancelled()` and
//! [`Config::current`] answer for the task of the thread that calls them.
//! When `compute` hands work to rayon itself (a `join`, a `par_iter`), other
//! workers may steal it, and there they would answer for their own tasks:
//! rayon has no hook that carries ours along. So take the item's [`Task`]
//! with [`current_task`] and *move* it into the inner closures: it answers
//! for its item wherever it goes, and [`Task::enter`] runs code (free
//! functions, nested runs) as that task:
//!
//! ```
//! use mapreduce::{current_task, jobs, par_map_reduce_in_order};
//! use mapreduce::rayon::prelude::*; // no rayon dependency of your own
//!
//! // The first item whose 1,000 sub-evaluations all pass, each polling its
//! // own item's cancellation, whichever worker runs it.
//! let job = jobs::find_first(|x: &u32, _: &()| {
//!     let task = current_task();
//!     (1..=1000u32).into_par_iter().all(move |i| !task.is_cancelled() && (x + i) % 1009 != 0)
//! });
//! assert_eq!(par_map_reduce_in_order(10..5000u32, &(), job).unwrap(), Some(1009));
//! ```
//!
//! **Stopping a run from outside.** [`Config::with_stop`] gives runs a
//! [`StopHandle`]; pulling it (from any thread) cancels the items in flight
//! and ends the run with [`Error::Stopped`]. [`Config::with_deadline`] does
//! the same at a moment. Durable runs (feature `durable`, below) save their
//! completed prefix before they return.
//!
//! # Errors
//!
//! A panic in `compute`, `process_result`, `merge` or `empty_result` (or in
//! the iterator of a streamed run) stops the run promptly and comes back as
//! [`Error::Panicked`], with the item's index when known, the message, and
//! the payload, which [`Error::resume`] re-raises. The pool stays usable. A
//! bad configuration is an [`Error::Config`] when the run starts, never a
//! panic. A job that can fail in its own way carries the error in its
//! accumulator (`Acc = Result<_, E>`) and answers `Break(Err(e))`; in
//! deterministic mode the leftmost error wins (see `examples/fallible.rs`).
//!
//! **Which event wins** (deterministic mode): the one a sequential run meets
//! first. A `Break` left of a panic wins, also when only `merge` finds it
//! (a pair of items that straddles two tasks): the items a task folded
//! before a panic in `compute` are merged with what lies left of them.
//! Two limits, both from panics that consume an accumulator:
//!
//! - A panic in `process_result` consumes its task's accumulator: a `Break`
//!   that only `merge` would find between that task's earlier items and the
//!   items left of them is not found, and the panic is reported instead.
//!   (`process_result` that panics is rare; `compute` is where the work is.)
//! - A panic in `merge` (sequential runs never merge) is an event at the
//!   stretch it joins: a `Break` or panic left of that stretch still wins,
//!   so a merge that would panic only right of the answer never changes it;
//!   one the answer needs fails the run, with no item index.
//!
//! A panic in the job's `description` or in a streamed iterator's
//! `size_hint` fails the run the same way, as does one in a log call made
//! inside `compute` (that item's panic): the process and its logging go on.
//!
//! # Inputs
//!
//! [`par_map_reduce`] takes anything rayon can iterate in parallel (ranges,
//! vectors, slices, adaptors, `par_bridge`), [`ParallelMapReduce`] adds
//! `.map_reduce(ctx, job)` to every parallel iterator, and
//! [`par_map_reduce_iter`] streams a plain `Iterator` of any length (not
//! necessarily `Send`) in bounded batches, with flat memory: at most two
//! batches, each handed to the workers when full or after 4 ms of reading,
//! and [`Config::with_stream_buffer`] caps the items in flight when each
//! owns much (see [`par_map_reduce_iter`]'s "Memory").
//!
//! # Progress and logging
//!
//! A top-level run on a terminal shows a progress bar on stderr once it has
//! lasted 0.4 s: the job's [`description`](MapReduce::description), items
//! done and total (a spinner when the length is unknown), rate and ETA. It
//! is cleared when the run ends (`MAPREDUCE_PROGRESS=always`, or
//! [`Config::with_progress_bars_always`], draws it where stderr is a pipe a
//! person watches, as under `mpirun`). Workers count in a register and
//! publish when a task ends or when the bar (ten times a second) asks, so a
//! watched run folds its items as fast as an unwatched one. A
//! [`ProgressSink`] observes the same progress without drawing. Records
//! logged with the `log` crate inside tasks reach the application's logger;
//! [`init_logging`] installs `env_logger` so that they print above the bar,
//! each naming its thread. The engine logs its lifecycle at debug and trace
//! level, never per item.
//!
//! # On a cluster (feature `mpi`)
//!
//! With the `mpi` cargo feature, `mapreduce::mpi::par_map_reduce` runs a job
//! across the ranks of an MPI job (`mpirun`, `srun`): rank 0 hands out
//! blocks of indices, every rank computes on its own pool, a `Break`
//! anywhere stops every rank, and every rank returns the sequential answer;
//! `mapreduce::mpi::init_logging` prints every rank's log lines on rank 0.
//! See the README's "Running on a cluster" and the module's own docs.
//!
//! # Long runs (feature `durable`)
//!
//! With the `durable` cargo feature,
//! `durable::par_map_reduce_durable` and
//! `durable::par_map_reduce_iter_durable` save a run's completed prefix (the
//! leaves of the fixed tree done, and their pending accumulators) to a
//! checkpoint file every interval, on Ctrl-C, SIGTERM or SIGUSR1 when asked,
//! and when it ends; the same command, run again, resumes and returns the
//! bits an uninterrupted run returns. See the module's docs and the README's
//! "Long runs".
//!
//! # Coming from PyPhi
//!
//! | PyPhi (`pyphi.compute.parallel`) | `mapreduce` |
//! |---|---|
//! | `class MyJob(MapReduce)` | `impl MapReduce<Item, Ctx> for MyJob` |
//! | `empty_result(self, *context)` | [`MapReduce::empty_result`] |
//! | `compute(item, *context)` | [`MapReduce::compute`] |
//! | `process_result(self, new, previous)` | [`MapReduce::process_result`], returning `Continue(acc)` |
//! | `self.done = True` | return `Break(acc)` |
//! | combining results of subprocesses | [`MapReduce::merge`] (sequential runs never call it) |
//! | `MapReduce.run(parallel=True)` | [`par_map_reduce`], or `.map_reduce(ctx, job)` on a parallel iterator |
//! | `MapReduce.run(parallel=False)` / `run_sequential` | [`seq_map_reduce`], or `Config::with_parallel(false)` |
//! | `description` | [`MapReduce::description`] |
//! | `get_num_processes()` | [`Config::num_workers`] |
//! | `config.NUMBER_OF_CORES` | [`Config::with_workers`], `MAPREDUCE_WORKERS` |
//! | `config.PROGRESS_BARS` | [`Config::with_progress_bars`], `MAPREDUCE_PROGRESS` |
//! | `config.PARALLEL_*_EVALUATION` | [`Config::with_parallel`], `MAPREDUCE_PARALLEL` |
//! | `config.override(...)` | [`Config::scope`] |
//! | `ExceptionWrapper` / `.reraise()` | [`Error::Panicked`] / [`Error::resume`] |
//! | `LogThread` (worker logs to the parent) | workers log with `log`; [`init_logging`]; across MPI ranks, `mpi::init_logging` |
//! | tqdm progress bar | built in; [`ProgressSink`] for other front ends |
//! | materializing the iterable into a list | never: [`par_map_reduce_iter`] streams |

mod cancel;
mod config;
#[cfg(feature = "durable")]
pub mod durable;
mod engine;
mod error;
mod job;
pub mod jobs;
pub mod logging;
#[cfg(feature = "mpi")]
pub mod mpi;
mod pool;
pub mod prelude;
mod progress;
mod range;
mod sequential;
mod stop;
mod stream;
mod sync;
pub mod testing;

pub use cancel::{current_task, is_cancelled, Task};
pub use config::{
    Config, ENV_DETERMINISTIC, ENV_LEAF_SIZE, ENV_OVERSUBSCRIBE, ENV_PARALLEL, ENV_PROGRESS, ENV_STREAM_BUFFER,
    ENV_WORKERS,
};
pub use error::{ConfigError, Error, PanicPayload};
pub use job::MapReduce;
pub use logging::init_logging;
pub use progress::{Outcome, ProgressSink};
pub use range::{indexed_range, IndexedRange, IntoIndexedRange, RangeInteger};

/// The rayon this crate runs on, so that `par_iter()` and friends need no
/// version-matched dependency of your own (`mapreduce::prelude::*` brings
/// rayon's prelude too).
pub use rayon;

/// The `env_logger` that [`init_logging`] installs, for
/// [`logging::init_logging_with`]'s builder without a dependency of your own.
pub use env_logger;

/// The `log` crate whose records [`init_logging`] prints above the bars:
/// `mapreduce::log::info!(..)` inside `compute` needs no dependency of your
/// own (any `log` 0.4 of yours reaches the same logger).
pub use log;
pub use sequential::seq_map_reduce;
pub use stop::StopHandle;
pub use stream::par_map_reduce_iter;

use rayon::iter::{IndexedParallelIterator, IntoParallelIterator, ParallelIterator};

/// Run `job` over `items` with the current [`Config`]: in parallel on the
/// pool, or one item at a time in order when [`Config::parallel`] is off.
/// With `deterministic` on (the default) the answer equals
/// [`seq_map_reduce`]'s, `Break`s and panics included, for jobs whose merge
/// law holds. It keeps rayon's adaptive splitting, which follows work
/// stealing: a float `merge`, which is not associative, may change its last
/// bits from run to run. For the same bits every time, use
/// [`par_map_reduce_in_order`] (or [`jobs::exact_sum`] for float sums).
///
/// ```
/// use mapreduce::{jobs, par_map_reduce};
///
/// let words = vec!["map", "every", "item"];
/// let lengths = par_map_reduce(words, &(), jobs::collect(|w: &str, _: &()| w.len())).unwrap();
/// assert_eq!(lengths, [3, 5, 4]);
/// ```
pub fn par_map_reduce<I, C, J>(items: I, ctx: &C, job: J) -> Result<J::Acc, Error>
where
    I: IntoParallelIterator,
    C: Sync + ?Sized,
    J: MapReduce<I::Item, C>,
{
    items.into_par_iter().map_reduce(ctx, job)
}

/// Run `job` over an indexed input scanned in order, reproducibly: growing
/// blocks of whole leaves from the start, each split among all workers. A
/// search whose first `Break` lies at item `k` returns after about
/// `k / workers` items' time, wherever `k` falls; [`par_map_reduce`] gives
/// each worker a half of the input, so when the answer lies in the left
/// half, the worker on the right half works past it. This is the entry point
/// for searches where time to the answer is the product, such as PyPhi's
/// search for a cut that loses nothing.
///
/// **The same bits everywhere.** The answer is a function of the items, the
/// job and the leaf size only ([`Config::with_leaf_size`]), never of the
/// worker count, scheduling or bars: leaves are joined in the fixed tree the
/// crate docs draw ("Reproducible reductions"). For jobs whose merge law
/// holds exactly it is `seq_map_reduce`'s answer; for float sums it is the
/// same bits on a laptop and a 64-core node.
///
/// Ranges of `u64` or `i64` go through [`indexed_range`] (rayon indexes
/// neither; the compiler then speaks of `IndexedRangeInteger`).
///
/// ```
/// use mapreduce::{jobs, par_map_reduce_in_order};
///
/// let first = par_map_reduce_in_order(0..30_000_000usize, &(), jobs::find_first(|x: &usize, _: &()| *x == 1_000_000));
/// assert_eq!(first.unwrap(), Some(1_000_000));
/// ```
pub fn par_map_reduce_in_order<I, C, J>(items: I, ctx: &C, job: J) -> Result<J::Acc, Error>
where
    I: IntoParallelIterator,
    I::Iter: IndexedParallelIterator,
    C: Sync + ?Sized,
    J: MapReduce<I::Item, C>,
{
    items.into_par_iter().map_reduce_in_order(ctx, job)
}

/// Extension methods, in scope through `mapreduce::prelude::*`.
pub trait ParallelMapReduce: ParallelIterator {
    /// Run `job` over this iterator's items, like [`par_map_reduce`]; works
    /// for indexed and unindexed iterators alike.
    ///
    /// ```
    /// use mapreduce::{jobs, prelude::*};
    /// use mapreduce::rayon::prelude::*;
    ///
    /// let odd_sum = (0..100u64)
    ///     .into_par_iter()
    ///     .filter(|x| x % 2 == 1)
    ///     .map_reduce(&(), jobs::sum(|x: u64, _: &()| x))
    ///     .unwrap();
    /// assert_eq!(odd_sum, 2500);
    /// ```
    fn map_reduce<C, J>(self, ctx: &C, job: J) -> Result<J::Acc, Error>
    where
        C: Sync + ?Sized,
        J: MapReduce<Self::Item, C>;
}

impl<P: ParallelIterator> ParallelMapReduce for P {
    fn map_reduce<C, J>(self, ctx: &C, job: J) -> Result<J::Acc, Error>
    where
        C: Sync + ?Sized,
        J: MapReduce<Self::Item, C>,
    {
        engine::map_reduce(self, ctx, &job)
    }
}

/// Extension methods for indexed parallel iterators, in scope through
/// `mapreduce::prelude::*`.
pub trait IndexedParallelMapReduce: IndexedParallelIterator {
    /// Run `job` over this iterator's items scanned in order, like
    /// [`par_map_reduce_in_order`].
    ///
    /// ```
    /// use mapreduce::{jobs, prelude::*};
    /// use mapreduce::rayon::prelude::*;
    ///
    /// let cuts: Vec<u32> = (0..100_000).map(|i| (i * 7919) % 100_003).collect();
    /// let free = cuts.par_iter().map_reduce_in_order(&(), jobs::find_first(|c: &&u32, _: &()| **c == 0));
    /// assert_eq!(free.unwrap(), Some(&0));
    /// ```
    fn map_reduce_in_order<C, J>(self, ctx: &C, job: J) -> Result<J::Acc, Error>
    where
        C: Sync + ?Sized,
        J: MapReduce<Self::Item, C>;
}

impl<P: IndexedParallelIterator> IndexedParallelMapReduce for P {
    fn map_reduce_in_order<C, J>(self, ctx: &C, job: J) -> Result<J::Acc, Error>
    where
        C: Sync + ?Sized,
        J: MapReduce<Self::Item, C>,
    {
        engine::map_reduce_in_order(self, ctx, &job)
    }
}

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
