//! Indexed parallel iterators over `u64` and `i64` ranges, which rayon does
//! not index: bitmask searches count their candidates in `u64`.

use std::ops::{Range, RangeInclusive};

use rayon::iter::plumbing::{bridge, Consumer, Producer, ProducerCallback, UnindexedConsumer};
use rayon::iter::{IndexedParallelIterator, ParallelIterator};

/// An indexed parallel iterator over a `u64` or `i64` range, in order; made
/// by [`indexed_range`].
///
/// ```
/// use mapreduce::{indexed_range, jobs, par_map_reduce_in_order};
///
/// let count = par_map_reduce_in_order(indexed_range(0..1000u64), &(), jobs::count(|x: &u64, _: &()| x % 3 == 0));
/// assert_eq!(count.unwrap(), 334);
/// ```
#[derive(Clone, Debug)]
pub struct IndexedRange<T> {
    start: T,
    len: usize,
}

/// The integer types [`indexed_range`] takes: `u64` and `i64`.
pub trait RangeInteger: Copy + Send + Sync + private::Sealed {
    /// The integer `offset` places after `start`.
    #[doc(hidden)]
    fn offset(start: Self, offset: usize) -> Self;
    /// How many integers lie in `start..end` (`end` excluded), if that many
    /// fit a `usize`.
    #[doc(hidden)]
    fn count(start: Self, end: Self) -> Option<usize>;
}

impl RangeInteger for u64 {
    fn offset(start: u64, offset: usize) -> u64 {
        start + offset as u64
    }
    fn count(start: u64, end: u64) -> Option<usize> {
        usize::try_from(end.saturating_sub(start)).ok()
    }
}

impl RangeInteger for i64 {
    fn offset(start: i64, offset: usize) -> i64 {
        // In range by construction: `start + offset` is at most the range's
        // last value, so the two's-complement sum is exact.
        start.wrapping_add(offset as i64)
    }
    fn count(start: i64, end: i64) -> Option<usize> {
        let span = if end > start { end.abs_diff(start) } else { 0 };
        usize::try_from(span).ok()
    }
}

mod private {
    pub trait Sealed {}
    impl Sealed for u64 {}
    impl Sealed for i64 {}
}

/// The ranges [`indexed_range`] takes: `Range` and `RangeInclusive` of `u64`
/// or `i64`.
pub trait IntoIndexedRange {
    /// The integer type of the range.
    type Item: RangeInteger;
    /// The first integer and how many there are; `None` when they do not fit
    /// a `usize`.
    #[doc(hidden)]
    fn bounds(self) -> Option<(Self::Item, usize)>;
}

impl<T: RangeInteger> IntoIndexedRange for Range<T> {
    type Item = T;
    fn bounds(self) -> Option<(T, usize)> {
        Some((self.start, T::count(self.start, self.end)?))
    }
}

impl<T: RangeInteger + PartialOrd> IntoIndexedRange for RangeInclusive<T> {
    type Item = T;
    fn bounds(self) -> Option<(T, usize)> {
        let (start, end) = self.into_inner();
        if end < start {
            return Some((start, 0));
        }
        T::count(start, end)?.checked_add(1).map(|len| (start, len))
    }
}

/// An indexed parallel iterator over a `Range` or `RangeInclusive` of `u64`
/// or `i64`, which rayon indexes only for 32-bit integers and `usize`.
///
/// Bitmask searches count their candidates (cuts, subsets, partitions of N
/// elements, 2^N of them) in `u64`; with this they go through
/// [`par_map_reduce_in_order`](crate::par_map_reduce_in_order) and the other
/// entry points that need an indexed input, without casts. The length must
/// fit a `usize` (on 64-bit targets, every range but the full
/// `0..=u64::MAX` does).
///
/// # Panics
///
/// When the range holds more than `usize::MAX` integers.
///
/// ```
/// use mapreduce::prelude::*; // `indexed_range` and rayon's traits (`len`)
///
/// // The first of 2^40 bitmasks with bits 3, 11 and 18 set: found at once.
/// let wanted = (1 << 3) | (1 << 11) | (1 << 18);
/// let first = par_map_reduce_in_order(
///     indexed_range(0..(1u64 << 40)),
///     &(),
///     jobs::find_first(|mask: &u64, _: &()| mask & wanted == wanted),
/// );
/// assert_eq!(first.unwrap(), Some(wanted));
/// assert_eq!(indexed_range(-3..=3i64).len(), 7);
/// ```
pub fn indexed_range<R: IntoIndexedRange>(range: R) -> IndexedRange<R::Item> {
    let (start, len) = range
        .bounds()
        .unwrap_or_else(|| panic!("mapreduce::indexed_range: the range holds more than usize::MAX integers"));
    IndexedRange { start, len }
}

