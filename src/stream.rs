//! Parallel runs over plain iterators of any length (PyPhi turned the whole
//! iterable into a list; this reads it in bounded batches).
//!
//! The calling thread reads the iterator, in order, into a batch while the
//! pool folds the previous two; batch results are merged in order. Three
//! batch buffers are reused for the whole run, so memory stays flat however
//! long the iterator is.

use std::ops::ControlFlow::{self, Continue};
use std::panic::{catch_unwind, AssertUnwindSafe};

use rayon::iter::ParallelDrainRange;

use std::sync::Arc;

use parking_lot::Mutex;

use crate::cancel::{self, Shortcircuit, TaskFrame};
use crate::config::Config;
use crate::engine::{self, into_value, Part, Piece, Run};
use crate::error::{catch_panic, Error, Panic};
use crate::job::MapReduce;
use crate::pool;
use crate::progress::{self, Finished, Monitor, Tally};
use crate::sequential;

/// The largest batch, in bytes of items: three such buffers are all the memory
/// a streamed run holds.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Batch lengths stay within these bounds, whatever the item size.
const MIN_BATCH_LEN: usize = 1024;
const MAX_BATCH_LEN: usize = 1 << 20;
/// The first batch per worker: small, so slow items start in parallel soon.
const FIRST_BATCH_PER_WORKER: usize = 64;
/// While reading, how often to look whether the batch being folded has
/// ended the run.
const READ_CHECK_EVERY: usize = 1024;

/// Parallel run over a plain `Iterator` of any length, even unbounded until
/// a `Break`: read in order, in bounded batches, on the calling thread (the
/// iterator need not be `Send`); memory does not grow with the length; same
/// result as [`seq_map_reduce`](crate::seq_map_reduce). Reading stops soon
/// after a `Break` (at most two batches ahead).
///
/// ```
/// use mapreduce::{jobs, par_map_reduce_iter};
///
/// // An endless generator: the first n whose square ends in 444.
/// let found = par_map_reduce_iter(1u64.., &(), jobs::find_first(|n: &u64, _: &()| n * n % 1000 == 444)).unwrap();
/// assert_eq!(found, Some(38));
/// ```
pub fn par_map_reduce_iter<I, C, J>(items: I, ctx: &C, job: J) -> Result<J::Acc, Error>
where
    I: IntoIterator,
    I::Item: Send,
    C: Sync + ?Sized,
    J: MapReduce<I::Item, C>,
{
    let config = Config::current();
    config.check()?;
    if !config.parallel() {
        return sequential::fold(items.into_iter(), ctx, &job).map(into_value);
    }
    let workers = config.num_workers()?;
    let description = engine::description_of(&job)?;
    log::debug!("streamed run {description:?}: {workers} worker(s)");
    stream(items.into_iter(), ctx, &job, &description, config, workers)
}

fn stream<I, C, J>(
    items: I,
    ctx: &C,
    job: &J,
    description: &str,
    config: Config,
    workers: usize,
) -> Result<J::Acc, Error>
where
    I: Iterator,
    I::Item: Send,
    C: Sync + ?Sized,
    J: MapReduce<I::Item, C>,
{
    let total = match items.size_hint() {
        (lower, Some(upper)) if lower == upper => Some(lower),
        _ => None,
    };
    let tally = Tally::new();
    let mut monitor = Monitor::for_run(&config, description, total);
    let child = progress::child_for_run(&config, description, total);
    let watched = match (&monitor, &child) {
        (Some(_), _) => Some(&tally),
        (None, Some(child)) => Some(child.tally()),
        (None, None) => None,
    };
    let outcome = fold_batches(items, ctx, job, &config, workers, watched, &mut monitor);
    if let Some(monitor) = monitor {
        monitor.finish(&tally, &outcome);
    }
    engine::log_outcome(description, &outcome);
    outcome.map(into_value)
}

/// Batches folded at once while the next one is read: the pool never waits
/// for the tail of one batch before starting on the next.
const IN_FLIGHT: usize = 2;

/// Where a batch folded on the pool leaves its result and its buffer.
struct Slot<T, A> {
    folded: Mutex<Option<Folded<T, A>>>,
    finished: Finished,
}

/// A folded batch: what came of it, and its emptied buffer for reuse.
type Folded<T, A> = (Piece<A>, Vec<T>);

