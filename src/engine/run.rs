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
    /// A panic ended the stretch: nothing right of it matters.
    Failed(Panic),
    /// The stretch was cancelled: an event left of it ended the run (or the
    /// run aborted), so its items cannot matter.
    Skipped,
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
    /// Where tasks count the items they process, when someone watches.
    pub(crate) tally: Option<&'a Tally>,
    /// A panic outside the items (in `merge`; on rank 0 of an MPI run, also
    /// in what watches the run): it aborts the run and is its result.
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
    ) -> Part<A> {
        if self.state.is_past(position) {
            Part::Skipped
        } else {
            self.state.record_event(position);
            Part::Failed(Panic::new(index, payload))
        }
    }

    /// Join two adjacent pieces, `left` before `right`: the leftmost event
    /// wins, as it would in a sequential run.
    pub(crate) fn join(&self, left: Piece<J::Acc>, right: Piece<J::Acc>) -> Piece<J::Acc> {
        let part = match (left.part, right.part) {
            (event @ (Part::Broke(_) | Part::Failed(_)), _) => event,
            (Part::Skipped, event @ (Part::Broke(_) | Part::Failed(_))) => event,
            (Part::Skipped, _) | (Part::Done(_), Part::Skipped) => Part::Skipped,
            (Part::Done(_), failed @ Part::Failed(_)) => failed,
            (Part::Done(l), Part::Done(r)) => match self.merge(left.position, l, r) {
                Some(Continue(acc)) => Part::Done(acc),
                Some(Break(acc)) => {
                    // The merged stretch ends the run: everything right of
                    // its right half (which is complete) is cancelled.
                    self.state.record_event(right.position);
                    Part::Broke(acc)
                }
                None => Part::Skipped,
            },
            (Part::Done(l), Part::Broke(r)) => match self.merge(left.position, l, r) {
                Some(Continue(acc) | Break(acc)) => Part::Broke(acc),
                None => Part::Skipped,
            },
        };
        Piece {
            position: left.position,
            part,
        }
    }

    /// `merge`, unless the run is aborted; a panic aborts it.
    fn merge(&self, position: usize, left: J::Acc, right: J::Acc) -> Option<ControlFlow<J::Acc, J::Acc>> {
        if self.state.is_aborted() {
            return None;
        }
        match self.guarded(position, || self.job.merge(left, right)) {
            Ok(flow) => Some(flow),
            Err(payload) => {
                log::debug!("merge panicked: the run is aborted");
                self.fail(Panic::new(None, payload));
                None
            }
        }
    }

    /// Abort the run with `panic` as its result (the first one stays).
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

    /// The answer of the run, from the piece that covers all of it.
    pub(crate) fn finish(&self, piece: Piece<J::Acc>) -> Result<ControlFlow<J::Acc, J::Acc>, Error> {
        if let Some(panic) = self.failure.lock().take() {
            return Err(panic.into());
        }
        if self.state.is_aborted() {
            // Only a cancelled parent aborts a run without a failure.
            return Err(Error::Cancelled);
        }
        match piece.part {
            Part::Done(acc) => Ok(Continue(acc)),
            Part::Broke(acc) => Ok(Break(acc)),
            Part::Failed(panic) => Err(panic.into()),
            // A skipped piece has an event left of it, and the leftmost
            // event survives every join: a whole run is skipped only when
            // the event lies before its items (a streamed batch after the
            // batch that broke), and then its result cannot matter.
            Part::Skipped => Err(Error::Cancelled),
        }
    }
}
