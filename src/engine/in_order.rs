//! Indexed inputs scanned in order, reproducibly: the input is cut into
//! leaves (see [`super::tree`]), and blocks of whole leaves are
//! evaluated from the start, each one by all workers, so that a search whose
//! answer lies at item `k` returns after about `k / workers` items' time
//! wherever `k` falls. Blocks grow as the scan goes; each is a perfect
//! subtree of the fixed tree (a power-of-two run of leaves starting at a
//! multiple of its size), so the answer is the same bits whatever the blocks,
//! and the blocks depend on the worker count only for speed. All blocks
//! belong to one run, whose positions are the items' indices, so an event
//! cancels what lies right of it at once.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use rayon::iter::plumbing::{Folder, Producer, ProducerCallback};
use rayon::iter::IndexedParallelIterator;

use super::consumer::MapReduceConsumer;
use super::prefix::{Done, Prefix};
use super::run::Run;
use super::tree::{self, Event, Node, Stack};
use crate::cancel::FIRST_POSITION;
use crate::error::{catch_panic, Error};
use crate::job::MapReduce;
use rayon::iter::plumbing::Consumer;

/// The first block, per worker, in leaves (rounded up to a power of two);
/// each block after it doubles, up to a `1 / BLOCKS_AT_MOST`th of the
/// leaves: a `Break` early in a block leaves the rest of it to the other
/// workers, so blocks must stay small next to the input. (A durable run's
/// first block holds one leaf per worker, and its later ones follow its
/// pace: see `fitting_block`.)
pub(crate) const FIRST_BLOCK_PER_WORKER: usize = 4;
pub(crate) const BLOCKS_AT_MOST: usize = 16;

/// The leaves of an input: `count` of them, all of `size` items but the
/// last, which holds what is left.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Leaves {
    pub(crate) len: usize,
    pub(crate) size: usize,
}

impl Leaves {
    pub(crate) fn new(len: usize, size: usize) -> Leaves {
        Leaves { len, size: size.max(1) }
    }

    /// How many leaves there are.
    pub(crate) fn count(&self) -> usize {
        self.len.div_ceil(self.size)
    }

    /// The index of leaf `leaf`'s first item.
    pub(crate) fn start(&self, leaf: usize) -> usize {
        (leaf * self.size).min(self.len)
    }

    /// How many items the leaves `first .. first + count` hold.
    pub(crate) fn items(&self, first: usize, count: usize) -> usize {
        self.start(first + count) - self.start(first)
    }
}

/// The blocks of a scan over `leaves` leaves, in order, as `(first leaf,
/// log2 of the leaf count)`: `first` leaves at once (a power of two), then
/// blocks that double, up to `largest`, and near the end the largest power
/// of two that fits. Each block is the largest power of two that divides
/// its start, within those bounds, so it is a perfect subtree of the tree.
#[cfg(test)]
pub(crate) fn blocks(leaves: usize, first: usize, largest: usize) -> impl Iterator<Item = (usize, u32)> {
    let mut blocks = Blocks::new(leaves, 0, first, largest);
    std::iter::from_fn(move || blocks.next(usize::MAX))
}

/// The blocks of a scan over the leaves from `from` to `leaves` (see
/// [`blocks`]), each one asked for with a cap on its size.
pub(crate) struct Blocks {
    leaves: usize,
    start: usize,
    from: usize,
    first: usize,
    largest: usize,
}

impl Blocks {
    pub(crate) fn new(leaves: usize, from: usize, first: usize, largest: usize) -> Blocks {
        Blocks {
            leaves,
            start: from,
            from,
            first,
            largest: largest.max(first),
        }
    }

    /// The next block, of at most `cap` leaves (a power of two).
    pub(crate) fn next(&mut self, cap: usize) -> Option<(usize, u32)> {
        let start = self.start;
        if start >= self.leaves {
            return None;
        }
        // The largest power of two dividing `start` (any, at 0).
        let aligned = 1usize.checked_shl(start.trailing_zeros()).unwrap_or(usize::MAX);
        let mut block = if start == self.from {
            self.first.min(aligned)
        } else {
            aligned.min(self.largest)
        }
        .min(cap.max(1));
        while block > self.leaves - start {
            block /= 2;
        }
        self.start += block;
        Some((start, block.trailing_zeros()))
    }
}

