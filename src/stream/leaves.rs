//! The leaves of a stream: their sizes are a function of position alone,
//! and a leaf may span batches (a batch is what fits in memory; a leaf is
//! what is folded in one go), so each batch is cut into segments of leaves.
//!
//! A stream whose `size_hint` is exact has leaves of the size an indexed
//! input of that length would have; a stream of unknown length has leaves
//! that grow with position: 1 item each for the first 16 leaves, then 2, 4,
//! …, doubling every 16 leaves, up to 16,384 items (from leaf 224 on, item
//! 1,835,008). `Config::with_leaf_size` fixes them.

use std::time::{Duration, Instant};

use rayon::iter::plumbing::{Consumer, Folder, Producer, ProducerCallback};

use crate::engine::tree::{self, LEAF_MAX};
use crate::engine::{MapReduceConsumer, Part, Run};
use crate::job::MapReduce;

/// Leaves of unknown-length streams double in size every this many leaves.
const GROWTH_EVERY: usize = 16;

/// The sizes of a stream's leaves.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamLeaves {
    /// The size of every leaf; `None`: growing with position.
    fixed: Option<usize>,
}

impl StreamLeaves {
    /// The leaves of a stream with `configured` items per leaf (0:
    /// automatic) and `exact_len` items, when its `size_hint` says so.
    pub(crate) fn new(configured: usize, exact_len: Option<usize>) -> StreamLeaves {
        let fixed = match (configured, exact_len) {
            (0, Some(len)) => Some(tree::auto_leaf_size(len)),
            (0, None) => None,
            (size, _) => Some(size),
        };
        StreamLeaves { fixed }
    }

    /// The size of every leaf, unless they grow with position.
    #[cfg_attr(not(feature = "durable"), allow(dead_code))]
    pub(crate) fn fixed(&self) -> Option<usize> {
        self.fixed
    }

    /// How many items the first `leaves` leaves hold, when the stream holds
    /// at least that many.
    #[cfg_attr(not(feature = "durable"), allow(dead_code))]
    pub(crate) fn items_in(&self, leaves: u64) -> Option<u64> {
        match self.fixed {
            Some(size) => leaves.checked_mul(size as u64),
            None => (0..leaves).try_fold(0u64, |sum, leaf| {
                sum.checked_add(growing(usize::try_from(leaf).ok()?) as u64)
            }),
        }
    }

    /// How many items leaf `leaf` holds.
    pub(crate) fn size(&self, leaf: usize) -> usize {
        self.fixed.unwrap_or_else(|| growing(leaf))
    }
}

/// The size of leaf `leaf` of a stream of unknown length.
fn growing(leaf: usize) -> usize {
    1 << (leaf / GROWTH_EVERY).min(LEAF_MAX.trailing_zeros() as usize)
}

/// The part of one leaf that a batch holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// The index of the leaf's first item: its task's position.
    pub(crate) leaf_start: usize,
    /// The index of the segment's first item.
    pub(crate) start: usize,
    pub(crate) len: usize,
    /// Whether the leaf ends in this batch.
    pub(crate) completes: bool,
}

/// How a batch is cut: first the rest of the leaf that an earlier batch
/// opened, if any (its first `continued.len` items), then the leaves that
/// start in it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Cut {
    pub(crate) continued: Option<Segment>,
    pub(crate) segments: Vec<Segment>,
}

/// Where the batches read so far stand in the leaves.
pub(crate) struct Cursor {
    leaves: StreamLeaves,
    /// The first leaf no batch has started, and its first item.
    next_leaf: usize,
    next_start: usize,
    /// The leaf an earlier batch opened and none has completed: its first
    /// item and its end.
    open: Option<(usize, usize)>,
}

impl Cursor {
    #[cfg(test)]
    pub(crate) fn new(leaves: StreamLeaves) -> Cursor {
        Cursor {
            leaves,
            next_leaf: 0,
            next_start: 0,
            open: None,
        }
    }

    /// The cursor of a stream resumed after its first `leaves` leaves, which
    /// hold its first `items` items.
    pub(crate) fn resumed(leaves: StreamLeaves, next_leaf: usize, items: usize) -> Cursor {
        Cursor {
            leaves,
            next_leaf,
            next_start: items,
            open: None,
        }
    }

    /// The first leaf no batch has started and its first item, if no leaf
    /// is open: the items from there on can be folded leaf by leaf.
    pub(crate) fn at_leaf_start(&self) -> Option<(usize, usize)> {
        match self.open {
            None => Some((self.next_leaf, self.next_start)),
            Some(_) => None,
        }
    }

    /// The sizes of the leaves.
    pub(crate) fn leaves(&self) -> StreamLeaves {
        self.leaves
    }

