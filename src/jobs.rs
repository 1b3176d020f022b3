//! Built-in jobs for the common cases, so most users never write `merge`.
//!
//! Each takes a closure `(item, &ctx) -> ...` that does the heavy per-item
//! work; the job supplies `empty_result`, `process_result` and `merge`, which
//! obey the merge law (so parallel results equal sequential ones; a [`sum`]
//! of floats only up to rounding, which [`exact_sum`] avoids).
//!
//! ```
//! use mapreduce::{jobs, par_map_reduce};
//!
//! let cost = |x: u64, _: &()| (x * 7919 % 1000, x);
//! assert_eq!(par_map_reduce(0..5000u64, &(), jobs::min_by_key(cost)).unwrap(), Some((0, 0)));
//! assert_eq!(par_map_reduce(0..5000u64, &(), jobs::count(|x: &u64, _: &()| x % 3 == 0)).unwrap(), 1667);
//! ```

use std::cmp::Ordering;
use std::marker::PhantomData;
use std::ops::Add;
use std::ops::ControlFlow::{self, Break, Continue};

use crate::job::MapReduce;

mod exact_sum;

pub use exact_sum::{exact_sum, ExactSum, ExactSumJob};

/// Collects `map(item)` for every item, in input order; made by [`collect`].
///
/// ```
/// let job: mapreduce::jobs::Collect<_, u8, (), u16> = mapreduce::jobs::collect(|x: u8, _: &()| u16::from(x) * 2);
/// assert_eq!(mapreduce::seq_map_reduce([1u8, 2], &(), job).unwrap(), [2, 4]);
/// ```
pub struct Collect<F, T, C: ?Sized, U> {
    map: F,
    _types: Signature<T, C, U>,
}

/// A job that collects `map(item, ctx)` for every item into a `Vec`, in
/// input order.
///
/// ```
/// use mapreduce::{jobs, par_map_reduce};
///
/// let squares = par_map_reduce(0..5, &(), jobs::collect(|x: i32, _: &()| x * x)).unwrap();
/// assert_eq!(squares, [0, 1, 4, 9, 16]);
/// ```
pub fn collect<T, C: ?Sized, U, F: Fn(T, &C) -> U + Sync>(map: F) -> Collect<F, T, C, U> {
    Collect {
        map,
        _types: PhantomData,
    }
}

impl<T, C: ?Sized, U: Send, F: Fn(T, &C) -> U + Sync> MapReduce<T, C> for Collect<F, T, C, U> {
    type Output = U;
    type Acc = Vec<U>;

    fn empty_result(&self, _: &C) -> Vec<U> {
        Vec::new()
    }
    fn compute(&self, item: T, ctx: &C) -> U {
        (self.map)(item, ctx)
    }
    fn process_result(&self, new: U, mut acc: Vec<U>) -> ControlFlow<Vec<U>, Vec<U>> {
        acc.push(new);
        Continue(acc)
    }
    fn merge(&self, mut left: Vec<U>, mut right: Vec<U>) -> ControlFlow<Vec<U>, Vec<U>> {
        if left.is_empty() {
            return Continue(right);
        }
        left.append(&mut right);
        Continue(left)
    }
}

/// Adds up `map(item)` over all items; made by [`sum`].
///
/// ```
/// let job = mapreduce::jobs::sum(|x: u8, _: &()| u32::from(x));
/// assert_eq!(mapreduce::seq_map_reduce([200u8, 100], &(), job).unwrap(), 300);
/// ```
pub struct Sum<F, T, C: ?Sized, S> {
    map: F,
    _types: Signature<T, C, S>,
}

/// A job that adds up `map(item, ctx)`, starting from `S::default()`.
/// Integer sums equal the sequential sum exactly; floating-point sums may
/// differ in the last bits, because addition is grouped differently. For
/// `f64`s that must be the same bits everywhere (any iterator, split or
/// worker count), and correctly rounded, use [`exact_sum`].
///
/// ```
/// use mapreduce::{jobs, par_map_reduce};
///
/// let total = par_map_reduce(1..=100u64, &(), jobs::sum(|x: u64, _: &()| x)).unwrap();
/// assert_eq!(total, 5050);
/// ```
pub fn sum<T, C: ?Sized, S, F: Fn(T, &C) -> S + Sync>(map: F) -> Sum<F, T, C, S> {
    Sum {
        map,
        _types: PhantomData,
    }
}

