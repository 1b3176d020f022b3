//! Rank 0's bookkeeping: which blocks of the index range go to whom, and
//! the in-order join of the blocks' results into the answer.
//!
//! Blocks are handed out left to right, so every rank's blocks come in
//! increasing order. Like [`par_map_reduce_in_order`](crate::par_map_reduce_in_order),
//! a rank's blocks start small (a few items per worker, so a `Break` near
//! the start is found at once) and double, up to a sixteenth of each rank's
//! share, and shrink again near the end so the ranks finish together.
//! The run's horizon (rank 0's own shortcircuit state, which every event
//! anywhere lowers) says where handing out stops.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use crate::cancel::FIRST_POSITION;
use crate::engine::{Part, Piece, Run, BLOCKS_AT_MOST, FIRST_BLOCK_PER_WORKER};
use crate::error::{Error, Panic};
use crate::job::MapReduce;

pub(crate) struct Coordinator<A> {
    len: usize,
    ranks: usize,
    /// The first index not handed out yet.
    next: usize,
    /// The size of each rank's next block, once it has had one.
    grants: Vec<usize>,
    /// Blocks handed out whose result has not come back.
    outstanding: usize,
    /// The join of the results of `0 .. joined_to`, in order.
    joined: Option<Piece<A>>,
    joined_to: usize,
    /// Results right of `joined_to`, by first index, with their length.
    waiting: BTreeMap<usize, (usize, Piece<A>)>,
}

impl<A> Coordinator<A> {
    pub(crate) fn new(len: usize, ranks: usize) -> Coordinator<A> {
        Coordinator {
            len,
            ranks: ranks.max(1),
            next: 0,
            grants: vec![0; ranks.max(1)],
            outstanding: 0,
            joined: None,
            joined_to: 0,
            waiting: BTreeMap::new(),
        }
    }

