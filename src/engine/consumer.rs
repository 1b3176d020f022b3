//! The engine as a rayon consumer: it works for every parallel iterator,
//! indexed (split at item counts) or unindexed (split anywhere), the way
//! rayon's own `find_first` does.
//!
//! Each consumer owns an interval of positions (see [`crate::cancel`]);
//! splitting gives the left part the lower positions. When the input is
//! indexed, positions are item indices plus one, so a task also knows the
//! index of every item it folds, which a panic report names.

use std::any::Any;
use std::cell::Cell;
use std::marker::PhantomData;
use std::ops::ControlFlow::{Break, Continue};
use std::panic::{catch_unwind, AssertUnwindSafe};

use rayon::iter::plumbing::{Consumer, Folder, Reducer, UnindexedConsumer};

use super::run::{Part, Piece, Run};
use crate::cancel::{Shortcircuit, FIRST_POSITION};
use crate::job::MapReduce;
use crate::progress::Tally;
use crate::sync::{AtomicUsize, Ordering};

pub(crate) struct MapReduceConsumer<'r, 'a, T, J: MapReduce<T, C>, C: ?Sized> {
    run: &'r Run<'a, T, J, C>,
    /// The interval `[low, high)` of positions of this consumer's tasks.
    low: Cell<usize>,
    high: usize,
    /// The input index of this consumer's first item, when known.
    first_index: Cell<Option<usize>>,
    /// How many parts [`split_off_left`](UnindexedConsumer::split_off_left)
    /// has given away so far.
    given_left: Cell<usize>,
}

impl<'r, 'a, T, J: MapReduce<T, C>, C: ?Sized> MapReduceConsumer<'r, 'a, T, J, C> {
    /// The consumer of a whole run; `first_index` is the index of its first
    /// item if the input is indexed.
    pub(crate) fn new(run: &'r Run<'a, T, J, C>, first_index: Option<usize>) -> Self {
        MapReduceConsumer {
            run,
            // Positions continue the input's indices, so that the batches of
            // a streamed run, which share one run, keep their order.
            low: Cell::new(FIRST_POSITION + first_index.unwrap_or(0)),
            high: usize::MAX,
            first_index: Cell::new(first_index),
            given_left: Cell::new(0),
        }
    }