impl<T, C: ?Sized, S, F> MapReduce<T, C> for Sum<F, T, C, S>
where
    S: Default + Add<Output = S> + Send,
    F: Fn(T, &C) -> S + Sync,
{
    type Output = S;
    type Acc = S;

    fn empty_result(&self, _: &C) -> S {
        S::default()
    }
    fn compute(&self, item: T, ctx: &C) -> S {
        (self.map)(item, ctx)
    }
    fn process_result(&self, new: S, acc: S) -> ControlFlow<S, S> {
        Continue(acc + new)
    }
    fn merge(&self, left: S, right: S) -> ControlFlow<S, S> {
        Continue(left + right)
    }
}

/// Counts the items for which a predicate holds; made by [`count`].
///
/// ```
/// let job = mapreduce::jobs::count(|word: &&str, _: &()| word.len() > 3);
/// assert_eq!(mapreduce::seq_map_reduce(["tiny", "big", "huge"], &(), job).unwrap(), 2);
/// ```
pub struct Count<P, T, C: ?Sized> {
    predicate: P,
    _types: Signature<T, C, ()>,
}

/// A job that counts the items for which `predicate(&item, ctx)` holds.
///
/// ```
/// use mapreduce::{jobs, par_map_reduce};
///
/// let even = par_map_reduce(0..10, &(), jobs::count(|x: &i32, _: &()| x % 2 == 0)).unwrap();
/// assert_eq!(even, 5);
/// ```
pub fn count<T, C: ?Sized, P: Fn(&T, &C) -> bool + Sync>(predicate: P) -> Count<P, T, C> {
    Count {
        predicate,
        _types: PhantomData,
    }
}

impl<T, C: ?Sized, P: Fn(&T, &C) -> bool + Sync> MapReduce<T, C> for Count<P, T, C> {
    type Output = bool;
    type Acc = usize;

    fn empty_result(&self, _: &C) -> usize {
        0
    }
    fn compute(&self, item: T, ctx: &C) -> bool {
        (self.predicate)(&item, ctx)
    }
    fn process_result(&self, hit: bool, acc: usize) -> ControlFlow<usize, usize> {
        Continue(acc + usize::from(hit))
    }
    fn merge(&self, left: usize, right: usize) -> ControlFlow<usize, usize> {
        Continue(left + right)
    }
}

/// Which end of the key order a [`Best`] job keeps.
///
/// ```
/// assert_ne!(mapreduce::jobs::Keep::Min, mapreduce::jobs::Keep::Max);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// The smallest key.
    Min,
    /// The largest key.
    Max,
}

/// Ties a job to the item, context and output types of its closure, so that
/// closure arguments can be inferred.
type Signature<T, C, R> = PhantomData<fn(T, &C) -> R>;

/// The best `(key, value)` so far, if any.
type Found<K, V> = Option<(K, V)>;

