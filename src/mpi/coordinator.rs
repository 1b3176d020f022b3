//! Rank 0's bookkeeping: which blocks of leaves go to whom, and the
//! in-order push of the blocks' results onto the fixed tree's stack.
//!
//! Blocks are handed out left to right, so every rank's blocks come in
//! increasing order. Each block is a perfect subtree of the fixed tree (see
//! [`crate::engine::tree`]): a power-of-two run of whole leaves that starts
//! at a multiple of its size, so the answer is the same bits for any rank
//! count. Like [`par_map_reduce_in_order`](crate::par_map_reduce_in_order),
//! a rank's blocks start small (a few leaves per worker, so a `Break` near
//! the start is found at once) and double, up to a sixteenth of each rank's
//! share, and shrink again near the end so the ranks finish together. The
//! run's horizon (rank 0's own shortcircuit state, which every event
//! anywhere lowers) says where handing out stops.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::cancel::FIRST_POSITION;
use crate::engine::prefix::{Done, Prefix};
use crate::engine::tree::{Event, Node, Stack};
use crate::engine::{Leaves, Run, BLOCKS_AT_MOST, FIRST_BLOCK_PER_WORKER};
use crate::error::{catch_panic, Error};
use crate::job::MapReduce;

pub(crate) struct Coordinator<A> {
    leaves: Leaves,
    ranks: usize,
    /// The first leaf not handed out yet.
    next: usize,
    /// The size of each rank's next block, in leaves, once it has had one.
    grants: Vec<usize>,
    /// Blocks handed out whose result has not come back.
    outstanding: usize,
    /// The tree's stack, with every block of leaves `0 .. pushed_to`.
    stack: Stack<A>,
    pushed_to: usize,
    /// Results right of `pushed_to`, by first leaf, with their leaf count.
    waiting: BTreeMap<usize, (usize, Node<A>)>,
    /// Whether the stack holds exactly the leaves `0 .. pushed_to`, all
    /// folded to their end (no event, no cancellation): a durable run's
    /// prefix, which it may save.
    whole: bool,
    /// A durable run's blocks take at most this long, at the pace of each
    /// rank's blocks before: each rank's cap, in leaves, and when each
    /// block in flight was handed out, to whom, by first leaf.
    block_time: Option<Duration>,
    caps: Vec<usize>,
    issued: BTreeMap<usize, (usize, Instant)>,
}

impl<A> Coordinator<A> {
    #[cfg(test)]
    pub(crate) fn new(leaves: Leaves, ranks: usize) -> Coordinator<A> {
        Coordinator::resumed(leaves, ranks, 0, Stack::new(), None)
    }

    /// The coordinator of a run that starts after its first `from` leaves,
    /// whose subtrees' roots are on `stack` (a durable run's saved prefix;
    /// 0 and an empty stack otherwise), its blocks taking at most
    /// `block_time` each when it is durable.
    pub(crate) fn resumed(
        leaves: Leaves,
        ranks: usize,
        from: usize,
        stack: Stack<A>,
        block_time: Option<Duration>,
    ) -> Coordinator<A> {
        Coordinator {
            leaves,
            ranks: ranks.max(1),
            next: from,
            grants: vec![0; ranks.max(1)],
            outstanding: 0,
            stack,
            pushed_to: from,
            waiting: BTreeMap::new(),
            whole: true,
            block_time,
            caps: vec![usize::MAX; ranks.max(1)],
            issued: BTreeMap::new(),
        }
    }

    /// The next block for `rank`, which runs `workers` workers, as its first
    /// item and item count, or `None` when nothing is left to hand out.
    pub(crate) fn assign<T, J, C>(
        &mut self,
        run: &Run<'_, T, J, C>,
        rank: usize,
        workers: usize,
    ) -> Option<(usize, usize)>
    where
        J: MapReduce<T, C, Acc = A>,
        C: ?Sized,
    {
        if !self.handing_out(run) {
            return None;
        }
        let count = self.leaves.count();
        let first = FIRST_BLOCK_PER_WORKER * workers.max(1);
        let left = count - self.next;
        let grant = self.grants[rank].max(first);
        let largest = (count / (BLOCKS_AT_MOST * self.ranks)).max(first);
        let near_the_end = (left / (2 * self.ranks)).max(first);
        let wanted = grant.min(largest).min(near_the_end).min(left).min(self.caps[rank]);
        // A perfect subtree: a power of two that divides where it starts.
        let mut size = 1 << (usize::BITS - 1 - wanted.leading_zeros());
        if self.next > 0 {
            size = size.min(1 << self.next.trailing_zeros());
        }
        self.grants[rank] = grant.saturating_mul(2);
        let start = self.next;
        self.next += size;
        self.outstanding += 1;
        if self.block_time.is_some() {
            self.issued.insert(start, (rank, Instant::now()));
        }
        Some((self.leaves.start(start), self.leaves.items(start, size)))
    }