    fn with(&self, low: usize, high: usize, first_index: Option<usize>) -> Self {
        MapReduceConsumer {
            run: self.run,
            low: Cell::new(low),
            high,
            first_index: Cell::new(first_index),
            given_left: Cell::new(0),
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
        let first_index = self.first_index.get();
        let middle = match first_index {
            // Positions are item indices: the left part gets its items'.
            Some(_) => low.saturating_add(index).min(self.high),
            // They are not (an unindexed adaptor, such as `flat_map`, lies
            // between the input and this consumer, and each of the `index`
            // items on the left may become many): split the positions in two.
            None => low + (self.high - low) / 2,
        };
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
                Err(payload) => self.run.settle_panic(position, None, payload, None),
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
    /// The `k`-th part split off this consumer gets `1 / (k + 1)` of the
    /// positions left: the first half of them, as in a split in two; then a
    /// third of the rest, a quarter of what remains, and so on. `flat_map`
    /// and `flatten` split one part off per outer item, in a chain: halving
    /// each time would run out of positions after 64 of them, leaving the
    /// rest at one position that a `Break` there could not cancel. This way
    /// the `n`-th part still gets about `2^64 / n^2` positions.
    fn split_off_left(&self) -> Self {
        let low = self.low.get();
        let given = self.given_left.get() + 1;
        self.given_left.set(given);
        let middle = low + (self.high - low) / (given + 1);
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

impl<'r, 'a, T, J: MapReduce<T, C>, C: ?Sized> MapReduceFolder<'r, 'a, T, J, C> {
    /// A folder that goes on folding, into `acc`, the items of the task at
    /// `position` from the item at `next_index` on: a leaf of a stream whose
    /// items arrive in several batches.
    pub(crate) fn resume(run: &'r Run<'a, T, J, C>, position: usize, next_index: usize, acc: J::Acc) -> Self {
        MapReduceFolder {
            run,
            position,
            next_index: Some(next_index),
            part: Part::Done(acc),
            _item: PhantomData,
        }
    }
}

/// What the per-item loop checks before each item: one relaxed load of a
/// word, compared with a value; both are taken out of the gate into the
/// loop's own variables, so they stay in registers.
trait Gate {
    /// The word the loop loads before each item.
    fn word(&self) -> &AtomicUsize;

    /// The value the loop compares it with.
    fn value(&self) -> usize;

    /// Whether the loop may go on to the next item, the word being `word`.
    fn admits(word: usize, value: usize) -> bool;

    /// The gate closed with `folded` items done: whether to go on.
    fn reopen(&mut self, folded: usize) -> bool;
}

/// An unwatched task's gate: closed once the horizon falls below the
/// task's position (it is cancelled), for good.
struct Horizon<'s> {
    horizon: &'s AtomicUsize,
    position: usize,
}

impl Gate for Horizon<'_> {
    #[inline(always)]
    fn word(&self) -> &AtomicUsize {
        self.horizon
    }

    #[inline(always)]
    fn value(&self) -> usize {
        self.position
    }

    #[inline(always)]
    fn admits(horizon: usize, position: usize) -> bool {
        horizon >= position
    }

    #[inline(always)]
    fn reopen(&mut self, _folded: usize) -> bool {
        false
    }
}

/// A watched task's gate: closed once the run's pulse is no longer the one
/// the task saw, because the watcher wants counts or the horizon moved.
/// Then the task publishes what it folded since it last did and looks at
/// the horizon, which opens the gate again unless the task is cancelled.
struct Pulse<'s> {
    pulse: &'s AtomicUsize,
    seen: usize,
    state: &'s Shortcircuit,
    position: usize,
    tally: &'s Tally,
    published: usize,
}

impl<'s> Pulse<'s> {
    fn new(state: &'s Shortcircuit, position: usize, tally: &'s Tally) -> Self {
        let pulse = state.pulse();
        Pulse {
            pulse,
            // Closed at first: before its first item, the task looks at the
            // horizon, as an unwatched one does.
            seen: pulse.load(Ordering::Relaxed).wrapping_sub(1),
            state,
            position,
            tally,
            published: 0,
        }
    }

    /// Publish the items folded since the last publication.
    fn publish(&mut self, folded: usize) {
        if folded > self.published {
            self.tally.add((folded - self.published) as u64);
            self.published = folded;
        }
    }
}

impl Gate for Pulse<'_> {
    #[inline(always)]
    fn word(&self) -> &AtomicUsize {
        self.pulse
    }

    #[inline(always)]
    fn value(&self) -> usize {
        self.seen
    }

    #[inline(always)]
    fn admits(pulse: usize, seen: usize) -> bool {
        pulse == seen
    }

    /// `Acquire`: a move of the horizon that bumped the pulse before this
    /// load is seen by the look at the horizon after it; a later one moves
    /// the pulse again.
    ///
    /// Inlined, though it runs ten times a second: a call out of the loop
    /// made the loop keep its values in registers a call preserves, too few
    /// for tiny items, which it then reloaded from the stack per item
    /// (`par_map_reduce` over 2×10^9 tiny items, live bar / off: 1.18 with
    /// the call, 1.08 inlined; BENCHMARKS.md "Watching at zero cost").
    #[inline(always)]
    fn reopen(&mut self, folded: usize) -> bool {
        self.publish(folded);
        self.seen = self.pulse.load(Ordering::Acquire);
        !self.state.is_past(self.position)
    }
}

