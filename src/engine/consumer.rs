//! The engine as a rayon consumer: it works for every parallel iterator,
//! indexed (split at item counts) or unindexed (split anywhere), the way
//! rayon's own `find_first` does.
//!
//! Each consumer owns an interval of positions (see [`crate::cancel`]);
//! splitting gives the left part the lower positions. When the input is
//! indexed, positions are item indices plus one, so a task also knows the
//! index of every item it folds, which a panic report names.

use std::cell::Cell;
use std::marker::PhantomData;
use std::ops::ControlFlow::{Break, Continue};

use rayon::iter::plumbing::{Consumer, Folder, Reducer, UnindexedConsumer};

use super::run::{Part, Piece, Run};
use crate::cancel::FIRST_POSITION;
use crate::job::MapReduce;
use crate::progress::Publisher;

pub(crate) struct MapReduceConsumer<'r, 'a, T, J: MapReduce<T, C>, C: ?Sized> {
    run: &'r Run<'a, T, J, C>,
    /// The interval `[low, high)` of positions of this consumer's tasks.
    low: Cell<usize>,
    high: usize,
    /// The input index of this consumer's first item, when known.
    first_index: Cell<Option<usize>>,
}

impl<'r, 'a, T, J: MapReduce<T, C>, C: ?Sized> MapReduceConsumer<'r, 'a, T, J, C> {
    /// The consumer of a whole run; `first_index` is the index of its first
    /// item if the input is indexed.
    pub(crate) fn new(run: &'r Run<'a, T, J, C>, first_index: Option<usize>) -> Self {
        MapReduceConsumer {
            run,
            low: Cell::new(FIRST_POSITION),
            high: usize::MAX,
            first_index: Cell::new(first_index),
        }
    }

    fn with(&self, low: usize, high: usize, first_index: Option<usize>) -> Self {
        MapReduceConsumer {
            run: self.run,
            low: Cell::new(low),
            high,
            first_index: Cell::new(first_index),
        }
    }
}

impl<'r, 'a, T, J, C> Consumer<T> for MapReduceConsumer<'r, 'a, T, J, C>
where
    J: MapReduce<T, C>,
    C: Sync + ?Sized,
{
    type Folder = MapReduceFolder<'r, 'a, T, J, C>;
    type Reducer = JoinPieces<'r, 'a, T, J, C>;
    type Result = Piece<J::Acc>;

    fn split_at(self, index: usize) -> (Self, Self, Self::Reducer) {
        let low = self.low.get();
        let middle = low.saturating_add(index).min(self.high);
        let first_index = self.first_index.get();
        let left = self.with(low, middle, first_index);
        let right = self.with(middle, self.high, first_index.map(|first| first + index));
        (left, right, JoinPieces { run: self.run })
    }

    fn into_folder(self) -> Self::Folder {
        let position = self.low.get();
        let part = if self.full() {
            Part::Skipped
        } else {
            match self.run.guarded(position, || self.run.job.empty_result(self.run.ctx)) {
                Ok(acc) => Part::Done(acc),
                Err(payload) => self.run.settle_panic(position, None, payload),
            }
        };
        MapReduceFolder {
            run: self.run,
            position,
            next_index: self.first_index.get(),
            part,
            _item: PhantomData,
        }
    }

    fn full(&self) -> bool {
        let state = &self.run.state;
        state.is_past(self.low.get()) || state.abort_if_parent_cancelled()
    }
}

impl<'r, 'a, T, J, C> UnindexedConsumer<T> for MapReduceConsumer<'r, 'a, T, J, C>
where
    J: MapReduce<T, C>,
    C: Sync + ?Sized,
{
    fn split_off_left(&self) -> Self {
        let low = self.low.get();
        let middle = low + (self.high - low) / 2;
        let left = self.with(low, middle, self.first_index.get());
        self.low.set(middle);
        // Where the left part ends is unknown, so is our first index.
        self.first_index.set(None);
        left
    }

    fn to_reducer(&self) -> Self::Reducer {
        JoinPieces { run: self.run }
    }
}

/// Joins the pieces of two adjacent consumers, in order.
pub(crate) struct JoinPieces<'r, 'a, T, J: MapReduce<T, C>, C: ?Sized> {
    run: &'r Run<'a, T, J, C>,
}

impl<T, J: MapReduce<T, C>, C: ?Sized> Reducer<Piece<J::Acc>> for JoinPieces<'_, '_, T, J, C> {
    fn reduce(self, left: Piece<J::Acc>, right: Piece<J::Acc>) -> Piece<J::Acc> {
        self.run.join(left, right)
    }
}

/// One task: folds adjacent items, in order, into an accumulator.
pub(crate) struct MapReduceFolder<'r, 'a, T, J: MapReduce<T, C>, C: ?Sized> {
    run: &'r Run<'a, T, J, C>,
    position: usize,
    /// The input index of the next item, when known.
    next_index: Option<usize>,
    part: Part<J::Acc>,
    _item: PhantomData<fn(T)>,
}

/// How a fold over some items stopped.
enum Step<A> {
    Done(A),
    Broke(A),
    Cancelled,
}

impl<T, J, C> Folder<T> for MapReduceFolder<'_, '_, T, J, C>
where
    J: MapReduce<T, C>,
    C: Sync + ?Sized,
{
    type Result = Piece<J::Acc>;

    fn consume(self, item: T) -> Self {
        self.consume_iter(std::iter::once(item))
    }

    fn consume_iter<I>(mut self, items: I) -> Self
    where
        I: IntoIterator<Item = T>,
    {
        let acc = match std::mem::replace(&mut self.part, Part::Skipped) {
            Part::Done(acc) => acc,
            ended => {
                self.part = ended;
                return self;
            }
        };
        let (run, position) = (self.run, self.position);
        let (job, ctx, state) = (run.job, run.ctx, &*run.state);
        // Counts the items folded, for the index of a panicking one and for
        // the progress tally, which gets them in batches.
        let mut folded = 0usize;
        let mut publisher = Publisher::new(run.tally);
        let (counter, progress) = (&mut folded, &mut publisher);
        // The per-item loop: one relaxed load, the user's two calls, one
        // comparison with a local.
        let step = run.guarded(position, move || {
            let mut acc = acc;
            let mut publish_at = progress.next_at();
            for item in items {
                if state.is_past(position) {
                    return Step::Cancelled;
                }
                let flow = job.process_result(job.compute(item, ctx), acc);
                *counter += 1;
                if *counter == publish_at {
                    progress.publish(*counter);
                    publish_at = progress.next_at();
                }
                match flow {
                    Continue(next) => acc = next,
                    Break(last) => return Step::Broke(last),
                }
            }
            Step::Done(acc)
        });
        publisher.flush(folded);
        // On a panic, `folded` counts the items before the panicking one.
        let index = self.next_index.map(|next| next + folded);
        self.part = match step {
            Ok(Step::Done(acc)) => {
                self.next_index = index;
                Part::Done(acc)
            }
            Ok(Step::Broke(acc)) => {
                state.record_event(position);
                let item = index.map(|next| next - 1);
                log::trace!("Break at item {item:?} (task position {position})");
                Part::Broke(acc)
            }
            Ok(Step::Cancelled) => Part::Skipped,
            Err(payload) => run.settle_panic(position, index, payload),
        };
        self
    }

    fn complete(self) -> Self::Result {
        Piece {
            position: self.position,
            part: self.part,
        }
    }

    fn full(&self) -> bool {
        !matches!(self.part, Part::Done(_)) || self.run.state.is_past(self.position)
    }
}