/// Keeps the `(key, value)` with the smallest (or largest) key, the leftmost
/// on ties; optionally stops at the first key as good as a bound. Made by
/// [`min_by_key`] and [`max_by_key`].
///
/// ```
/// let job = mapreduce::jobs::min_by_key(|x: i32, _: &()| ((x - 3).abs(), x));
/// assert_eq!(mapreduce::seq_map_reduce([1, 2, 4, 5], &(), job).unwrap(), Some((1, 2)));
/// ```
///
/// # Keys that do not compare (NaN)
///
/// A key that is not comparable with itself (`k.partial_cmp(&k)` is `None`:
/// a NaN, or a tuple or struct holding one) is never better than any key,
/// and every key that is comparable with itself is better than it: NaN keys
/// lose, as if they were not there (numpy's `nanmin`). Among themselves
/// they tie, so the leftmost is kept: an input whose keys are all NaN gives
/// its first pair. A NaN key never meets a [`stop_at`](Best::stop_at)
/// bound, and a NaN bound is met by no key.
///
/// This ranks all keys in one order (the keys other than NaN by their own
/// order, then every NaN key, equal to one another), and keeping the
/// leftmost of the best under such an order does not depend on how the
/// items are grouped: `merge` is associative, so every split, worker count
/// and entry point gives the sequential answer. That needs the keys other
/// than NaN to be comparable with one another, as integers, strings, floats
/// and tuples of them are; a key type with pairs that do not compare
/// (sets ordered by inclusion) has no such order. Equal keys, such as `0.0`
/// and `-0.0`, are ties: the leftmost wins.
///
/// ```
/// use mapreduce::{jobs, par_map_reduce, seq_map_reduce};
///
/// let keys = [f64::NAN, 3.0, f64::NAN, 1.0, 2.0];
/// let job = jobs::min_by_key(|i: usize, keys: &[f64]| (keys[i], i));
/// // The NaN keys lose, wherever a run's stretches start.
/// assert_eq!(par_map_reduce(0..keys.len(), &keys[..], &job).unwrap(), Some((1.0, 3)));
/// assert_eq!(seq_map_reduce(0..keys.len(), &keys[..], &job).unwrap(), Some((1.0, 3)));
/// // Largest too: a NaN is not larger than anything.
/// let job = jobs::max_by_key(|i: usize, keys: &[f64]| (keys[i], i));
/// assert_eq!(seq_map_reduce(0..keys.len(), &keys[..], &job).unwrap(), Some((3.0, 1)));
///
/// // All NaN: the leftmost pair.
/// let job = jobs::min_by_key(|x: f64, _: &()| (x, x.is_sign_negative()));
/// let (key, negative) = seq_map_reduce([-f64::NAN, f64::NAN], &(), job).unwrap().unwrap();
/// assert!(key.is_nan() && negative);
/// ```
pub struct Best<F, T, C: ?Sized, K, V> {
    evaluate: F,
    keep: Keep,
    stop_at: Option<K>,
    _types: Signature<T, C, Found<K, V>>,
}

/// A job that keeps the `(key, value)` pair with the smallest key that
/// `evaluate(item, ctx)` returns, the leftmost on ties; `None` for no items.
/// With [`Best::stop_at`], it stops at the first key at or below a bound
/// (PyPhi's search for a cut that loses nothing).
///
/// ```
/// use mapreduce::{jobs, par_map_reduce};
///
/// // (cost, cut): the cheapest cut, stopping at the first free one.
/// let job = jobs::min_by_key(|cut: u32, _: &()| ((cut * 37) % 101, cut)).stop_at(0);
/// assert_eq!(par_map_reduce(1..1000u32, &(), job).unwrap(), Some((0, 101)));
/// ```
///
/// A key that is not comparable with itself (NaN) counts as larger than every
/// other key, so it is kept only when all keys are NaN (then the leftmost), and it
/// never meets the bound; see [`Best`] for the rule.
///
/// ```
/// use mapreduce::{jobs, par_map_reduce};
///
/// let cost = |x: u32, _: &()| (if x % 10 == 0 { f64::NAN } else { f64::from(x % 7) + 1.0 }, x);
/// assert_eq!(par_map_reduce(0..1000u32, &(), jobs::min_by_key(cost)).unwrap(), Some((1.0, 7)));
/// ```
pub fn min_by_key<T, C: ?Sized, K: PartialOrd, V, F: Fn(T, &C) -> (K, V) + Sync>(evaluate: F) -> Best<F, T, C, K, V> {
    Best {
        evaluate,
        keep: Keep::Min,
        stop_at: None,
        _types: PhantomData,
    }
}

/// A job that keeps the `(key, value)` pair with the largest key, the
/// leftmost on ties; with [`Best::stop_at`], it stops at the first key at or
/// above a bound.
///
/// ```
/// use mapreduce::{jobs, par_map_reduce};
///
/// let words = ["a", "bbb", "cc", "ddd"];
/// let longest = par_map_reduce(words, &(), jobs::max_by_key(|w: &str, _: &()| (w.len(), w))).unwrap();
/// assert_eq!(longest, Some((3, "bbb")));
/// ```
///
/// A key that is not comparable with itself (NaN) counts as smaller than every
/// other key, so it is kept only when all keys are NaN (then the leftmost), and it
/// never meets the bound; see [`Best`] for the rule.
///
/// ```
/// use mapreduce::{jobs, seq_map_reduce};
///
/// let ratio = |(a, b): (f64, f64), _: &()| (a / b, (a, b));
/// let items = [(0.0, 0.0), (1.0, 2.0), (3.0, 4.0)]; // 0/0 is NaN
/// assert_eq!(seq_map_reduce(items, &(), jobs::max_by_key(ratio)).unwrap(), Some((0.75, (3.0, 4.0))));
/// ```
pub fn max_by_key<T, C: ?Sized, K: PartialOrd, V, F: Fn(T, &C) -> (K, V) + Sync>(evaluate: F) -> Best<F, T, C, K, V> {
    Best {
        evaluate,
        keep: Keep::Max,
        stop_at: None,
        _types: PhantomData,
    }
}

