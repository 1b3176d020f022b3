//! One run of a job: what every task of it shares, how the pieces of work
//! it produces are joined, and how the last piece becomes the answer.

use std::marker::PhantomData;
use std::ops::ControlFlow::{self, Break, Continue};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::cancel::{Shortcircuit, TaskFrame, Token};
use crate::config::Config;
use crate::error::{Error, Panic};
use crate::job::MapReduce;
use crate::progress::Tally;

/// How a stretch of adjacent items ended.
pub(crate) enum Part<A> {
    /// Every item was folded in; no `Break`.
    Done(A),
    /// A `Break` ended the stretch: nothing right of it matters.
    Broke(A),
    /// A panic ended the stretch: nothing right of it matters. `prefix` is
    /// the accumulator of the first items of the stretch, all left of the
    /// one that panicked, when one survived: all of them after a panic in
    /// `compute`; none of the panicking task's own after one in
    /// `process_result` or `merge`, which consumed them, but still those of
    /// the tasks joined in from its left. Merged with what lies left, it may
    /// still end in a `Break`, which then wins, as it would in a sequential
    /// run that never reaches the panicking item.
    Failed { panic: Panic, prefix: Option<A> },
    /// The stretch was cancelled: an event left of it ended the run (or the
    /// run aborted), so its items cannot matter.
    Skipped,
}

/// What came of a `merge`.
enum Merged<A> {
    Flow(ControlFlow<A, A>),
    /// It panicked: the failed part that replaces the two.
    Failed(Part<A>),
    /// The run was aborted before it.
    Aborted,
}

/// The result of a task or of a join of tasks: a `Part` and the position of
/// its leftmost task.
pub(crate) struct Piece<A> {
    pub(crate) position: usize,
    pub(crate) part: Part<A>,
}

/// Everything the tasks of one run share.
pub(crate) struct Run<'a, T, J: MapReduce<T, C>, C: ?Sized> {
    pub(crate) job: &'a J,
    pub(crate) ctx: &'a C,
    pub(crate) state: Arc<Shortcircuit>,
    pub(crate) config: Config,
    /// Where tasks count the items they process, when someone watches; it
    /// asks them for fresh counts through the run's pulse.
    pub(crate) tally: Option<&'a Tally>,
    /// A panic outside the items and the job (on rank 0 of an MPI run, in
    /// what watches the run): it aborts the run and is its result.
    failure: Mutex<Option<Panic>>,
    _item: PhantomData<fn(T)>,
}

impl<'a, T, J: MapReduce<T, C>, C: ?Sized> Run<'a, T, J, C> {
    pub(crate) fn new(
        job: &'a J,
        ctx: &'a C,
        config: Config,
        state: Arc<Shortcircuit>,
        tally: Option<&'a Tally>,
    ) -> Self {
        if let Some(tally) = tally {
            tally.follow(&state);
        }
        Run {
            job,
            ctx,
            state,
            config,
            tally,
            failure: Mutex::new(None),
            _item: PhantomData,
        }
    }

    /// Run user code as the task at `position`: with the run's config and
    /// cancellation visible, and its panic caught.
    pub(crate) fn guarded<R>(&self, position: usize, f: impl FnOnce() -> R) -> std::thread::Result<R> {
        let _frame = TaskFrame::enter(Token::new(Arc::clone(&self.state), position), &self.config);
        catch_unwind(AssertUnwindSafe(f))
    }

    /// What a panic of the task at `position` means for the run: nothing if
    /// the task was already cancelled (its work could not matter), else an
    /// event that cancels the work right of it.
    pub(crate) fn settle_panic<A>(
        &self,
        position: usize,
        index: Option<usize>,
        payload: Box<dyn std::any::Any + Send>,
        prefix: Option<A>,
    ) -> Part<A> {
        if self.state.is_past(position) {
            Part::Skipped
        } else {
            log::trace!("panic at item {index:?} (task position {position})");
            self.state.record_event(position);
            Part::Failed {
                panic: Panic::new(index, payload),
                prefix,
            }
        }
    }

