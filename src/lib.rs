//! Map every item on a rayon thread pool, reduce the results in order, and
//! stop the moment the answer is known: PyPhi's `MapReduce` engine for Rust.
//!
//! ```
//! use mapreduce::{jobs, par_map_reduce};
//!
//! let cheapest = par_map_reduce(1..100_000u64, &(), jobs::min_by_key(|x: u64, _: &()| (x * 7919 % 10_007, x)).stop_at(0));
//! assert_eq!(cheapest.unwrap(), Some((0, 10_007)));
//! ```
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
//! folding `xs ++ ys` equals `merge(fold(xs), fold(ys))`.
//! [`testing::check_merge_law`] checks it on random splits.
//!
//! **Shortcircuits.** `process_result` or `merge` may return `Break(acc)`:
//! the answer is known, and the run stops (PyPhi's `self.done = True`). In
//! deterministic mode (the default) the leftmost `Break` wins, exactly as a
//! sequential run would see it: items right of a known `Break` are not
//! started, items left of it are still computed. In any-order mode
//! ([`Config::with_deterministic`]`(false)`) the first `Break` found wins and
//! everything stops at once. Work that can no longer matter sees
//! [`is_cancelled`] and may return early.
//!
//! **Failures.** A panic in `compute`, `process_result` or `merge` stops the
//! run and comes back as [`Error::Panicked`] naming the item (the leftmost,
//! in deterministic mode); [`Error::resume`] re-raises it. The pool stays
//! usable.
//!
//! **Configuration** ([`Config`]) is scoped: [`Config::scope`] applies to
//! the calling thread and to every task and nested run started inside it,
//! on whatever thread they run. Defaults come from `MAPREDUCE_WORKERS`,
//! `MAPREDUCE_PROGRESS`, `MAPREDUCE_PARALLEL` and `MAPREDUCE_DETERMINISTIC`.
//!
//! **Inputs.** [`par_map_reduce`] takes anything rayon can iterate in
//! parallel (ranges, vectors, slices, `par_bridge`), [`ParallelMapReduce`]
//! adds `.map_reduce(ctx, job)` to every parallel iterator, and
//! [`par_map_reduce_iter`] streams a plain `Iterator` of any length in
//! bounded batches. [`seq_map_reduce`] is the sequential reference.
//!
//! **Nested runs** (a task that starts a run) stay on the pool they are
//! called from, at any depth, without extra threads or deadlock.
//!
//! **Logging.** Records logged with the `log` crate inside tasks reach the
//! application's logger; [`init_logging`] installs `env_logger`. The engine
//! logs its own lifecycle at debug and trace level.

mod cancel;
mod config;
mod engine;
mod error;
mod job;
pub mod jobs;
pub mod logging;
mod pool;
pub mod prelude;
mod progress;
mod sequential;
mod stream;
pub mod testing;

pub use cancel::is_cancelled;
pub use config::{Config, ENV_DETERMINISTIC, ENV_PARALLEL, ENV_PROGRESS, ENV_WORKERS};
pub use error::{ConfigError, Error};
pub use job::MapReduce;
pub use logging::init_logging;
pub use progress::{Outcome, ProgressSink};
pub use sequential::seq_map_reduce;
pub use stream::par_map_reduce_iter;

use rayon::iter::{IntoParallelIterator, ParallelIterator};

/// Run `job` over `items` with the current [`Config`]: in parallel on the
/// pool, or one item at a time in order when [`Config::parallel`] is off.
/// With `deterministic` on (the default) the answer equals
/// [`seq_map_reduce`]'s, `Break`s and panics included.
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

/// Extension methods, in scope through `mapreduce::prelude::*`.
pub trait ParallelMapReduce: ParallelIterator {
    /// Run `job` over this iterator's items, like [`par_map_reduce`]; works
    /// for indexed and unindexed iterators alike.
    ///
    /// ```
    /// use mapreduce::{jobs, prelude::*};
    /// use rayon::prelude::*;
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

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