    /// How long to make the batch of up to `len` items from `first` on (the
    /// next one) so that it ends where a leaf does: the longest such length
    /// of at least `len / 2`, or else `len`.
    pub(crate) fn len_to_leaf_end(&self, first: usize, len: usize) -> usize {
        let end = first + len;
        let (mut leaf, mut leaf_end) = match self.open {
            Some((_, leaf_end)) => (self.next_leaf, leaf_end),
            None => (self.next_leaf + 1, self.next_start + self.leaves.size(self.next_leaf)),
        };
        let mut best = None;
        while leaf_end <= end {
            best = Some(leaf_end);
            leaf_end += self.leaves.size(leaf);
            leaf += 1;
        }
        match best {
            Some(best) if best - first >= len / 2 => best - first,
            _ => len,
        }
    }

    /// How long to make the batch from `first` on (the next one) so that
    /// the leaves that start in it (those the pool folds; the rest of an
    /// open leaf is this thread's) hold at least `want` items and two
    /// leaves, and it ends where a leaf does.
    pub(crate) fn len_for_pool(&self, first: usize, want: usize) -> usize {
        let (mut leaf, mut end) = match self.open {
            Some((_, leaf_end)) => (self.next_leaf, leaf_end),
            None => (self.next_leaf, self.next_start),
        };
        let pool_start = end;
        let mut leaves = 0;
        while leaves < 2 || end - pool_start < want {
            // Saturating: a leaf size near `usize::MAX` (`with_leaf_size`)
            // would overflow here, a panic of ours in debug builds. A batch
            // that long is capped by the caller anyway (`max_len`), and none
            // ends past `usize::MAX`.
            end = end.saturating_add(self.leaves.size(leaf));
            if end == usize::MAX {
                break;
            }
            leaf += 1;
            leaves += 1;
        }
        end - first
    }

    /// Cut the batch of the `len` items from `first` on (batches come in
    /// order, each right after the one before).
    pub(crate) fn cut(&mut self, first: usize, len: usize) -> Cut {
        let end = first + len;
        let continued = self.open.map(|(leaf_start, leaf_end)| {
            let segment = Segment {
                leaf_start,
                start: first,
                len: leaf_end.min(end) - first,
                completes: leaf_end <= end,
            };
            if segment.completes {
                self.open = None;
            }
            segment
        });
        let mut segments = Vec::new();
        while self.next_start < end {
            let size = self.leaves.size(self.next_leaf);
            let leaf_end = self.next_start + size;
            let completes = leaf_end <= end;
            segments.push(Segment {
                leaf_start: self.next_start,
                start: self.next_start,
                len: leaf_end.min(end) - self.next_start,
                completes,
            });
            if !completes {
                self.open = Some((self.next_start, leaf_end));
            }
            self.next_leaf += 1;
            self.next_start = leaf_end;
        }
        Cut { continued, segments }
    }
}

/// Fold the segments of a batch, whose items `producer` holds, in parallel
/// on at most `threads` threads: each leaf from `empty_result`, left to
/// right. Their parts, in order, and the time the threads spent folding
/// them, together (what the items cost, however long a thread took to join
/// in).
pub(crate) struct FoldSegments<'s, 'r, 'a, T, J: MapReduce<T, C>, C: ?Sized> {
    pub(crate) run: &'r Run<'a, T, J, C>,
    pub(crate) segments: &'s [Segment],
    pub(crate) threads: usize,
}

impl<T, J, C> ProducerCallback<T> for FoldSegments<'_, '_, '_, T, J, C>
where
    J: MapReduce<T, C>,
    C: Sync + ?Sized,
{
    type Output = (Vec<Part<J::Acc>>, Duration);

    fn callback<P: Producer<Item = T>>(self, producer: P) -> (Vec<Part<J::Acc>>, Duration) {
        fold_segments(self.run, self.segments, producer, self.threads)
    }
}