/// Drive `items` through `run`, block after block, until the input ends or
/// an event (a `Break`, a panic, an abort) decides the answer. A durable
/// run's `prefix` says where to start and hears of each prefix completed.
pub(crate) fn drive<P, C, J>(
    items: P,
    run: &Run<'_, P::Item, J, C>,
    prefix: Option<&mut dyn Prefix<J::Acc>>,
) -> Result<ControlFlow<J::Acc, J::Acc>, Error>
where
    P: IndexedParallelIterator,
    C: Sync + ?Sized,
    J: MapReduce<P::Item, C>,
{
    let len = items.len();
    let leaves = Leaves::new(len, tree::leaf_size(len, run.config.leaf_size()));
    items.with_producer(Scan { run, leaves, prefix })
}

struct Scan<'r, 'a, 'p, T, J: MapReduce<T, C>, C: ?Sized> {
    run: &'r Run<'a, T, J, C>,
    leaves: Leaves,
    prefix: Option<&'p mut dyn Prefix<J::Acc>>,
}

impl<T, J, C> ProducerCallback<T> for Scan<'_, '_, '_, T, J, C>
where
    J: MapReduce<T, C>,
    C: Sync + ?Sized,
{
    type Output = Result<ControlFlow<J::Acc, J::Acc>, Error>;

    fn callback<P: Producer<Item = T>>(self, producer: P) -> Self::Output {
        let (run, leaves, mut prefix) = (self.run, self.leaves, self.prefix);
        let count = leaves.count();
        let workers = rayon::current_num_threads();
        let largest = prev_power_of_two(count / BLOCKS_AT_MOST);
        let (mut done, mut stack) = match prefix.as_deref_mut() {
            Some(prefix) => prefix.start(),
            None => (Done::default(), Stack::new()),
        };
        // A durable run's blocks end often enough to save: each takes at
        // most its `block_time`, at the pace of the blocks before it (and
        // holds at least a leaf per worker). Its first block, before any
        // pace is known, holds a leaf per worker: a kill during it loses no
        // more than that, however long leaves take.
        let block_time = prefix.as_deref().map(|prefix| prefix.block_time());
        let first = if block_time.is_some() {
            workers.next_power_of_two()
        } else {
            (FIRST_BLOCK_PER_WORKER * workers).next_power_of_two()
        };
        let mut cap = usize::MAX;
        let from = done.leaves as usize;
        let mut rest = Some(producer.split_at(leaves.start(from)).1);
        let mut blocks = Blocks::new(count, from, first, largest);
        while let Some((start, height)) = blocks.next(cap) {
            let size = 1 << height;
            let block_items = leaves.items(start, size);
            let (block, tail) = rest.take().expect("the input left").split_at(block_items);
            rest = Some(tail);
            // Only a durable run reads the clock: it sizes its blocks by time.
            let began = block_time.map(|_| Instant::now());
            let node = evaluate(run, leaves, block, start, size);
            log::trace!("leaves {start}..{} joined", start + size);
            if run.state.is_stopped() {
                // The block was cut short: what it holds is not a prefix.
                if let Some(prefix) = prefix.as_deref_mut() {
                    prefix.keep(done, &stack);
                }
                return run.settle(Err(Error::Cancelled));
            }
            if let (
                Some(prefix),
                Node::Ended {
                    event: Event::Panic(_), ..
                },
            ) = (prefix.as_deref_mut(), &node)
            {
                // The run fails here: a rerun retries from this block.
                prefix.keep(done, &stack);
            }
            // Only a block folded to its end extends the prefix (a skipped
            // one, after a cancellation, holds nothing).
            let whole = matches!(node, Node::Done(_));
            if !stack.push(run, height, node, FIRST_POSITION + leaves.start(start)) {
                break;
            }
            if !whole {
                prefix = None;
                continue;
            }
            done = Done {
                leaves: (start + size) as u64,
                items: leaves.start(start + size) as u64,
            };
            if let (Some(prefix), Some(block_time), Some(began)) = (prefix.as_deref_mut(), block_time, began) {
                prefix.completed(done, &stack);
                cap = fitting_block(size, began.elapsed(), block_time, workers);
            }
        }
        stack.finish(run, || catch_panic(|| run.job.empty_result(run.ctx)))
    }
}