    /// The next block for `rank`, which runs `workers` workers, or `None`
    /// when nothing is left to hand out.
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
        let first = FIRST_BLOCK_PER_WORKER * workers.max(1);
        let left = self.len - self.next;
        let grant = self.grants[rank].max(first);
        let largest = (self.len / (BLOCKS_AT_MOST * self.ranks)).max(first);
        let near_the_end = (left / (2 * self.ranks)).max(first);
        let size = grant.min(largest).min(near_the_end).min(left);
        self.grants[rank] = grant.saturating_mul(2);
        let start = self.next;
        self.next += size;
        self.outstanding += 1;
        Some((start, size))
    }

    /// Whether blocks are still handed out: some are left, and no event
    /// lies left of the next one.
    fn handing_out<T, J, C>(&self, run: &Run<'_, T, J, C>) -> bool
    where
        J: MapReduce<T, C, Acc = A>,
        C: ?Sized,
    {
        self.next < self.len && !run.state.is_past(FIRST_POSITION + self.next)
    }

    /// The result of block `start .. start + len` came back.
    pub(crate) fn report<T, J, C>(&mut self, run: &Run<'_, T, J, C>, start: usize, len: usize, piece: Piece<A>)
    where
        J: MapReduce<T, C, Acc = A>,
        C: ?Sized,
    {
        self.outstanding -= 1;
        if matches!(piece.part, Part::Broke(_) | Part::Failed { .. }) {
            // The rank told its event already, unless the block ended
            // first; the block's own position is left of the event.
            run.state.record_event(piece.position);
        }
        self.waiting.insert(start, (len, piece));
        while let Some((len, piece)) = self.waiting.remove(&self.joined_to) {
            self.joined = Some(match self.joined.take() {
                Some(left) => run.join(left, piece),
                None => piece,
            });
            self.joined_to += len;
        }
    }

    /// Whether the answer is known: every item is joined; or the joined
    /// prefix ends in an event, which nothing right of it can change (and
    /// which any order accepts as found); or handing out has stopped and
    /// every block is back; or the run aborted (a panic in `merge`).
    pub(crate) fn is_decided<T, J, C>(&self, run: &Run<'_, T, J, C>) -> bool
    where
        J: MapReduce<T, C, Acc = A>,
        C: ?Sized,
    {
        let prefix_ended = matches!(
            self.joined.as_ref().map(|piece| &piece.part),
            Some(Part::Broke(_) | Part::Failed { .. })
        );
        self.joined_to == self.len
            || prefix_ended
            || (!self.handing_out(run) && self.outstanding == 0)
            || run.state.is_aborted()
    }

    /// The answer, once [`is_decided`](Self::is_decided).
    pub(crate) fn finish<T, J, C>(self, run: &Run<'_, T, J, C>) -> Result<ControlFlow<A, A>, Error>
    where
        J: MapReduce<T, C, Acc = A>,
        C: ?Sized,
    {
        match self.joined {
            Some(piece) => run.finish(piece),
            // Nothing ran because the run aborted first.
            None if self.len > 0 => run.finish(Piece {
                position: FIRST_POSITION,
                part: Part::Skipped,
            }),
            // No item at all: the answer is the empty result.
            None => match run.guarded(FIRST_POSITION, || run.job.empty_result(run.ctx)) {
                Ok(acc) => Ok(ControlFlow::Continue(acc)),
                Err(payload) => Err(Panic::new(None, payload).into()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cancel::Shortcircuit;
    use crate::config::Config;
    use crate::jobs;

    fn piece(start: usize, part: Part<Vec<u32>>) -> Piece<Vec<u32>> {
        Piece {
            position: FIRST_POSITION + start,
            part,
        }
    }

    #[test]
    fn blocks_cover_the_range_in_order_grow_and_shrink() {
        let job = jobs::collect(|x: u32, _: &()| x);
        let run = Run::new(&job, &(), Config::default(), Shortcircuit::new(true, None), None);
        let mut coordinator = Coordinator::<Vec<u32>>::new(1000, 2);
        let mut blocks = Vec::new();
        let mut rank = 0;
        while let Some(block) = coordinator.assign(&run, rank, 1) {
            blocks.push(block);
            rank = 1 - rank;
        }
        assert_eq!(blocks[0], (0, 4));
        assert_eq!(blocks[1], (4, 4));
        assert_eq!(blocks[2], (8, 8));
        let sizes: Vec<usize> = blocks.iter().map(|block| block.1).collect();
        assert_eq!(*sizes.iter().max().unwrap(), 1000 / 32);
        assert_eq!(*sizes.last().unwrap(), 4, "small blocks at the end: {sizes:?}");
        let mut next = 0;
        for (start, len) in &blocks {
            assert_eq!(*start, next);
            next += len;
        }
        assert_eq!(next, 1000);
    }

    #[test]
    fn results_join_in_index_order_whatever_order_they_arrive_in() {
        let job = jobs::collect(|x: u32, _: &()| x);
        let run = Run::new(&job, &(), Config::default(), Shortcircuit::new(true, None), None);
        let mut coordinator = Coordinator::new(6, 3);
        let blocks: Vec<_> = (0..3).map_while(|rank| coordinator.assign(&run, rank, 1)).collect();
        assert_eq!(blocks, vec![(0, 4), (4, 2)], "blocks of at least 4 items per worker");
        coordinator.report(&run, 4, 2, piece(4, Part::Done(vec![4, 5])));
        assert!(!coordinator.is_decided(&run));
        coordinator.report(&run, 0, 4, piece(0, Part::Done(vec![0, 1, 2, 3])));
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
        let mut coordinator = Coordinator::new(100, 2);
        let (a, b) = (
            coordinator.assign(&run, 0, 1).unwrap(),
            coordinator.assign(&run, 1, 1).unwrap(),
        );
        coordinator.report(&run, b.0, b.1, piece(b.0, Part::Broke(vec![4, 5])));
        assert!(coordinator.assign(&run, 1, 1).is_none(), "nothing right of the break");
        assert!(!coordinator.is_decided(&run), "block 0 may still break earlier");
        coordinator.report(&run, a.0, a.1, piece(a.0, Part::Done(vec![0, 1, 2, 3])));
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
        let mut coordinator = Coordinator::new(8, 2);
        let (a, b) = (
            coordinator.assign(&run, 0, 1).unwrap(),
            coordinator.assign(&run, 1, 1).unwrap(),
        );
        coordinator.report(&run, b.0, b.1, piece(b.0, Part::Broke(vec![4])));
        let panic = Panic::new(Some(2), Box::new("bad item".to_owned()));
        coordinator.report(&run, a.0, a.1, piece(a.0, Part::Failed { panic, prefix: None }));
        assert!(coordinator.is_decided(&run));
        let err = coordinator.finish(&run).map(|_| ()).unwrap_err();
        assert_eq!(err.index(), Some(2));

        let empty = Coordinator::<Vec<u32>>::new(0, 2);
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
        let mut coordinator = Coordinator::new(100, 2);
        let (a, b) = (
            coordinator.assign(&run, 0, 1).unwrap(),
            coordinator.assign(&run, 1, 1).unwrap(),
        );
        coordinator.report(&run, b.0, b.1, piece(b.0, Part::Broke(vec![6])));
        assert!(coordinator.assign(&run, 0, 1).is_none());
        assert!(!coordinator.is_decided(&run));
        coordinator.report(&run, a.0, a.1, piece(a.0, Part::Skipped));
        assert!(coordinator.is_decided(&run));
        assert!(matches!(coordinator.finish(&run), Ok(ControlFlow::Break(acc)) if acc == vec![6]));
    }
}