    /// Join two adjacent pieces, `left` before `right`: the leftmost event
    /// wins, as it would in a sequential run. A panic is an event at its
    /// stretch, not before it: when everything left of it is done, the
    /// items folded before it are merged in too, and a `Break` that merge
    /// finds wins over the panic.
    pub(crate) fn join(&self, left: Piece<J::Acc>, right: Piece<J::Acc>) -> Piece<J::Acc> {
        let position = left.position;
        let part = match (left.part, right.part) {
            (event @ (Part::Broke(_) | Part::Failed { .. }), _) => event,
            (Part::Skipped, event @ (Part::Broke(_) | Part::Failed { .. })) => event,
            (Part::Skipped, _) | (Part::Done(_), Part::Skipped) => Part::Skipped,
            (Part::Done(l), Part::Done(r)) => match self.merge(position, l, r, false) {
                Merged::Flow(Continue(acc)) => Part::Done(acc),
                Merged::Flow(Break(acc)) => {
                    // The merged stretch ends the run: everything right of
                    // its right half (which is complete) is cancelled.
                    self.state.record_event(right.position);
                    Part::Broke(acc)
                }
                Merged::Failed(part) => part,
                Merged::Aborted => Part::Skipped,
            },
            (Part::Done(l), Part::Broke(r)) => match self.merge(position, l, r, true) {
                Merged::Flow(Continue(acc) | Break(acc)) => Part::Broke(acc),
                Merged::Failed(part) => part,
                Merged::Aborted => Part::Skipped,
            },
            // The right part lost its prefix (a panic in `process_result` or
            // `merge` consumed it), but `l` is a prefix of the joined stretch
            // too: every item of it lies left of the failure, so a `Break`
            // that a merge with `l` finds further left is one the sequential
            // run meets first.
            (Part::Done(l), Part::Failed { panic, prefix: None }) => Part::Failed { panic, prefix: Some(l) },
            (Part::Done(l), Part::Failed { panic, prefix: Some(r) }) => match self.merge(position, l, r, true) {
                Merged::Flow(Continue(acc)) => Part::Failed {
                    panic,
                    prefix: Some(acc),
                },
                Merged::Flow(Break(acc)) => {
                    self.state.record_event(right.position);
                    Part::Broke(acc)
                }
                Merged::Failed(part) => part,
                Merged::Aborted => Part::Skipped,
            },
        };
        Piece { position, part }
    }

    /// `merge` of the stretch starting at `position`, unless the run is
    /// aborted. A panic in it is an event at that stretch, like a panic in
    /// one of its items: a `Break` or panic left of it still wins, and what
    /// lies right of it (where the answer cannot be) is cancelled. So a
    /// merge that would panic only right of the answer never changes it.
    /// When `right` holds an event (it broke or failed), the merge carried
    /// that event: its panic fails the stretch even where every task counts
    /// as cancelled (any order), or the event would be lost with it.
    fn merge(&self, position: usize, left: J::Acc, right: J::Acc, right_has_event: bool) -> Merged<J::Acc> {
        if self.state.is_aborted() {
            return Merged::Aborted;
        }
        match self.guarded(position, || self.job.merge(left, right)) {
            Ok(flow) => Merged::Flow(flow),
            Err(payload) if right_has_event => {
                self.state.record_event(position);
                Merged::Failed(Part::Failed {
                    panic: Panic::new(None, payload),
                    prefix: None,
                })
            }
            Err(payload) => Merged::Failed(self.settle_panic(position, None, payload, None)),
        }
    }

    /// Abort the run with `panic` as its result (the first one stays).
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) fn fail(&self, panic: Panic) {
        self.failure.lock().get_or_insert(panic);
        self.state.abort();
    }

    /// The panic that aborted the run, taken out of it: a rank other than 0
    /// of an MPI run reports it as the outcome of the block it happened in.
    #[cfg(feature = "mpi")]
    pub(crate) fn take_failure(&self) -> Option<Panic> {
        self.failure.lock().take()
    }

    /// The answer of the run, `outcome`, unless the run was aborted: then
    /// the panic that aborted it, or its cancellation.
    pub(crate) fn settle(
        &self,
        outcome: Result<ControlFlow<J::Acc, J::Acc>, Error>,
    ) -> Result<ControlFlow<J::Acc, J::Acc>, Error> {
        if let Some(panic) = self.failure.lock().take() {
            return Err(panic.into());
        }
        if self.state.is_stopped() {
            return Err(Error::Stopped {
                done: 0,
                checkpoint: None,
            });
        }
        if self.state.is_aborted() {
            // Only a cancelled parent aborts a run without a failure or a stop.
            return Err(Error::Cancelled);
        }
        outcome
    }

    /// The answer of the run, from the piece that covers all of it.
    pub(crate) fn finish(&self, piece: Piece<J::Acc>) -> Result<ControlFlow<J::Acc, J::Acc>, Error> {
        self.settle(match piece.part {
            Part::Done(acc) => Ok(Continue(acc)),
            Part::Broke(acc) => Ok(Break(acc)),
            Part::Failed { panic, .. } => Err(panic.into()),
            // A skipped piece has an event left of it, and the leftmost
            // event survives every join: a whole run is skipped only when
            // the event lies before its items (a streamed batch after the
            // batch that broke), and then its result cannot matter.
            Part::Skipped => Err(Error::Cancelled),
        })
    }
}
