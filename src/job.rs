//! The job trait: what to compute per item and how results combine.

use std::ops::ControlFlow;

/// A map-reduce job: the Rust form of a PyPhi `MapReduce` subclass.
/// `T` is the item type, `C` the read-only context shared by every task.
///
/// A run folds each stretch of adjacent items into an accumulator, starting
/// from [`empty_result`](Self::empty_result): [`compute`](Self::compute)
/// maps an item, [`process_result`](Self::process_result) folds the output
/// in. Accumulators of adjacent stretches are joined in order by
/// [`merge`](Self::merge). Returning `Break` from either ends the run
/// (PyPhi's `self.done = True`).
///
/// **The merge law.** Folding `xs ++ ys` from `empty_result` must equal
/// `merge(fold(xs), fold(ys))`, `Break` included: if the fold of `xs ++ ys`
/// breaks inside `ys`, `merge` must return the same value (whether as
/// `Continue` or `Break` no longer matters then); if it breaks only once
/// `xs` and `ys` are combined, `merge` returns `Break`. Check a job with
/// [`testing::check_merge_law`](crate::testing::check_merge_law).
///
/// ```
/// use std::ops::ControlFlow::{self, Break, Continue};
/// use mapreduce::{par_map_reduce, MapReduce};
///
/// /// The smallest square above a threshold, stopping at the first exact hit.
/// struct SmallestSquare;
///
/// impl MapReduce<u64, u64> for SmallestSquare {
///     type Output = u64;
///     type Acc = Option<u64>;
///
///     fn description(&self) -> &str { "Squaring" }
///     fn empty_result(&self, _: &u64) -> Option<u64> { None }
///     fn compute(&self, x: u64, threshold: &u64) -> u64 {
///         if x * x >= *threshold { x * x } else { u64::MAX }
///     }
///     fn process_result(&self, new: u64, acc: Option<u64>) -> ControlFlow<Option<u64>, Option<u64>> {
///         let best = acc.map_or(new, |a| a.min(new));
///         if best == 100 { Break(Some(best)) } else { Continue(Some(best)) }
///     }
///     fn merge(&self, left: Option<u64>, right: Option<u64>) -> ControlFlow<Option<u64>, Option<u64>> {
///         let best = match (left, right) {
///             (Some(l), Some(r)) => Some(l.min(r)),
///             (l, r) => l.or(r),
///         };
///         if best == Some(100) { Break(best) } else { Continue(best) }
///     }
/// }
///
/// assert_eq!(par_map_reduce(0..1000u64, &100, SmallestSquare).unwrap(), Some(100));
/// assert_eq!(par_map_reduce(0..1000u64, &101, SmallestSquare).unwrap(), Some(121));
/// ```
pub trait MapReduce<T, C: ?Sized = ()>: Sync {
    /// What `compute` returns for one item.
    type Output: Send;
    /// The accumulated result.
    type Acc: Send;

    /// Text for the progress bar ("Evaluating cuts"); an empty one is drawn
    /// as "Processing". Give a built-in job one with
    /// [`jobs::described`](crate::jobs::described).
    fn description(&self) -> &str {
        ""
    }

    /// The result a computation starts from (PyPhi: `empty_result`).
    fn empty_result(&self, ctx: &C) -> Self::Acc;

    /// The map step for one item (PyPhi: `compute`).
    fn compute(&self, item: T, ctx: &C) -> Self::Output;

    /// Fold one new result into the accumulator (PyPhi: `process_result`).
    /// `Break(acc)` is PyPhi's `self.done = True`: the run stops and `acc`
    /// becomes the answer.
    fn process_result(&self, new: Self::Output, acc: Self::Acc) -> ControlFlow<Self::Acc, Self::Acc>;

    /// Join the accumulators of two adjacent runs of items, `left` before
    /// `right`. The merge law: folding `xs ++ ys` from `empty_result` equals
    /// `merge(fold(xs), fold(ys))`, `Break` included. When `right` ended in
    /// a `Break`, what `merge` returns is the final answer.
    fn merge(&self, left: Self::Acc, right: Self::Acc) -> ControlFlow<Self::Acc, Self::Acc>;
}

impl<T, C: ?Sized, J: MapReduce<T, C> + ?Sized> MapReduce<T, C> for &J {
    type Output = J::Output;
    type Acc = J::Acc;

    fn description(&self) -> &str {
        (**self).description()
    }
    fn empty_result(&self, ctx: &C) -> Self::Acc {
        (**self).empty_result(ctx)
    }
    fn compute(&self, item: T, ctx: &C) -> Self::Output {
        (**self).compute(item, ctx)
    }
    fn process_result(&self, new: Self::Output, acc: Self::Acc) -> ControlFlow<Self::Acc, Self::Acc> {
        (**self).process_result(new, acc)
    }
    fn merge(&self, left: Self::Acc, right: Self::Acc) -> ControlFlow<Self::Acc, Self::Acc> {
        (**self).merge(left, right)
    }
}