fn fold_segments<P, T, J, C>(
    run: &Run<'_, T, J, C>,
    segments: &[Segment],
    producer: P,
    threads: usize,
) -> (Vec<Part<J::Acc>>, Duration)
where
    P: Producer<Item = T>,
    J: MapReduce<T, C>,
    C: Sync + ?Sized,
{
    if segments.len() < 2 || threads < 2 {
        let started = Instant::now();
        // One thread folds the segments, in order, each from its own part
        // of the batch (owned, so that the loop keeps it in registers).
        let mut rest = Some(producer);
        let parts = segments
            .iter()
            .map(|segment| {
                let producer = rest.take().unwrap_or_else(|| unreachable!("a producer per segment"));
                let (items, after) = producer.split_at(segment.len);
                rest = Some(after);
                let folder = MapReduceConsumer::new(run, Some(segment.start)).into_folder();
                folder.consume_iter(items.into_iter()).complete().part
            })
            .collect();
        return (parts, started.elapsed());
    }
    let middle = segments.len() / 2;
    let left_items = segments[..middle].iter().map(|segment| segment.len).sum();
    let (left, right) = producer.split_at(left_items);
    let left_threads = threads / 2;
    let ((mut left, left_took), (right, right_took)) = rayon::join(
        || fold_segments(run, &segments[..middle], left, left_threads),
        || fold_segments(run, &segments[middle..], right, threads - left_threads),
    );
    left.extend(right);
    (left, left_took + right_took)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growing_leaves_double_every_16_up_to_the_largest() {
        let leaves = StreamLeaves::new(0, None);
        assert_eq!((0..16).map(|leaf| leaves.size(leaf)).collect::<Vec<_>>(), vec![1; 16]);
        assert_eq!(leaves.size(16), 2);
        assert_eq!(leaves.size(32), 4);
        assert_eq!(leaves.size(224), LEAF_MAX);
        assert_eq!(leaves.size(1 << 40), LEAF_MAX);
        assert_eq!(StreamLeaves::new(0, Some(10_000_000)).size(5), 9765);
        assert_eq!(StreamLeaves::new(0, Some(1 << 40)).size(5), LEAF_MAX);
        assert_eq!(StreamLeaves::new(0, Some(400)).size(5), 1);
        assert_eq!(StreamLeaves::new(7, None).size(5000), 7);
    }

    #[test]
    fn batches_are_cut_at_leaf_boundaries_and_leaves_may_span_batches() {
        let mut cursor = Cursor::new(StreamLeaves::new(4, None));
        let segment = |leaf_start, start, len, completes| Segment {
            leaf_start,
            start,
            len,
            completes,
        };
        assert_eq!(
            cursor.cut(0, 10),
            Cut {
                continued: None,
                segments: vec![segment(0, 0, 4, true), segment(4, 4, 4, true), segment(8, 8, 2, false)],
            }
        );
        // Leaf 8..12 goes on in the next batch, which ends inside the leaf after it.
        assert_eq!(
            cursor.cut(10, 3),
            Cut {
                continued: Some(segment(8, 10, 2, true)),
                segments: vec![segment(12, 12, 1, false)],
            }
        );
        // A batch inside one leaf.
        let mut cursor = Cursor::new(StreamLeaves::new(100, None));
        cursor.cut(0, 10);
        assert_eq!(
            cursor.cut(10, 10),
            Cut {
                continued: Some(segment(0, 10, 10, false)),
                segments: vec![],
            }
        );
        assert_eq!(cursor.cut(20, 80).continued, Some(segment(0, 20, 80, true)));
    }

    #[test]
    fn batches_can_be_made_to_end_where_a_leaf_does() {
        let mut cursor = Cursor::new(StreamLeaves::new(4, None));
        assert_eq!(cursor.at_leaf_start(), Some((0, 0)));
        assert_eq!(cursor.len_to_leaf_end(0, 10), 8);
        // No leaf ends in the second half: as asked.
        assert_eq!(cursor.len_to_leaf_end(0, 3), 3);
        cursor.cut(0, 10);
        assert_eq!(cursor.at_leaf_start(), None);
        // The open leaf 8..12 ends at 12, the next one at 16.
        assert_eq!(cursor.len_to_leaf_end(10, 7), 6);
        assert_eq!(cursor.len_to_leaf_end(10, 3), 2);
        cursor.cut(10, 6);
        assert_eq!(cursor.at_leaf_start(), Some((4, 16)));
        // Growing leaves: 16 of one item, then of two.
        let cursor = Cursor::new(StreamLeaves::new(0, None));
        assert_eq!(cursor.len_to_leaf_end(0, 21), 20);
    }

    #[test]
    fn the_pools_batches_hold_two_whole_leaves_at_least() {
        let mut cursor = Cursor::new(StreamLeaves::new(4, None));
        // Nothing wanted: two leaves.
        assert_eq!(cursor.len_for_pool(0, 0), 8);
        // Enough leaves for what is wanted, rounded up to a leaf's end.
        assert_eq!(cursor.len_for_pool(0, 9), 12);
        assert_eq!(cursor.len_for_pool(0, 12), 12);
        cursor.cut(0, 10);
        // The rest of the open leaf (10..12) is this thread's: the pool's
        // leaves start at 12.
        assert_eq!(cursor.len_for_pool(10, 0), 10);
        assert_eq!(cursor.len_for_pool(10, 9), 14);
        let cut = cursor.cut(10, 14);
        assert_eq!(cut.continued.map(|segment| segment.len), Some(2));
        assert_eq!(cut.segments.len(), 3);
        assert!(cut.segments.iter().all(|segment| segment.completes));
        assert_eq!(cursor.at_leaf_start(), Some((6, 24)));
    }

    #[test]
    fn batches_for_the_pool_do_not_overflow_on_huge_leaves() {
        // `with_leaf_size(usize::MAX)`: two leaves would end past `usize::MAX`.
        for size in [usize::MAX, usize::MAX / 2 + 1] {
            let mut cursor = Cursor::new(StreamLeaves::new(size, None));
            assert!(cursor.len_for_pool(0, 1000) >= 1000);
            cursor.cut(0, 10);
            assert!(cursor.len_for_pool(10, 1000) >= 1000);
        }
    }
}