impl<F, T, C: ?Sized, K: PartialOrd, V> Best<F, T, C, K, V> {
    /// Stop the run at the first key at or below `bound` (for
    /// [`min_by_key`]) or at or above it (for [`max_by_key`]): no better
    /// answer is wanted. A NaN key never meets the bound, and a NaN bound
    /// (one not comparable with itself) is met by no key: the run does not
    /// stop early.
    ///
    /// ```
    /// use mapreduce::{jobs, seq_map_reduce};
    ///
    /// let job = jobs::max_by_key(|x: i32, _: &()| (x, ())).stop_at(3);
    /// assert_eq!(seq_map_reduce([1, 5, 9], &(), job).unwrap(), Some((5, ())));
    ///
    /// let job = jobs::min_by_key(|x: f64, _: &()| (x, ())).stop_at(2.0);
    /// assert_eq!(seq_map_reduce([f64::NAN, 5.0, 2.0, 1.0], &(), job).unwrap(), Some((2.0, ())));
    /// let job = jobs::min_by_key(|x: f64, _: &()| (x, ())).stop_at(f64::NAN);
    /// assert_eq!(seq_map_reduce([5.0, 2.0, 1.0], &(), job).unwrap(), Some((1.0, ())));
    /// ```
    pub fn stop_at(mut self, bound: K) -> Self {
        // A bound that is not comparable with itself is met by no key.
        self.stop_at = comparable(&bound).then_some(bound);
        self
    }

    /// Whether `new` ranks strictly before `old` under the documented rule:
    /// by `keep` among keys comparable with themselves, and any such key
    /// before a key that is not (NaN). The common outcome, `new` not better
    /// than a comparable `old`, costs one comparison more than `new < old`:
    /// the check that `old` is comparable.
    fn better(&self, new: &K, old: &K) -> bool {
        let wins = match self.keep {
            Keep::Min => Ordering::Less,
            Keep::Max => Ordering::Greater,
        };
        if new.partial_cmp(old) == Some(wins) {
            // A NaN-like `new` can still compare with `old` (a tuple key
            // `(1.0, NaN) < (2.0, 0.0)`); it never wins.
            comparable(new)
        } else {
            !comparable(old) && comparable(new)
        }
    }

    fn flow(&self, best: Found<K, V>) -> ControlFlow<Found<K, V>, Found<K, V>> {
        // The bound is comparable (see `stop_at`), so a NaN-like key ranks
        // after it and never meets it.
        let good_enough = match (&best, &self.stop_at) {
            (Some((key, _)), Some(bound)) => !self.better(bound, key),
            _ => false,
        };
        if good_enough {
            Break(best)
        } else {
            Continue(best)
        }
    }
}

/// Whether `key` is comparable with itself: false for NaN and for keys
/// holding one (a tuple `(1.0, NaN)`).
fn comparable<K: PartialOrd>(key: &K) -> bool {
    key.partial_cmp(key).is_some()
}

impl<F, T, C, K, V> MapReduce<T, C> for Best<F, T, C, K, V>
where
    C: ?Sized,
    K: PartialOrd + Send + Sync,
    V: Send,
    F: Fn(T, &C) -> (K, V) + Sync,
{
    type Output = (K, V);
    type Acc = Option<(K, V)>;

    fn empty_result(&self, _: &C) -> Self::Acc {
        None
    }
    fn compute(&self, item: T, ctx: &C) -> (K, V) {
        (self.evaluate)(item, ctx)
    }
    fn process_result(&self, new: (K, V), acc: Self::Acc) -> ControlFlow<Self::Acc, Self::Acc> {
        self.merge(acc, Some(new))
    }
    fn merge(&self, left: Self::Acc, right: Self::Acc) -> ControlFlow<Self::Acc, Self::Acc> {
        let best = match (left, right) {
            (Some(l), Some(r)) => Some(if self.better(&r.0, &l.0) { r } else { l }),
            (l, r) => l.or(r),
        };
        self.flow(best)
    }
}