/// Read batches in order and fold them on the pool, `IN_FLIGHT` at a time,
/// joining their pieces in order. All batches share one run, whose task
/// positions are the items' indices, so a `Break` in one batch cancels the
/// batches after it at once, and batches join by the same rules as the
/// tasks inside one batch: the stream's answer is the one a single batch of
/// all its items would give.
fn fold_batches<I, C, J>(
    items: I,
    ctx: &C,
    job: &J,
    config: &Config,
    workers: usize,
    tally: Option<&Tally>,
    monitor: &mut Option<Monitor>,
) -> Result<ControlFlow<J::Acc, J::Acc>, Error>
where
    I: Iterator,
    I::Item: Send,
    C: Sync + ?Sized,
    J: MapReduce<I::Item, C>,
{
    let state = Shortcircuit::new(config.deterministic(), cancel::current_token());
    let run = Run::new(job, ctx, config.clone(), Arc::clone(&state), tally);
    let slots: [Slot<I::Item, J::Acc>; IN_FLIGHT] = std::array::from_fn(|_| Slot {
        folded: Mutex::new(None),
        finished: Finished::new(),
    });
    let mut reader = Reader { items, read: 0 };
    // The pieces of the batches joined so far, in order.
    let mut joined: Option<Piece<J::Acc>> = None;
    // Inside a task, this thread is one of the pool's workers: it must not
    // block on a signal, or a pool whose workers all do so would deadlock.
    let nested = pool::on_our_worker();
    let outcome = pool::in_place_scope(workers, true, |scope| {
        let mut batch_len = (FIRST_BATCH_PER_WORKER * workers).min(max_batch_len::<I::Item>());
        let mut spare: Vec<Vec<I::Item>> = Vec::new();
        // The slots of the batches spawned and not merged yet, oldest first.
        let mut pending = std::collections::VecDeque::new();
        let mut spawned = 0usize;
        // A panic in the input, reported once the batches before it merged.
        let mut read_error = None;
        let mut input_done = false;
        loop {
            while !input_done && pending.len() < IN_FLIGHT {
                let mut batch = spare.pop().unwrap_or_default();
                let first_index = reader.read;
                let asked = batch_len;
                batch.reserve(asked);
                let read = reader.fill(&mut batch, asked, Some((&state, &mut *monitor, tally)));
                batch_len = (batch_len * 2).min(max_batch_len::<I::Item>());
                if let Err(err) = read {
                    read_error = Some(err);
                }
                // A short batch ends the input; after an event, nothing
                // further right can matter.
                input_done = read_error.is_some() || batch.len() < asked || state.has_event();
                if batch.is_empty() {
                    input_done = true;
                    continue;
                }
                let slot = &slots[spawned % IN_FLIGHT];
                slot.finished.reset();
                let run = &run;
                let fold = move || {
                    let _signal = slot.finished.on_drop();
                    // While this batch's joins wait, stolen work of other
                    // tasks may run on this thread: it is no task of ours.
                    let _outside = TaskFrame::outside(&run.config);
                    let folded = engine::drive_piece(batch.par_drain(..), run, Some(first_index));
                    *slot.folded.lock() = Some((folded, batch));
                };
                if nested {
                    // This thread is a worker: it folds the batch itself,
                    // joining in, rather than block waiting for the pool.
                    fold();
                } else {
                    scope.spawn(move |_| fold());
                }
                pending.push_back(spawned % IN_FLIGHT);
                spawned += 1;
            }
            let Some(oldest) = pending.pop_front() else {
                // Every batch is in: the answer, unless the input panicked
                // (after the items read before it, which decide nothing).
                return match (joined.take(), read_error) {
                    (_, Some(err)) => Err(err),
                    (Some(piece), None) => run.finish(piece),
                    (None, None) => catch_panic(|| job.empty_result(ctx)).map(Continue),
                };
            };
            let slot = &slots[oldest];
            match (monitor.as_mut(), tally) {
                (Some(monitor), Some(tally)) => monitor.watch(tally, &slot.finished),
                _ => slot.finished.wait_done(),
            }
            let (piece, buffer) = slot
                .folded
                .lock()
                .take()
                .unwrap_or_else(|| unreachable!("a batch signals only after leaving its result"));
            spare.push(buffer);
            let piece = match joined.take() {
                Some(left) => run.join(left, piece),
                None => piece,
            };
            if matches!(piece.part, Part::Broke(_) | Part::Failed { .. }) {
                // Every batch left of this event is joined: it is the answer.
                let outcome = run.finish(piece);
                // Stop the batches still in flight: their items cannot matter.
                state.abort();
                return outcome;
            }
            joined = Some(piece);
        }
    })?;
    outcome
}

/// The longest batch for items of type `T`.
fn max_batch_len<T>() -> usize {
    (MAX_BATCH_BYTES / std::mem::size_of::<T>().max(1)).clamp(MIN_BATCH_LEN, MAX_BATCH_LEN)
}

/// Reads the user's iterator, counting what it has read.
struct Reader<I> {
    items: I,
    read: usize,
}

impl<I: Iterator> Reader<I> {
    /// Append up to `len` items to `batch`; stop early once the batch being
    /// folded (`folding`) has ended the run, and keep its progress display
    /// live meanwhile. A panic in the iterator is reported with the index of
    /// the item being read.
    fn fill(&mut self, batch: &mut Vec<I::Item>, len: usize, folding: Option<Folding<'_>>) -> Result<(), Error> {
        let items = &mut self.items;
        let mut folding = folding;
        let start = batch.len();
        let read = catch_unwind(AssertUnwindSafe(|| {
            while batch.len() < len {
                if let Some((state, monitor, tally)) = &mut folding {
                    if state.has_event() {
                        return;
                    }
                    if let (Some(monitor), Some(tally)) = (monitor.as_mut(), tally) {
                        monitor.tick(tally);
                    }
                }
                // A chunk at a time: `extend` copies without per-item checks.
                let chunk = READ_CHECK_EVERY.min(len - batch.len());
                let before = batch.len();
                batch.extend(items.by_ref().take(chunk));
                if batch.len() - before < chunk {
                    return;
                }
            }
        }));
        // `Vec::extend` keeps what it pushed before a panic: the panicking
        // item is the next one.
        self.read += batch.len() - start;
        read.map_err(|payload| Panic::new(Some(self.read), payload).into())
    }
}

/// What the reader looks at while a batch is folded: the batch's state, and
/// the run's progress display.
type Folding<'a> = (&'a Shortcircuit, &'a mut Option<Monitor>, Option<&'a Tally>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_bounded_in_bytes_and_length() {
        assert_eq!(max_batch_len::<u64>(), 512 * 1024);
        assert_eq!(max_batch_len::<()>(), MAX_BATCH_LEN);
        assert_eq!(max_batch_len::<[u8; 1 << 20]>(), MIN_BATCH_LEN);
    }
}
