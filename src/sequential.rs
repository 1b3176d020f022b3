//! Sequential runs on the calling thread (PyPhi: `run_sequential`).
//!
//! The thread that folds is the one that started the run, so when someone
//! watches it (a bar, a sink) it also draws, between runs of items sized
//! by the clock ([`Publisher`]): a separate copy of the loop, so
//! that unwatched runs fold exactly as they did without any of this.

use std::ops::ControlFlow::{self, Break, Continue};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::cancel::{self, Shortcircuit, Token};
use crate::config::Config;
use crate::engine::{description_of, into_value};
use crate::error::{catch_panic, Error, Panic};
use crate::job::MapReduce;
use crate::progress::{Monitor, Publisher, Tally};

/// Sequential run on the calling thread, holding at most the accumulator and
/// one new result at a time (PyPhi: `run_sequential`). It is the reference
/// every parallel run is measured against: panics are caught and reported as
/// [`Error::Panicked`] naming the item, exactly as in parallel runs.
///
/// It shows the same progress bar as a parallel run (and tells the same
/// [`ProgressSink`](crate::ProgressSink)): the job's description, items done,
/// the total when the iterator's `size_hint` is exact, rate and ETA. The
/// bar is drawn by this thread between runs of items, so an item that takes
/// seconds holds it still meanwhile. Nested in a task, it draws nothing.
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
    let config = Config::current();
    config.check()?;
    let items = catch_panic(|| items.into_iter())?;
    run(items, ctx, &job, &config).map(into_value)
}

/// A sequential run of `job` over `items` under `config`, on this thread:
/// watched (see [`watched`]) when someone watches it, else a plain
/// [`fold`].
fn run<I, C, J>(items: I, ctx: &C, job: &J, config: &Config) -> Result<ControlFlow<J::Acc, J::Acc>, Error>
where
    I: Iterator,
    C: ?Sized,
    J: MapReduce<I::Item, C>,
{
    // Stopped by a handle or a deadline: looked at per item.
    let stop = crate::stop::watched_state(config);
    let stop = stop.as_deref();
    if Monitor::wanted(config) {
        watched(items, ctx, job, config, stop)
    } else {
        fold(items, ctx, job, stop)
    }
}

/// A watched sequential run: the job's description and the iterator's
/// exact length (its `size_hint`, asked once) go to the monitor, which this
/// thread ticks between runs of items ([`fold_watched`]).
#[inline(never)]
fn watched<I, C, J>(
    items: I,
    ctx: &C,
    job: &J,
    config: &Config,
    stop: Option<&Shortcircuit>,
) -> Result<ControlFlow<J::Acc, J::Acc>, Error>
where
    I: Iterator,
    C: ?Sized,
    J: MapReduce<I::Item, C>,
{
    let hint = description_of(job).and_then(|description| Ok((description, catch_panic(|| items.size_hint())?)));
    let (description, hint) = match hint {
        Ok(found) => found,
        Err(err) => {
            // The first failure is the one reported; the iterator's drop is
            // the user's code too.
            let _ = release(items);
            return Err(err);
        }
    };
    let total = match hint {
        (lower, Some(upper)) if lower == upper => Some(lower),
        _ => None,
    };
    let Some(mut monitor) = Monitor::for_run(config, &description, total) else {
        return fold(items, ctx, job, stop);
    };
    let tally = Tally::new();
    let outcome = if monitor.failed() {
        // The sink panicked as the run started: nothing runs.
        release(items).and(Err(Error::Cancelled))
    } else {
        fold_watched(items, ctx, job, &tally, &mut monitor, stop)
    };
    // The sink's panic, if it panicked, in place of the cancellation.
    monitor.finish(&tally, outcome)
}

/// Drop the user's iterator, a panic in its `drop` caught: dropping it while
/// another panic unwinds would abort the process.
fn release<I>(items: I) -> Result<(), Error> {
    catch_panic(move || drop(items))
}

/// The outcome of a fold, and then the iterator's drop: a panic there fails
/// a run that had not failed already.
fn and_release<I, A>(outcome: Result<A, Error>, items: I) -> Result<A, Error> {
    match (outcome, release(items)) {
        (Ok(_), Err(err)) => Err(err),
        (outcome, _) => outcome,
    }
}