/// Finds the first item for which a predicate holds; made by [`find_first`].
///
/// ```
/// let job = mapreduce::jobs::find_first(|x: &i32, _: &()| *x < 0);
/// assert_eq!(mapreduce::seq_map_reduce([3, -1, -7], &(), job).unwrap(), Some(-1));
/// ```
pub struct FindFirst<P, T, C: ?Sized> {
    predicate: P,
    _types: Signature<T, C, ()>,
}

/// A job that returns the first item (in input order) for which
/// `predicate(&item, ctx)` holds, and stops there: items right of it are
/// not started once it is found.
///
/// ```
/// use mapreduce::{jobs, par_map_reduce};
///
/// let first = par_map_reduce(1..1_000_000u64, &(), jobs::find_first(|x: &u64, _: &()| x % 977 == 0)).unwrap();
/// assert_eq!(first, Some(977));
/// ```
pub fn find_first<T, C: ?Sized, P: Fn(&T, &C) -> bool + Sync>(predicate: P) -> FindFirst<P, T, C> {
    FindFirst {
        predicate,
        _types: PhantomData,
    }
}

impl<T: Send, C: ?Sized, P: Fn(&T, &C) -> bool + Sync> MapReduce<T, C> for FindFirst<P, T, C> {
    type Output = Option<T>;
    type Acc = Option<T>;

    fn empty_result(&self, _: &C) -> Option<T> {
        None
    }
    fn compute(&self, item: T, ctx: &C) -> Option<T> {
        (self.predicate)(&item, ctx).then_some(item)
    }
    fn process_result(&self, new: Option<T>, acc: Option<T>) -> ControlFlow<Option<T>, Option<T>> {
        self.merge(acc, new)
    }
    fn merge(&self, left: Option<T>, right: Option<T>) -> ControlFlow<Option<T>, Option<T>> {
        match left.or(right) {
            found @ Some(_) => Break(found),
            None => Continue(None),
        }
    }
}

/// Finds the first item for which `f` gives `Some`, and that value; made by
/// [`find_map_first`].
///
/// ```
/// let job = mapreduce::jobs::find_map_first(|x: &str, _: &()| x.parse::<u8>().ok());
/// assert_eq!(mapreduce::seq_map_reduce(["a", "7", "9"], &(), job).unwrap(), Some(7));
/// ```
pub struct FindMapFirst<F, T, C: ?Sized, U> {
    f: F,
    _types: Signature<T, C, Option<U>>,
}

/// A job that returns the first `Some(value)` that `f(item, ctx)` gives, in
/// input order, and stops there: items right of it are not started once it
/// is found (rayon's `find_map_first`). `None` when no item gives `Some`.
/// Like [`find_first`], but the search can return what it computed about
/// the item: the first cut whose phi is zero, and that phi.
///
/// ```
/// use mapreduce::{jobs, par_map_reduce};
///
/// // The first multiple of 977, and its quotient.
/// let job = jobs::find_map_first(|x: u64, _: &()| (x % 977 == 0).then_some((x, x / 977)));
/// assert_eq!(par_map_reduce(1..1_000_000u64, &(), &job).unwrap(), Some((977, 1)));
/// assert_eq!(par_map_reduce(1..977u64, &(), &job).unwrap(), None);
/// ```
pub fn find_map_first<T, C: ?Sized, U, F: Fn(T, &C) -> Option<U> + Sync>(f: F) -> FindMapFirst<F, T, C, U> {
    FindMapFirst { f, _types: PhantomData }
}

impl<T, C: ?Sized, U: Send, F: Fn(T, &C) -> Option<U> + Sync> MapReduce<T, C> for FindMapFirst<F, T, C, U> {
    type Output = Option<U>;
    type Acc = Option<U>;

    fn empty_result(&self, _: &C) -> Option<U> {
        None
    }
    fn compute(&self, item: T, ctx: &C) -> Option<U> {
        (self.f)(item, ctx)
    }
    fn process_result(&self, new: Option<U>, acc: Option<U>) -> ControlFlow<Option<U>, Option<U>> {
        self.merge(acc, new)
    }
    fn merge(&self, left: Option<U>, right: Option<U>) -> ControlFlow<Option<U>, Option<U>> {
        match left.or(right) {
            found @ Some(_) => Break(found),
            None => Continue(None),
        }
    }
}