impl<T: RangeInteger> ParallelIterator for IndexedRange<T> {
    type Item = T;

    fn drive_unindexed<C: UnindexedConsumer<T>>(self, consumer: C) -> C::Result {
        bridge(self, consumer)
    }

    fn opt_len(&self) -> Option<usize> {
        Some(self.len)
    }
}

impl<T: RangeInteger> IndexedParallelIterator for IndexedRange<T> {
    fn drive<C: Consumer<T>>(self, consumer: C) -> C::Result {
        bridge(self, consumer)
    }

    fn len(&self) -> usize {
        self.len
    }

    fn with_producer<CB: ProducerCallback<T>>(self, callback: CB) -> CB::Output {
        callback.callback(RangeIter {
            start: self.start,
            front: 0,
            back: self.len,
        })
    }
}

/// The integers `start + front .. start + back`: both the producer rayon
/// splits and the sequential iterator each piece runs.
#[derive(Clone, Debug)]
struct RangeIter<T> {
    start: T,
    front: usize,
    back: usize,
}

impl<T: RangeInteger> Iterator for RangeIter<T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        (self.front < self.back).then(|| {
            self.front += 1;
            T::offset(self.start, self.front - 1)
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = self.back - self.front;
        (len, Some(len))
    }
}

impl<T: RangeInteger> DoubleEndedIterator for RangeIter<T> {
    #[inline]
    fn next_back(&mut self) -> Option<T> {
        (self.front < self.back).then(|| {
            self.back -= 1;
            T::offset(self.start, self.back)
        })
    }
}

impl<T: RangeInteger> ExactSizeIterator for RangeIter<T> {}

impl<T: RangeInteger> Producer for RangeIter<T> {
    type Item = T;
    type IntoIter = RangeIter<T>;

    fn into_iter(self) -> RangeIter<T> {
        self
    }

    fn split_at(self, index: usize) -> (Self, Self) {
        let middle = self.front + index;
        (
            RangeIter {
                back: middle,
                ..self.clone()
            },
            RangeIter { front: middle, ..self },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collected<R: IntoIndexedRange>(range: R) -> Vec<R::Item> {
        indexed_range(range).collect()
    }

    #[test]
    fn ranges_hold_what_std_ranges_hold() {
        assert_eq!(collected(5..12u64), (5..12u64).collect::<Vec<_>>());
        assert_eq!(collected(5..=12u64), (5..=12u64).collect::<Vec<_>>());
        assert_eq!(collected(-4..3i64), (-4..3i64).collect::<Vec<_>>());
        assert_eq!(collected(-4..=3i64), (-4..=3i64).collect::<Vec<_>>());
        // Reversed bounds are empty, as std's are.
        let (high, low) = (7, 3);
        assert!(collected(high..low as u64).is_empty());
        assert!(collected(high as i64..=low as i64).is_empty());
        assert_eq!(
            collected(u64::MAX - 2..=u64::MAX),
            [u64::MAX - 2, u64::MAX - 1, u64::MAX]
        );
        assert_eq!(collected(i64::MAX - 1..=i64::MAX), [i64::MAX - 1, i64::MAX]);
        assert_eq!(collected(i64::MIN..=i64::MIN + 1), [i64::MIN, i64::MIN + 1]);
    }

    #[test]
    fn huge_ranges_have_their_length() {
        assert_eq!(indexed_range(0..u64::MAX).len(), usize::MAX);
        assert_eq!(indexed_range(i64::MIN..i64::MAX).len(), usize::MAX);
        assert_eq!(indexed_range(i64::MIN..=-1).len(), 1 << 63);
        let ends = indexed_range(i64::MIN..i64::MAX).with_producer(Ends);
        assert_eq!(ends, (Some(i64::MIN), Some(i64::MAX - 1)));
    }

    /// The first and last integers of a producer.
    struct Ends;
    impl ProducerCallback<i64> for Ends {
        type Output = (Option<i64>, Option<i64>);
        fn callback<P: Producer<Item = i64>>(self, producer: P) -> Self::Output {
            let mut iter = producer.into_iter();
            (iter.next(), iter.next_back())
        }
    }

    #[test]
    fn the_full_u64_range_does_not_fit_and_says_so() {
        let caught = std::panic::catch_unwind(|| indexed_range(0..=u64::MAX)).unwrap_err();
        let message = crate::error::panic_message(caught.as_ref());
        assert!(message.contains("more than usize::MAX"), "{message}");
    }

    #[test]
    fn splits_cover_the_range_in_order() {
        let (left, right) = RangeIter {
            start: 100u64,
            front: 0,
            back: 10,
        }
        .split_at(4);
        assert_eq!(left.collect::<Vec<_>>(), [100, 101, 102, 103]);
        assert_eq!(right.rev().collect::<Vec<_>>(), [109, 108, 107, 106, 105, 104]);
    }
}
