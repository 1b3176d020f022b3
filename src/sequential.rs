//! Sequential runs on the calling thread (PyPhi: `run_sequential`).

use std::ops::ControlFlow::{self, Break, Continue};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::cancel::{self, Token};
use crate::config::Config;
use crate::engine::into_value;
use crate::error::{catch_panic, Error, Panic};
use crate::job::MapReduce;

/// Sequential run on the calling thread, holding at most the accumulator and
/// one new result at a time (PyPhi: `run_sequential`). It is the reference
/// every parallel run is measured against: panics are caught and reported as
/// [`Error::Panicked`] naming the item, exactly as in parallel runs.
///
/// ```
/// use mapreduce::{jobs, seq_map_reduce};
///
/// let squares = seq_map_reduce(1..=4, &(), jobs::collect(|x: i32, _: &()| x * x)).unwrap();
/// assert_eq!(squares, [1, 4, 9, 16]);
/// ```
pub fn seq_map_reduce<I, C, J>(items: I, ctx: &C, job: J) -> Result<J::Acc, Error>
where
    I: IntoIterator,
    C: ?Sized,
    J: MapReduce<I::Item, C>,
{
    Config::current().check()?;
    fold(items.into_iter(), ctx, &job).map(into_value)
}

/// Fold `items` on this thread. Nested in a task, it gives up with
/// [`Error::Cancelled`] once that task is cancelled.
pub(crate) fn fold<I, C, J>(items: I, ctx: &C, job: &J) -> Result<ControlFlow<J::Acc, J::Acc>, Error>
where
    I: Iterator,
    C: ?Sized,
    J: MapReduce<I::Item, C>,
{
    let parent: Option<Token> = cancel::current_token();
    let acc = catch_panic(|| job.empty_result(ctx))?;
    let mut folded = 0usize;
    let counter = &mut folded;
    let flow = catch_unwind(AssertUnwindSafe(move || {
        let mut acc = acc;
        for item in items {
            if parent.as_ref().is_some_and(Token::is_cancelled) {
                return Err(Error::Cancelled);
            }
            match job.process_result(job.compute(item, ctx), acc) {
                Continue(next) => acc = next,
                Break(last) => return Ok(Break(last)),
            }
            *counter += 1;
        }
        Ok(Continue(acc))
    }));
    flow.unwrap_or_else(|payload| Err(Panic::new(Some(folded), payload).into()))
}