/// Decides whether a predicate holds for any (or for all) items; made by
/// [`any`] and [`all`].
///
/// ```
/// let job = mapreduce::jobs::any(|x: &i32, _: &()| *x > 2);
/// assert!(mapreduce::seq_map_reduce([1, 2, 3], &(), job).unwrap());
/// ```
pub struct Quantifier<P, T, C: ?Sized> {
    predicate: P,
    /// The answer that ends the search: `true` for any, `false` for all.
    decisive: bool,
    _types: Signature<T, C, ()>,
}

/// A job that tells whether `predicate(&item, ctx)` holds for some item,
/// stopping at the first that does.
///
/// ```
/// use mapreduce::{jobs, par_map_reduce};
///
/// assert!(par_map_reduce(0..100, &(), jobs::any(|x: &i32, _: &()| *x == 42)).unwrap());
/// assert!(!par_map_reduce(0..0, &(), jobs::any(|_: &i32, _: &()| true)).unwrap());
/// ```
pub fn any<T, C: ?Sized, P: Fn(&T, &C) -> bool + Sync>(predicate: P) -> Quantifier<P, T, C> {
    Quantifier {
        predicate,
        decisive: true,
        _types: PhantomData,
    }
}

/// A job that tells whether `predicate(&item, ctx)` holds for every item,
/// stopping at the first that does not.
///
/// ```
/// use mapreduce::{jobs, par_map_reduce};
///
/// assert!(par_map_reduce(0..100, &(), jobs::all(|x: &i32, _: &()| *x < 100)).unwrap());
/// assert!(!par_map_reduce(0..100, &(), jobs::all(|x: &i32, _: &()| *x < 50)).unwrap());
/// ```
pub fn all<T, C: ?Sized, P: Fn(&T, &C) -> bool + Sync>(predicate: P) -> Quantifier<P, T, C> {
    Quantifier {
        predicate,
        decisive: false,
        _types: PhantomData,
    }
}

impl<T, C: ?Sized, P: Fn(&T, &C) -> bool + Sync> MapReduce<T, C> for Quantifier<P, T, C> {
    type Output = bool;
    type Acc = bool;

    fn empty_result(&self, _: &C) -> bool {
        !self.decisive
    }
    fn compute(&self, item: T, ctx: &C) -> bool {
        (self.predicate)(&item, ctx)
    }
    fn process_result(&self, new: bool, acc: bool) -> ControlFlow<bool, bool> {
        self.merge(acc, new)
    }
    fn merge(&self, left: bool, right: bool) -> ControlFlow<bool, bool> {
        if left == self.decisive || right == self.decisive {
            Break(self.decisive)
        } else {
            Continue(!self.decisive)
        }
    }
}

/// Any job with a progress-bar description of your choosing; made by
/// [`described`].
///
/// ```
/// use mapreduce::{jobs, MapReduce};
///
/// let job = jobs::described("Squaring", jobs::collect(|x: u8, _: &()| x * x));
/// assert_eq!(MapReduce::<u8>::description(&job), "Squaring");
/// ```
pub struct Described<J> {
    description: String,
    job: J,
}

/// Give `job` the text its progress bar shows.
///
/// ```
/// use mapreduce::{jobs, MapReduce};
///
/// let job = jobs::described("Evaluating cuts", jobs::count(|_: &u8, _: &()| true));
/// assert_eq!(MapReduce::<u8>::description(&job), "Evaluating cuts");
/// ```
pub fn described<J>(description: impl Into<String>, job: J) -> Described<J> {
    Described {
        description: description.into(),
        job,
    }
}

impl<T, C: ?Sized, J: MapReduce<T, C>> MapReduce<T, C> for Described<J> {
    type Output = J::Output;
    type Acc = J::Acc;