/// The per-item loop: one relaxed load (the gate) and the user's two calls,
/// their panics caught per item (which costs nothing unless one happens),
/// so the count of folded items stays in a register. Returns the count,
/// how the fold stopped and the gate. A panic in `compute` leaves the
/// accumulator whole, and it goes with the panic (see [`Part::Failed`]).
#[inline(never)]
fn fold<T, J, C, I, G>(job: &J, ctx: &C, mut gate: G, mut acc: J::Acc, items: I) -> (usize, Step<J::Acc>, G)
where
    J: MapReduce<T, C>,
    C: ?Sized,
    I: IntoIterator<Item = T>,
    G: Gate,
{
    let mut items = items.into_iter();
    let mut folded = 0usize;
    loop {
        // The loop proper: it leaves with the item the closed gate held up.
        let (word, value) = (gate.word(), gate.value());
        let held = loop {
            let Some(item) = items.next() else {
                return (folded, Step::Done(acc), gate);
            };
            if !G::admits(word.load(Ordering::Relaxed), value) {
                break item;
            }
            match fold_one(job, ctx, item, acc) {
                Ok(next) => acc = next,
                Err((counted, step)) => return (folded + counted, step, gate),
            }
            folded += 1;
        };
        if !gate.reopen(folded) {
            return (folded, Step::Cancelled, gate);
        }
        match fold_one(job, ctx, held, acc) {
            Ok(next) => acc = next,
            Err((counted, step)) => return (folded + counted, step, gate),
        }
        folded += 1;
    }
}

/// One item of [`fold`]: the next accumulator, or how the fold ends and
/// whether the item counts as folded (the one that broke does).
#[inline(always)]
fn fold_one<T, J, C>(job: &J, ctx: &C, item: T, acc: J::Acc) -> Result<J::Acc, (usize, Step<J::Acc>)>
where
    J: MapReduce<T, C>,
    C: ?Sized,
{
    let output = match catch_unwind(AssertUnwindSafe(|| job.compute(item, ctx))) {
        Ok(output) => output,
        Err(payload) => return Err((0, Step::Panicked(payload, Some(acc)))),
    };
    match catch_unwind(AssertUnwindSafe(|| job.process_result(output, acc))) {
        Ok(Continue(next)) => Ok(next),
        Ok(Break(last)) => Err((1, Step::Broke(last))),
        Err(payload) => Err((0, Step::Panicked(payload, None))),
    }
}

/// [`fold`] for a watched task: the same loop, gated by the run's pulse in
/// place of the horizon, so that it costs what an unwatched one does. The
/// task publishes its count when the pulse moves and when it ends.
fn fold_watched<T, J, C, I>(
    job: &J,
    ctx: &C,
    state: &Shortcircuit,
    position: usize,
    acc: J::Acc,
    items: I,
    tally: &Tally,
) -> (usize, Step<J::Acc>)
where
    J: MapReduce<T, C>,
    C: ?Sized,
    I: IntoIterator<Item = T>,
{
    let (folded, step, mut pulse) = fold(job, ctx, Pulse::new(state, position, tally), acc, items);
    pulse.publish(folded);
    (folded, step)
}

/// How a fold over some items stopped.
enum Step<A> {
    Done(A),
    Broke(A),
    Cancelled,
    /// A panic, with the accumulator of the items before it if it survived.
    Panicked(Box<dyn Any + Send>, Option<A>),
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
        // Unwatched and watched runs get separate copies of the loop, so
        // that the watched one's bookkeeping cannot slow the other down.
        let outcome = match run.tally {
            Some(tally) => run.guarded(position, move || {
                fold_watched(job, ctx, state, position, acc, items, tally)
            }),
            None => run.guarded(position, move || {
                let horizon = Horizon {
                    horizon: state.horizon(),
                    position,
                };
                let (folded, step, _) = fold(job, ctx, horizon, acc, items);
                (folded, step)
            }),
        };
        let next_index = self.next_index;
        let at = |folded: usize| next_index.map(|next| next + folded);
        self.part = match outcome {
            Ok((folded, step)) => match step {
                Step::Done(acc) => {
                    self.next_index = at(folded);
                    Part::Done(acc)
                }
                Step::Broke(acc) => {
                    state.record_event(position);
                    log::trace!("Break at item {:?} (task position {position})", at(folded - 1));
                    Part::Broke(acc)
                }
                Step::Cancelled => Part::Skipped,
                Step::Panicked(payload, prefix) => run.settle_panic(position, at(folded), payload, prefix),
            },
            // The input's own adaptors panicked (a `map` before `map_reduce`,
            // say): which item they were producing is not known.
            Err(payload) => run.settle_panic(position, None, payload, None),
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