/// The most leaves (a power of two) a block may hold to take at most
/// `block_time`, when `size` leaves took `took`; at least a leaf per worker.
fn fitting_block(size: usize, took: Duration, block_time: Duration, workers: usize) -> usize {
    let fits = (size as u128 * block_time.as_nanos() / took.as_nanos().max(1)).min(usize::MAX as u128) as usize;
    prev_power_of_two(fits).max(workers.next_power_of_two())
}

/// The largest power of two at most `n` (1 for 0).
fn prev_power_of_two(n: usize) -> usize {
    if n <= 1 {
        1
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}

/// The perfect subtree over the `count` (a power of two) leaves from
/// `first`, whose items `producer` holds: its halves in parallel, joined.
pub(crate) fn evaluate<P, T, J, C>(
    run: &Run<'_, T, J, C>,
    leaves: Leaves,
    producer: P,
    first: usize,
    count: usize,
) -> Node<J::Acc>
where
    P: Producer<Item = T>,
    J: MapReduce<T, C>,
    C: Sync + ?Sized,
{
    let position = FIRST_POSITION + leaves.start(first);
    if run.state.is_past(position) || run.state.abort_if_parent_cancelled() {
        return Node::Skipped;
    }
    if count == 1 {
        let folder = MapReduceConsumer::new(run, Some(leaves.start(first))).into_folder();
        return Node::of_leaf(folder.consume_iter(producer.into_iter()).complete().part);
    }
    let half = count / 2;
    let (left, right) = producer.split_at(leaves.items(first, half));
    let (left, right) = rayon::join(
        || evaluate(run, leaves, left, first, half),
        || evaluate(run, leaves, right, first + half, half),
    );
    run.combine(left, right, FIRST_POSITION + leaves.start(first + half))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(leaves: usize, first: usize, largest: usize) -> Vec<(usize, u32)> {
        blocks(leaves, first, largest).collect()
    }

    #[test]
    fn blocks_cover_the_leaves_aligned_and_growing() {
        assert_eq!(all(0, 8, 64), []);
        assert_eq!(all(5, 8, 64), [(0, 2), (4, 0)]);
        assert_eq!(all(40, 8, 16), [(0, 3), (8, 3), (16, 4), (32, 3)]);
        assert_eq!(
            all(100, 4, 16),
            [
                (0, 2),
                (4, 2),
                (8, 3),
                (16, 4),
                (32, 4),
                (48, 4),
                (64, 4),
                (80, 4),
                (96, 2)
            ]
        );
        for leaves in 0..300 {
            for (first, largest) in [(1, 1), (2, 8), (8, 4), (16, 64)] {
                let mut next = 0;
                for (start, height) in blocks(leaves, first, largest) {
                    assert_eq!(start, next);
                    assert_eq!(start % (1 << height), 0, "block {start} of 2^{height} is not aligned");
                    next = start + (1 << height);
                }
                assert_eq!(next, leaves);
            }
        }
    }

    #[test]
    fn leaves_hold_every_item_once() {
        let leaves = Leaves::new(10, 4);
        assert_eq!(leaves.count(), 3);
        assert_eq!(
            (leaves.start(0), leaves.start(1), leaves.start(2), leaves.start(3)),
            (0, 4, 8, 10)
        );
        assert_eq!(leaves.items(1, 2), 6);
        assert_eq!(Leaves::new(0, 4).count(), 0);
        assert_eq!(prev_power_of_two(0), 1);
        assert_eq!(prev_power_of_two(17), 16);
        assert_eq!(prev_power_of_two(16), 16);
    }
}