    fn description(&self) -> &str {
        &self.description
    }
    fn empty_result(&self, ctx: &C) -> J::Acc {
        self.job.empty_result(ctx)
    }
    fn compute(&self, item: T, ctx: &C) -> J::Output {
        self.job.compute(item, ctx)
    }
    fn process_result(&self, new: J::Output, acc: J::Acc) -> ControlFlow<J::Acc, J::Acc> {
        self.job.process_result(new, acc)
    }
    fn merge(&self, left: J::Acc, right: J::Acc) -> ControlFlow<J::Acc, J::Acc> {
        self.job.merge(left, right)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::check_merge_law;

    #[test]
    fn built_in_jobs_obey_the_merge_law() {
        let items: Vec<u32> = (0..200).map(|i| (i * 7919) % 211).collect();
        for seed in 0..20 {
            check_merge_law(&collect(|x: u32, _: &()| x), &(), &items, seed).unwrap();
            check_merge_law(&sum(|x: u32, _: &()| u64::from(x)), &(), &items, seed).unwrap();
            check_merge_law(&count(|x: &u32, _: &()| x % 3 == 0), &(), &items, seed).unwrap();
            check_merge_law(&min_by_key(|x: u32, _: &()| (x % 17, x)), &(), &items, seed).unwrap();
            check_merge_law(&min_by_key(|x: u32, _: &()| (x % 17, x)).stop_at(0), &(), &items, seed).unwrap();
            check_merge_law(&max_by_key(|x: u32, _: &()| (x % 17, x)).stop_at(16), &(), &items, seed).unwrap();
            check_merge_law(&find_first(|x: &u32, _: &()| *x > 150), &(), &items, seed).unwrap();
            let above = |x: u32, _: &()| (x > 150).then_some((x, x * 2));
            check_merge_law(&find_map_first(above), &(), &items, seed).unwrap();
            check_merge_law(
                &find_map_first(|x: u32, _: &()| (x > 1000).then_some(x)),
                &(),
                &items,
                seed,
            )
            .unwrap();
            let floats: Vec<f64> = items.iter().map(|&x| f64::from(x) * 1e10 - 1e12).collect();
            check_merge_law(&exact_sum(|x: f64, _: &()| x), &(), &floats, seed).unwrap();
            check_merge_law(&any(|x: &u32, _: &()| *x == 7), &(), &items, seed).unwrap();
            check_merge_law(&all(|x: &u32, _: &()| *x != 7), &(), &items, seed).unwrap();
        }
    }

    /// The value of a merge, whether it broke or not.
    fn value<A>(flow: ControlFlow<A, A>) -> A {
        let (Continue(a) | Break(a)) = flow;
        a
    }

    /// Every grouping of three pairs drawn from `keys` gives the same pair
    /// (named by its index), for both ends, with and without each bound.
    fn assert_associative<K: PartialOrd + Clone + Send + Sync + std::fmt::Debug>(keys: &[K]) {
        let evaluate = |i: usize, keys: &[K]| (keys[i].clone(), i);
        let bounds = std::iter::once(None).chain(keys.iter().cloned().map(Some));
        for bound in bounds {
            for job in [min_by_key(evaluate), max_by_key(evaluate)] {
                let job = match &bound {
                    Some(b) => job.stop_at(b.clone()),
                    None => job,
                };
                let pair = |i: usize| job.compute(i, keys);
                let merge = |l: Option<(K, usize)>, r: Option<(K, usize)>| value(job.merge(l, r));
                for a in 0..keys.len() {
                    for b in 0..keys.len() {
                        for c in 0..keys.len() {
                            let left_first = merge(merge(Some(pair(a)), Some(pair(b))), Some(pair(c)));
                            let right_first = merge(Some(pair(a)), merge(Some(pair(b)), Some(pair(c))));
                            assert_eq!(
                                left_first.map(|p| p.1),
                                right_first.map(|p| p.1),
                                "{:?} then {:?} then {:?}, {:?}, stop_at {bound:?}",
                                keys[a],
                                keys[b],
                                keys[c],
                                job.keep
                            );
                        }
                    }
                }
            }
        }
    }

    const FLOATS: [f64; 9] = [
        f64::NAN,
        f64::NEG_INFINITY,
        -1.0,
        -0.0,
        0.0,
        1.0,
        f64::INFINITY,
        f64::MIN_POSITIVE,
        f64::NAN,
    ];

    #[test]
    fn nan_keys_lose_to_every_other_key_and_tie_among_themselves() {
        let evaluate = |i: usize, keys: &[f64]| (keys[i], i);
        let keys = [FLOATS, FLOATS.map(|k| -k)].concat(); // -NaN too
        for (keep, job) in [(Keep::Min, min_by_key(evaluate)), (Keep::Max, max_by_key(evaluate))] {
            for (l, &left) in keys.iter().enumerate() {
                for (r, &right) in keys.iter().enumerate() {
                    let right_wins = match (left.is_nan(), right.is_nan(), keep) {
                        (_, true, _) => false,
                        (true, false, _) => true,
                        (false, false, Keep::Min) => right < left,
                        (false, false, Keep::Max) => right > left,
                    };
                    let expected = if right_wins { r } else { l };
                    let found = value(job.merge(Some((left, l)), Some((right, r))));
                    assert_eq!(found.map(|p| p.1), Some(expected), "{left:?} then {right:?}, {keep:?}");
                    let folded = value(job.process_result((right, r), Some((left, l))));
                    assert_eq!(folded.map(|p| p.1), Some(expected), "{left:?} then {right:?}, {keep:?}");
                }
            }
        }
    }

    #[test]
    fn merge_is_associative_with_keys_that_do_not_compare() {
        assert_associative(&FLOATS);
        // Tuples holding a NaN compare with some tuples, yet still lose.
        let nan = f64::NAN;
        assert_associative(&[
            (1.0, nan),
            (2.0, 0.0),
            (1.0, 0.0),
            (nan, 0.0),
            (0.0, 1.0),
            (1.0, nan),
            (2.0, 0.0),
        ]);
        assert_associative(&[Some(nan), None, Some(1.0), Some(-1.0), Some(nan), None]);
    }

    #[test]
    fn a_nan_key_never_meets_the_bound_and_a_nan_bound_is_never_met() {
        let evaluate = |x: f64, _: &()| (x, x.to_bits());
        let items = [f64::NAN, 3.0, f64::NAN, 1.0, -5.0];
        let found = crate::seq_map_reduce(items, &(), min_by_key(evaluate).stop_at(f64::INFINITY)).unwrap();
        assert_eq!(found, Some((3.0, 3.0f64.to_bits())));
        let found = crate::seq_map_reduce(items, &(), max_by_key(evaluate).stop_at(f64::NEG_INFINITY)).unwrap();
        assert_eq!(found, Some((3.0, 3.0f64.to_bits())));
        for job in [
            min_by_key(evaluate).stop_at(f64::NAN),
            max_by_key(evaluate).stop_at(f64::NAN),
        ] {
            let flow = job.merge(None, Some((f64::NAN, 0)));
            assert!(matches!(flow, Continue(_)), "{flow:?}");
            let flow = job.merge(Some((1.0, 0)), Some((-1.0, 0)));
            assert!(matches!(flow, Continue(_)), "{flow:?}");
        }
        let (key, bits) = crate::seq_map_reduce(items, &(), min_by_key(evaluate).stop_at(f64::NAN))
            .unwrap()
            .unwrap();
        assert_eq!((key, bits), (-5.0, (-5.0f64).to_bits()));
    }

    #[test]
    fn the_reported_nan_case_gives_the_sequential_answer_in_parallel() {
        let keys: Vec<f64> = (0..10_000)
            .map(|i| match i {
                0 => 1.0,
                1 => 3.0,
                9_999 => 0.5,
                _ if i % 625 == 0 || i == 2 => f64::NAN,
                _ => 4.0 + f64::from(i % 13),
            })
            .collect();
        let job = min_by_key(|i: usize, keys: &[f64]| (keys[i], i));
        let items: Vec<usize> = (0..keys.len()).collect();
        let sequential = crate::seq_map_reduce(0..keys.len(), &keys[..], &job).unwrap();
        assert_eq!(sequential, Some((0.5, 9_999)));
        for workers in [1, 2] {
            let parallel = crate::Config::current()
                .with_workers(workers)
                .with_progress_bars(false)
                .scope(|| crate::par_map_reduce(0..keys.len(), &keys[..], &job))
                .unwrap();
            assert_eq!(parallel, sequential, "{workers} workers");
        }
        check_merge_law(&job, &keys[..], &items, 0).unwrap();
    }

    #[test]
    fn ties_keep_the_leftmost() {
        let job = min_by_key(|x: u32, _: &()| (x % 5, x));
        let items = [3, 10, 5, 20];
        assert_eq!(crate::seq_map_reduce(items, &(), &job).unwrap(), Some((0, 10)));
        let job = max_by_key(|x: u32, _: &()| (x % 5, x));
        assert_eq!(crate::seq_map_reduce([4, 9, 14], &(), &job).unwrap(), Some((4, 4)));
    }
}