    /// Whether blocks are still handed out: some are left, and no event
    /// lies left of the next one.
    fn handing_out<T, J, C>(&self, run: &Run<'_, T, J, C>) -> bool
    where
        J: MapReduce<T, C, Acc = A>,
        C: ?Sized,
    {
        self.next < self.leaves.count() && !run.state.is_past(FIRST_POSITION + self.leaves.start(self.next))
    }

    /// The node of the block of items `start .. start + len` came back. A
    /// durable run's `prefix` hears of each longer prefix pushed.
    pub(crate) fn report<T, J, C>(
        &mut self,
        run: &Run<'_, T, J, C>,
        start: usize,
        len: usize,
        node: Node<A>,
        mut prefix: Option<&mut dyn Prefix<A>>,
    ) where
        J: MapReduce<T, C, Acc = A>,
        C: ?Sized,
    {
        self.outstanding -= 1;
        if node.has_ended() {
            // The rank told its event already, unless the block ended
            // first; the block's own position is left of the event.
            run.state.record_event(FIRST_POSITION + start);
        }
        let first = start / self.leaves.size;
        let count = len.div_ceil(self.leaves.size);
        if let (Some(block_time), Some((rank, issued))) = (self.block_time, self.issued.remove(&first)) {
            // The time since it was handed out includes the block the rank
            // was finishing then: a cautious pace.
            let took = issued.elapsed().as_nanos().max(1);
            let fits = (count as u128 * block_time.as_nanos() / took).min(usize::MAX as u128) as usize;
            self.caps[rank] = fits.max(1);
        }
        self.waiting.insert(first, (count, node));
        let pushed_before = self.pushed_to;
        while let Some((count, node)) = self.waiting.remove(&self.pushed_to) {
            let position = FIRST_POSITION + self.leaves.start(self.pushed_to);
            match &node {
                Node::Done(_) => {}
                Node::Ended {
                    event: Event::Panic(_), ..
                } if self.whole => {
                    // The run fails here: a rerun retries from this block.
                    if let Some(prefix) = prefix.as_deref_mut() {
                        prefix.keep(self.done(), &self.stack);
                    }
                    self.whole = false;
                }
                _ => self.whole = false,
            }
            self.stack.push(run, count.trailing_zeros(), node, position);
            self.pushed_to += count;
        }
        if let (Some(prefix), true, false, true) = (
            prefix,
            self.whole,
            self.stack.has_ended(),
            self.pushed_to > pushed_before,
        ) {
            prefix.completed(self.done(), &self.stack);
        }
    }

    /// The prefix pushed so far.
    fn done(&self) -> Done {
        Done {
            leaves: self.pushed_to as u64,
            items: self.leaves.start(self.pushed_to) as u64,
        }
    }

    /// The run was stopped: have `prefix` save what is pushed, if it is a
    /// prefix.
    pub(crate) fn keep(&self, prefix: &mut dyn Prefix<A>) {
        if self.whole {
            prefix.keep(self.done(), &self.stack);
        }
    }

    /// Whether the answer is known: every leaf is pushed; or an event ended
    /// the stack, which nothing right of it can change (and which any order
    /// accepts as found); or handing out has stopped and every block is
    /// back; or the run aborted.
    pub(crate) fn is_decided<T, J, C>(&self, run: &Run<'_, T, J, C>) -> bool
    where
        J: MapReduce<T, C, Acc = A>,
        C: ?Sized,
    {
        self.pushed_to == self.leaves.count()
            || self.stack.has_ended()
            || (!self.handing_out(run) && self.outstanding == 0)
            || run.state.is_aborted()
    }

    /// The answer, once [`is_decided`](Self::is_decided).
    pub(crate) fn finish<T, J, C>(self, run: &Run<'_, T, J, C>) -> Result<ControlFlow<A, A>, Error>
    where
        J: MapReduce<T, C, Acc = A>,
        C: ?Sized,
    {
        if self.pushed_to < self.leaves.count() && !self.stack.has_ended() {
            // Handing out stopped short of the end with no event pushed: an
            // event (any order) or an abort that `settle` reports.
            return run.settle(Err(Error::Cancelled));
        }
        self.stack.finish(run, || catch_panic(|| run.job.empty_result(run.ctx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cancel::Shortcircuit;
    use crate::config::Config;
    use crate::engine::tree::Event;
    use crate::error::Panic;
    use crate::jobs;

    fn done(items: std::ops::Range<u32>) -> Node<Vec<u32>> {
        Node::Done(items.collect())
    }

    #[test]
    fn blocks_are_aligned_whole_leaves_that_grow_and_shrink() {
        let job = jobs::collect(|x: u32, _: &()| x);
        let run = Run::new(&job, &(), Config::default(), Shortcircuit::new(true, None), None);
        // 1000 items in leaves of 3: 334 leaves, the last of one item.
        let mut coordinator = Coordinator::<Vec<u32>>::new(Leaves::new(1000, 3), 2);
        let mut blocks = Vec::new();
        let mut rank = 0;
        while let Some(block) = coordinator.assign(&run, rank, 1) {
            blocks.push(block);
            rank = 1 - rank;
        }
        assert_eq!(blocks[0], (0, 12), "4 leaves of 3 items");
        assert_eq!(blocks[1], (12, 12));
        let mut next = 0;
        for &(start, len) in &blocks {
            assert_eq!(start, next);
            assert_eq!(start % 3, 0, "blocks are whole leaves");
            let (first, count) = (start / 3, len.div_ceil(3));
            assert!(
                count.is_power_of_two() && first % count == 0,
                "block {first}+{count} is not aligned"
            );
            next += len;
        }
        assert_eq!(next, 1000);
        let sizes: Vec<usize> = blocks.iter().map(|block| block.1.div_ceil(3)).collect();
        assert!(*sizes.iter().max().unwrap() <= 334 / 32 + 1, "{sizes:?}");
    }

    #[test]
    fn results_push_in_order_whatever_order_they_arrive_in() {
        let job = jobs::collect(|x: u32, _: &()| x);
        let run = Run::new(&job, &(), Config::default(), Shortcircuit::new(true, None), None);
        let mut coordinator = Coordinator::new(Leaves::new(6, 1), 3);
        let blocks: Vec<_> = (0..3).map_while(|rank| coordinator.assign(&run, rank, 1)).collect();
        assert_eq!(blocks, vec![(0, 4), (4, 2)], "blocks of at least 4 leaves per worker");
        coordinator.report(&run, 4, 2, done(4..6), None);
        assert!(!coordinator.is_decided(&run));
        coordinator.report(&run, 0, 4, done(0..4), None);
        assert!(coordinator.is_decided(&run));
        match coordinator.finish(&run) {
            Ok(ControlFlow::Continue(acc)) => assert_eq!(acc, vec![0, 1, 2, 3, 4, 5]),
            other => panic!("unexpected {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn a_break_stops_handing_out_and_decides_once_everything_left_of_it_is_in() {
        let job = jobs::collect(|x: u32, _: &()| x);
        let run = Run::new(&job, &(), Config::default(), Shortcircuit::new(true, None), None);
        let mut coordinator = Coordinator::new(Leaves::new(100, 1), 2);
        let (a, b) = (
            coordinator.assign(&run, 0, 1).unwrap(),
            coordinator.assign(&run, 1, 1).unwrap(),
        );
        let broke = Node::Ended {
            pieces: vec![vec![4, 5]],
            event: Event::Break,
        };
        coordinator.report(&run, b.0, b.1, broke, None);
        assert!(coordinator.assign(&run, 1, 1).is_none(), "nothing right of the break");
        assert!(!coordinator.is_decided(&run), "block 0 may still break earlier");
        coordinator.report(&run, a.0, a.1, done(0..4), None);
        assert!(coordinator.is_decided(&run));
        match coordinator.finish(&run) {
            Ok(ControlFlow::Break(acc)) => assert_eq!(acc, vec![0, 1, 2, 3, 4, 5]),
            other => panic!("unexpected {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn a_failure_left_of_a_break_wins_and_nothing_is_an_empty_result() {
        let job = jobs::collect(|x: u32, _: &()| x);
        let run = Run::new(&job, &(), Config::default(), Shortcircuit::new(true, None), None);
        let mut coordinator = Coordinator::new(Leaves::new(8, 1), 2);
        let (a, b) = (
            coordinator.assign(&run, 0, 1).unwrap(),
            coordinator.assign(&run, 1, 1).unwrap(),
        );
        let broke = Node::Ended {
            pieces: vec![vec![4]],
            event: Event::Break,
        };
        coordinator.report(&run, b.0, b.1, broke, None);
        let failed = Node::Ended {
            pieces: vec![vec![0, 1]],
            event: Event::Panic(Panic::new(Some(2), Box::new("bad item".to_owned()))),
        };
        coordinator.report(&run, a.0, a.1, failed, None);
        assert!(coordinator.is_decided(&run));
        let err = coordinator.finish(&run).map(|_| ()).unwrap_err();
        assert_eq!(err.index(), Some(2));

        let empty = Coordinator::<Vec<u32>>::new(Leaves::new(0, 1), 2);
        assert!(empty.is_decided(&run));
        assert!(matches!(empty.finish(&run), Ok(ControlFlow::Continue(acc)) if acc.is_empty()));
    }

    #[test]
    fn any_order_waits_for_every_block_out() {
        let job = jobs::collect(|x: u32, _: &()| x);
        let run = Run::new(
            &job,
            &(),
            Config::default().with_deterministic(false),
            Shortcircuit::new(false, None),
            None,
        );
        let mut coordinator = Coordinator::new(Leaves::new(100, 1), 2);
        let (a, b) = (
            coordinator.assign(&run, 0, 1).unwrap(),
            coordinator.assign(&run, 1, 1).unwrap(),
        );
        let broke = Node::Ended {
            pieces: vec![vec![6]],
            event: Event::Break,
        };
        coordinator.report(&run, b.0, b.1, broke, None);
        assert!(coordinator.assign(&run, 0, 1).is_none());
        assert!(!coordinator.is_decided(&run));
        coordinator.report(&run, a.0, a.1, Node::Skipped, None);
        assert!(coordinator.is_decided(&run));
        assert!(matches!(coordinator.finish(&run), Ok(ControlFlow::Break(acc)) if acc == vec![6]));
    }
}