/// Fold `items` on this thread. Nested in a task, it gives up with
/// [`Error::Cancelled`] once that task is cancelled; with [`Error::Stopped`]
/// once `stop` is.
fn fold<I, C, J>(items: I, ctx: &C, job: &J, stop: Option<&Shortcircuit>) -> Result<ControlFlow<J::Acc, J::Acc>, Error>
where
    I: Iterator,
    C: ?Sized,
    J: MapReduce<I::Item, C>,
{
    let parent: Option<Token> = cancel::current_token();
    let acc = match catch_panic(|| job.empty_result(ctx)) {
        Ok(acc) => acc,
        Err(err) => return release(items).and(Err(err)),
    };
    let mut folded = 0usize;
    let counter = &mut folded;
    // The iterator is only borrowed inside: if its `next` panics, it is not
    // dropped while that panic unwinds.
    let mut items = items;
    let iter = &mut items;
    let flow = catch_unwind(AssertUnwindSafe(move || {
        let mut acc = acc;
        for item in iter {
            if let Some(err) = interrupted(parent.as_ref(), stop) {
                return Err(err);
            }
            match job.process_result(job.compute(item, ctx), acc) {
                Continue(next) => acc = next,
                Break(last) => return Ok(Break(last)),
            }
            *counter += 1;
        }
        Ok(Continue(acc))
    }));
    let outcome = flow.unwrap_or_else(|payload| Err(Panic::new(Some(folded), payload).into()));
    and_release(outcome, items)
}

/// [`fold`] for a watched run: the same per-item loop over runs of items
/// whose length [`Publisher`] adapts so that the clock is read a few times a
/// second however fast the items are; between runs, the count is published
/// and the monitor ticked (it draws and tells the sink when it is time to).
/// Panics are reported with the index of the item, as by [`fold`].
fn fold_watched<I, C, J>(
    items: I,
    ctx: &C,
    job: &J,
    tally: &Tally,
    monitor: &mut Monitor,
    stop: Option<&Shortcircuit>,
) -> Result<ControlFlow<J::Acc, J::Acc>, Error>
where
    I: Iterator,
    C: ?Sized,
    J: MapReduce<I::Item, C>,
{
    let parent: Option<Token> = cancel::current_token();
    let acc = match catch_panic(|| job.empty_result(ctx)) {
        Ok(acc) => acc,
        Err(err) => return release(items).and(Err(err)),
    };
    let mut publisher = Publisher::new(tally);
    let progress = &mut publisher;
    let mut folded = 0usize;
    let counter = &mut folded;
    let mut items = items;
    let iter = &mut items;
    let flow = catch_unwind(AssertUnwindSafe(move || {
        let items = iter;
        let mut acc = acc;
        loop {
            let run_length = progress.next_run();
            let run_start = *counter;
            for item in items.by_ref().take(run_length) {
                if let Some(err) = interrupted(parent.as_ref(), stop) {
                    return Err(err);
                }
                match job.process_result(job.compute(item, ctx), acc) {
                    Continue(next) => acc = next,
                    Break(last) => {
                        // The item that broke was processed: it counts.
                        *counter += 1;
                        return Ok(Break(last));
                    }
                }
                *counter += 1;
            }
            if *counter - run_start < run_length {
                return Ok(Continue(acc));
            }
            progress.publish(*counter);
            monitor.tick(tally);
            if monitor.failed() {
                // The sink panicked: stop; the run fails with that panic.
                return Err(Error::Cancelled);
            }
        }
    }));
    publisher.flush(folded);
    let outcome = flow.unwrap_or_else(|payload| Err(Panic::new(Some(folded), payload).into()));
    and_release(outcome, items)
}

/// Why a sequential run must end before its next item, if it must: the
/// task it is nested in was cancelled, or someone stopped it.
#[inline]
fn interrupted(parent: Option<&Token>, stop: Option<&Shortcircuit>) -> Option<Error> {
    if parent.is_some_and(Token::is_cancelled) {
        return Some(Error::Cancelled);
    }
    if stop.is_some_and(Shortcircuit::is_stopped) {
        return Some(Error::Stopped {
            done: 0,
            checkpoint: None,
        });
    }
    None
}
