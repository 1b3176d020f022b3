//! Parallel runs over plain iterators of any length (PyPhi turned the whole
//! iterable into a list; this reads it in bounded batches).
//!
//! The calling thread reads the iterator, in order, into a batch while the
//! pool folds the batch before it. Batches hold leaves of the fixed tree
//! (see [`leaves`]), a leaf possibly spanning batches; the calling thread
//! pushes the leaves, in order, onto the tree's stack. The batch buffers
//! are allocated once, at their full length, and reused for the whole run,
//! so memory stays flat however long the iterator is.
//!
//! Copying an item into a batch and reading it back costs about as much as
//! a tiny item's own work, so while the pool folds its batches the calling
//! thread does not wait: it reads the leaves after them straight into their
//! folders and folds them itself, with no batch (`Reader::fold_in_place`),
//! until the pool is done with its oldest batch and needs the next one.
//! Batches are cut where a leaf ends for that (`Cursor::len_to_leaf_end`).
//! While it folds in place, this thread is one of the run's workers: the
//! pool's batches then go through a [`Lane`], one after another on the
//! other workers (`workers - 1` threads), each sized to take about
//! `LANE_BATCH_TIME` and to hold whole leaves (`Cursor::len_for_pool`), so
//! that the run keeps as many threads busy as it has workers, not one more
//! (on 2 cores, a third busy thread cost about a tenth of the wall clock).
//! Capped streams (the item in hand would be one more alive), durable ones
//! (whose batches are sized to their block time), runs on one worker and
//! items slower than `IN_PLACE_ITEM_TIME` (copying costs nothing next to
//! them, and an item folded here is one the pool may wait for) are only
//! read into batches, which the pool folds on all its workers.
//!
//! What a stream keeps in memory, and by which rule, is documented on
//! [`par_map_reduce_iter`] ("Memory"): at most `IN_FLIGHT` batches alive,
//! each of at most `max_batch_len` items (`batch_limits` under a
//! `Config::with_stream_buffer` cap), each handed over when full or after
//! `BATCH_READ_TIME` of reading (`Reader::fill`).

use std::cell::Cell;
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use rayon::iter::ParallelDrainRange;

use std::sync::Arc;

use parking_lot::Mutex;

use rayon::iter::plumbing::{Consumer, Folder};
use rayon::iter::IndexedParallelIterator;

use crate::cancel::{self, Shortcircuit, TaskFrame, FIRST_POSITION};
use crate::config::Config;
use crate::engine::prefix::{Done, Prefix};
use crate::engine::tree::{Event, Node, Stack, LEAF_MAX};
use crate::engine::{self, into_value, MapReduceConsumer, MapReduceFolder, Part, Run};
use crate::error::{catch_panic, Error, Panic};
use crate::job::MapReduce;
use crate::pool;
use crate::progress::{self, Finished, Monitor, Tally};

mod lane;
mod leaves;

#[cfg(feature = "durable")]
pub(crate) use leaves::StreamLeaves as Leaves;

use lane::Lane;
use leaves::{Cursor, Cut, FoldSegments, Segment, StreamLeaves};

/// The largest batch, in bytes of items inline (`size_of` each).
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Batch lengths stay within these bounds, whatever the item size (a
/// [`Config::with_stream_buffer`] cap may go lower).
const MIN_BATCH_LEN: usize = 64;
const MAX_BATCH_LEN: usize = 1 << 20;
/// The first batch per worker: small, so slow items start in parallel soon.
const FIRST_BATCH_PER_WORKER: usize = 64;
/// The time rule: a batch that has been read for this long is handed to the
/// workers once it holds an item per worker, full or not.
const BATCH_READ_TIME: Duration = Duration::from_millis(4);
/// The reader reads in chunks, and between two looks at the clock, at the
/// run's state and at its progress display; a chunk is sized to take about
/// this long, within `1..=MAX_CHUNK` items.
const CHUNK_TIME: Duration = Duration::from_micros(250);
/// The same for items read and folded in place, which also looks at
/// whether the pool is done with its oldest batch: shorter, so that the
/// pool's next batch is read soon after.
const IN_PLACE_CHUNK_TIME: Duration = Duration::from_micros(25);
/// While this thread folds in place, the pool's batches (through a
/// [`Lane`]) are sized to take about this long: long enough that handing
/// one over costs little, short enough that the last one does not keep
/// this thread waiting long at the end of the input.
const LANE_BATCH_TIME: Duration = Duration::from_micros(250);
/// The longest chunk: `Vec::extend` reads it without per-item checks.
const MAX_CHUNK: usize = 1024;
/// The calling thread folds items in place only while they take less than
/// this each (on average over a chunk): copying costs nothing next to
/// slower items, and an item folded here is one the pool may wait for.
const IN_PLACE_ITEM_TIME: Duration = Duration::from_micros(10);

/// Parallel run over a plain `Iterator` of any length, even unbounded until
/// a `Break`: read in order, in bounded batches, on the calling thread (the
/// iterator need not be `Send`), which also folds fast items itself, read in
/// place, as one of the run's workers while the pool folds the batches on
/// the others; memory does not grow with the length; same result as
/// [`seq_map_reduce`](crate::seq_map_reduce) for jobs whose merge law
/// holds. Reading stops soon after a `Break` (at most two batches ahead,
/// and the fast items this thread folded in place before the `Break` was
/// known).
///
/// **The same bits everywhere.** Items are folded in leaves joined by the
/// fixed tree of the crate docs ("Reproducible reductions"), so the answer
/// does not depend on the workers, the batches or the timing. A stream whose
/// `size_hint` is exact has the leaves an indexed input of that length would
/// have, so it answers the bits of [`par_map_reduce_in_order`](crate::par_map_reduce_in_order)
/// over the same items; a stream of unknown length has leaves that grow with
/// position (1 item each for the first 16, then doubling every 16 leaves up
/// to 16,384). [`Config::with_leaf_size`](crate::Config::with_leaf_size)
/// fixes them. Under `with_parallel(false)` the same tree is folded on the
/// calling thread.
///
/// ```
/// use mapreduce::{jobs, par_map_reduce_iter};
///
/// // An endless generator: the first n whose square ends in 444.
/// let found = par_map_reduce_iter(1u64.., &(), jobs::find_first(|n: &u64, _: &()| n * n % 1000 == 444)).unwrap();
/// assert_eq!(found, Some(38));
/// ```
///
/// # Memory
///
/// What a stream keeps of its input: at most `N` batches alive at once (one
/// being read while the one before it is folded, or two being folded while
/// the reader waits), each of at most `L` items, so at most `N × L` items.
/// Each item takes `size_of::<T>()` bytes inline in its batch plus whatever
/// it owns (a `Vec`'s heap buffer, a file handle). A worker takes an item
/// from its batch to hand it to `compute`, which owns it from then on (and
/// drops it on return, unless its output keeps it). While the pool folds
/// batches, the calling thread may fold the items after them itself, one at
/// a time straight from the iterator, without a batch: one item more in
/// `compute` (not under a [`Config::with_stream_buffer`] cap, which then
/// counts every item alive).
///
/// - **Automatically** (the default): `N = 2` and
///   `L = clamp(4 MiB / size_of::<T>(), 64, 2^20)`, so the batches take at
///   most 8 MiB inline (more only for items over 64 KiB inline). The first
///   batch holds at most 64 items per worker, each next one at most twice
///   as many as the one before, up to `L`.
/// - **The time rule:** the reader hands a batch to the workers when it is
///   full *or* once it has been reading it for 4 ms and it holds at least
///   one item per worker (or `L` items, when `L` is smaller). A stream whose
///   reading is the bottleneck (each item is built, parsed or copied as it
///   is read) so holds about 2 × 4 ms worth of items, or two items per
///   worker when reading one takes longer, whatever the items own. The
///   reader looks at the clock between chunks of reads, each sized to take
///   about 0.25 ms at the rate seen so far (1 to 1024 items), so a batch
///   overshoots 4 ms by about one chunk (more only when items suddenly
///   become much slower to read).
/// - **When reading is fast and folding slow**, batches fill to `L` items
///   before 4 ms pass, and only `L` bounds them: items that are small inline
///   but own much can then hold `2 × L` times what each owns. For them,
///   [`Config::with_stream_buffer`]`(n)` (or `MAPREDUCE_STREAM_BUFFER=n`)
///   caps the items in flight: `N = min(2, n)` and `L = min(n / N,` the
///   automatic `L)`, so at most `n` items are alive at once, those inside
///   `compute` included (not counting any a `compute` keeps in its output).
///
/// With a cap of 4 items, these 64 records of 1 MiB never take more than
/// 4 MiB at once:
///
/// ```
/// use mapreduce::{jobs, par_map_reduce_iter, Config};
///
/// let records = (0..64u32).map(|i| vec![i; 1 << 18]); // 1 MiB each
/// let sums = Config::current()
///     .with_stream_buffer(4)
///     .scope(|| par_map_reduce_iter(records, &(), jobs::collect(|r: Vec<u32>, _: &()| r.iter().sum::<u32>())))
///     .unwrap();
/// assert_eq!(sums, (0..64).map(|i| i << 18).collect::<Vec<u32>>());
/// ```
///
/// # Errors
///
/// Those of [`par_map_reduce`](crate::par_map_reduce), and a panic in the
/// iterator is an [`Error::Panicked`] too: while reading (in `next`), with
/// the index of the item being read; in `into_iter`, in `size_hint` (asked
/// once, before reading, for the progress total) or in the iterator's
/// `drop`, without an index ([`Error::index`] is `None`: no item is to
/// blame).
///
/// ```
/// use mapreduce::{jobs, par_map_reduce_iter, Error};
///
/// struct Moody;
/// impl Iterator for Moody {
///     type Item = u64;
///     fn next(&mut self) -> Option<u64> { None }
///     fn size_hint(&self) -> (usize, Option<usize>) { panic!("no idea") }
/// }
///
/// # std::panic::set_hook(Box::new(|_| {}));
/// let err = par_map_reduce_iter(Moody, &(), jobs::count(|_: &u64, _: &()| true)).unwrap_err();
/// assert!(matches!(err, Error::Panicked { index: None, .. }));
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
    let workers = if config.parallel() { config.num_workers()? } else { 1 };
    let description = engine::description_of(&job)?;
    // The iterator is the user's code from `into_iter` to its drop.
    let items = catch_panic(|| items.into_iter())?;
    // With `parallel` off, the same tree on one worker: the reference.
    log::debug!("streamed run {description:?}: {workers} worker(s)");
    stream(items, ctx, &job, &description, config, workers)
}

/// Drop the user's iterator, a panic in its `drop` caught.
pub(crate) fn release<I>(items: I) -> Result<(), Error> {
    catch_panic(move || drop(items))
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
    let mut items = items;
    let total = match exact_len(&mut items) {
        Ok(total) => total,
        Err(panic) => {
            // The first failure is the one reported.
            let _ = release(items);
            return Err(panic);
        }
    };
    stream_from(
        items,
        ctx,
        job,
        description,
        config,
        workers,
        Start { total, prefix: None },
    )
}

/// The exact length of a stream, if its `size_hint` says so (asked once).
pub(crate) fn exact_len<I: Iterator>(items: &mut I) -> Result<Option<usize>, Error> {
    catch_panic(|| match items.size_hint() {
        (lower, Some(upper)) if lower == upper => Some(lower),
        _ => None,
    })
}

/// Where a stream starts: its length, if known when it began, and for a
/// durable run, the prefix to resume after (whose items `items` no longer
/// holds) and that hears of the progress.
pub(crate) struct Start<'p, A> {
    pub(crate) total: Option<usize>,
    pub(crate) prefix: Option<&'p mut dyn Prefix<A>>,
}

/// A stream of `items` from where `start` says.
pub(crate) fn stream_from<I, C, J>(
    items: I,
    ctx: &C,
    job: &J,
    description: &str,
    config: Config,
    workers: usize,
    start: Start<'_, J::Acc>,
) -> Result<J::Acc, Error>
where
    I: Iterator,
    I::Item: Send,
    C: Sync + ?Sized,
    J: MapReduce<I::Item, C>,
{
    let started = std::time::Instant::now();
    let Start { total, mut prefix } = start;
    let resume = prefix.as_deref_mut().map(|prefix| prefix.start());
    let tally = Tally::new();
    if let Some((done, _)) = &resume {
        tally.add(done.items);
    }
    let mut monitor = Monitor::for_run(&config, description, total);
    if let (Some(monitor), Some((done, _))) = (monitor.as_mut(), &resume) {
        monitor.resumes_after(done.items);
    }
    let child = progress::child_for_run(&config, description, total);
    let watched = match (&monitor, &child) {
        (Some(_), _) => Some(&tally),
        (None, Some(child)) => Some(child.tally()),
        (None, None) => None,
    };
    let leaves = StreamLeaves::new(config.leaf_size(), total);
    let durable = Durable { resume, prefix };
    // Owned where it is read, so that folding in place can take it by value.
    let mut items = Some(items);
    let outcome = fold_batches(
        &mut items,
        ctx,
        job,
        &config,
        workers,
        (leaves, total),
        watched,
        &mut monitor,
        durable,
    );
    let outcome = match release(items) {
        Err(panic) if outcome.is_ok() => Err(panic),
        _ => outcome,
    };
    let outcome = match monitor {
        Some(monitor) => monitor.finish(&tally, outcome),
        None => outcome,
    };
    engine::log_outcome(description, started, &outcome);
    outcome.map(into_value)
}

/// A durable stream's prefix: where it resumes, and who hears of it.
struct Durable<'p, A> {
    resume: Option<(Done, Stack<A>)>,
    prefix: Option<&'p mut dyn Prefix<A>>,
}

/// Batches alive at once: one is read while the one before it is folded (or
/// two are folded while the reader waits), so the pool never waits for the
/// tail of one batch before starting on the next.
const IN_FLIGHT: usize = 2;

/// Where a batch folded on the pool leaves its result and its buffer.
struct Slot<T, A> {
    folded: Mutex<Option<Folded<T, A>>>,
    finished: Finished,
}

/// A folded batch: the parts of the leaves that start in it, in order, its
/// buffer, which still holds the items that continue an open leaf, and the
/// time its threads spent folding it, together.
type Folded<T, A> = (Vec<Part<A>>, Vec<T>, Duration);

/// A batch on its way: who folds it, and how it is cut into leaves.
struct Pending<A> {
    work: Work<A>,
    cut: Cut,
}

/// Who folds a batch.
enum Work<A> {
    /// The pool: the batch's slot, when it was handed over, and whether
    /// through the lane.
    Pool {
        slot: usize,
        spawned_at: Instant,
        laned: bool,
    },
    /// This thread, reading in place while the pool folded: the parts of
    /// the leaves that start in it, in order.
    Here(Vec<Part<A>>),
}

/// Read batches in order and fold them on the pool, `in_flight` at a time.
/// Each batch holds whole leaves and parts of leaves (see [`leaves`]): the
/// pool folds the leaves that start in it, in parallel; this thread goes on
/// with a leaf an earlier batch opened (its accumulator carried over), and
/// pushes the leaves, in order, onto the fixed tree's stack. All batches
/// share one run, whose task positions are the items' indices, so an event
/// in one batch cancels the batches after it at once. The answer is the
/// tree's: the same bits whatever the batches, the workers or the timing.
#[allow(clippy::too_many_arguments)]
fn fold_batches<I, C, J>(
    items: &mut Option<I>,
    ctx: &C,
    job: &J,
    config: &Config,
    workers: usize,
    (leaves, total): (StreamLeaves, Option<usize>),
    tally: Option<&Tally>,
    monitor: &mut Option<Monitor>,
    durable: Durable<'_, J::Acc>,
) -> Result<ControlFlow<J::Acc, J::Acc>, Error>
where
    I: Iterator,
    I::Item: Send,
    C: Sync + ?Sized,
    J: MapReduce<I::Item, C>,
{
    let Durable { resume, mut prefix } = durable;
    // The leaves pushed so far (all complete, without event: the prefix a
    // durable run saves), and their roots.
    let (mut done, mut stack) = resume.unwrap_or_else(|| (Done::default(), Stack::new()));
    // Whether `stack` holds exactly the leaves of `done`: not once a leaf
    // that did not fold to the end (an event, a cancellation) is pushed.
    let mut whole = true;
    let block_time = prefix.as_deref().map(|prefix| prefix.block_time());
    let state = Shortcircuit::new(config.deterministic(), cancel::current_token());
    crate::stop::watch(config, &state);
    let run = Run::new(job, ctx, config.clone(), Arc::clone(&state), tally);
    let slots: [Slot<I::Item, J::Acc>; IN_FLIGHT] = std::array::from_fn(|_| Slot {
        folded: Mutex::new(None),
        finished: Finished::new(),
    });
    let mut reader = Reader::new(items);
    reader.read = done.items as usize;
    let mut cursor = Cursor::resumed(leaves, done.leaves as usize, done.items as usize);
    // The leaf a batch opened and none has completed: its first item, and
    // what its items so far folded to.
    let mut open: Option<(usize, Part<J::Acc>)> = None;
    // Inside a task, this thread is one of the pool's workers: it must not
    // block on a signal, or a pool whose workers all do so would deadlock.
    let nested = pool::on_our_worker();
    let parallel = config.parallel();
    // Whether this thread folds leaves in place while the pool folds: not
    // under a `with_stream_buffer` cap (the item in hand would be one more
    // alive), nor for a durable run (whose batches are sized to its block
    // time), nor when it folds the batches itself, nor on one worker (which
    // the pool is).
    let in_place = parallel && workers > 1 && !nested && prefix.is_none() && config.stream_buffer() == 0;
    // While it does, it is one of the run's workers: the pool folds its
    // batches one after another, on the others.
    let lane = Lane::new();
    let lane_threads = workers - 1;
    let outcome = pool::in_place_scope(workers, parallel, |scope| {
        // However this closure ends, the lane's runner need not wait for
        // more: the scope waits for it.
        let _closing = Closing(&lane);
        let (in_flight, max_len) = batch_limits::<I::Item>(config.stream_buffer());
        let mut batch_len = (FIRST_BATCH_PER_WORKER * workers).min(max_len);
        // A durable run's batches take at most its `block_time` to fold, at
        // the pace of the batches before (and hold an item per worker).
        let mut durable_len = usize::MAX;
        // Batches through the lane take about `LANE_BATCH_TIME` to fold, at
        // the pace of the batches before.
        let mut lane_len = 0;
        let mut spare: Vec<Vec<I::Item>> = Vec::new();
        // The batches spawned or folded here and not pushed yet, oldest
        // first, and how many of them are on the pool.
        let mut pending = std::collections::VecDeque::new();
        let mut on_pool = 0;
        let mut spawned = 0usize;
        // A panic in the input, an event once the items before it are in.
        let mut read_error = None;
        let mut input_done = false;
        loop {
            while !input_done && on_pool < in_flight {
                // Each buffer is allocated once, at the longest batch: only
                // the pages a batch writes are touched, and growing batches
                // never copy or fault in a new buffer.
                let mut batch = spare.pop().unwrap_or_else(|| Vec::with_capacity(max_len));
                let first_index = reader.read;
                // A batch that ends where a leaf does lets this thread
                // fold the leaves after it in place.
                let laned = in_place && reader.pace.fast;
                let asked = match (in_place, laned) {
                    // Whole leaves, enough for the pool to fold while this
                    // thread folds in place.
                    // Near the known end, less: the pool's last batch is
                    // what this thread may wait for at the end.
                    (true, true) => {
                        let left = total.map_or(usize::MAX, |total| total.saturating_sub(first_index) / 4);
                        cursor
                            .len_for_pool(first_index, lane_len.min(left).min(max_len))
                            .min(max_len)
                    }
                    (true, false) => cursor.len_to_leaf_end(first_index, batch_len),
                    (false, _) => batch_len,
                };
                let read = reader.fill(&mut batch, asked, workers, Some((&state, &mut *monitor, tally)));
                batch_len = (batch_len * 2).min(max_len).min(durable_len);
                let exhausted = read.unwrap_or_else(|err| {
                    read_error = Some(err);
                    true
                });
                // After an event, nothing further right can matter.
                input_done = exhausted || state.has_event();
                if batch.is_empty() {
                    input_done = true;
                    continue;
                }
                log::trace!("batch of {} item(s) from item {first_index}", batch.len());
                let cut = cursor.cut(first_index, batch.len());
                let slot = &slots[spawned % IN_FLIGHT];
                slot.finished.reset();
                let run = &run;
                let continued = cut.continued.map_or(0, |segment| segment.len);
                let segments = cut.segments.clone();
                let threads = if laned { lane_threads } else { usize::MAX };
                if !parallel {
                    // A sequential run: this thread folds the leaves, in
                    // order, and keeps the display live meanwhile.
                    let _signal = slot.finished.on_drop();
                    let started = Instant::now();
                    let mut items = batch.drain(continued..);
                    let parts = segments
                        .iter()
                        .map(|segment| {
                            let folder = MapReduceConsumer::new(run, Some(segment.start)).into_folder();
                            fold_here(folder, items.by_ref().take(segment.len), monitor, tally)
                        })
                        .collect();
                    drop(items);
                    *slot.folded.lock() = Some((parts, batch, started.elapsed()));
                } else {
                    // Signals the batch's end when dropped: once folded, or
                    // unrun if its lane's runner unwinds.
                    let signal = slot.finished.on_drop();
                    let fold = move || {
                        let _signal = signal;
                        // While this batch's joins wait, stolen work of other
                        // tasks may run on this thread: it is no task of ours.
                        let _outside = TaskFrame::outside(&run.config);
                        // Off the pool (a lane's batch this thread took
                        // back), on this thread alone. Off *our* pool: a
                        // stream called from a thread of another rayon pool
                        // (`ThreadPool::install`) would otherwise split the
                        // batch with `rayon::join` on that pool, computing
                        // items on its threads, beyond the run's workers.
                        let threads = if pool::on_our_worker() { threads } else { 1 };
                        let (parts, busy) = batch.par_drain(continued..).with_producer(FoldSegments {
                            run,
                            segments: &segments,
                            threads,
                        });
                        *slot.folded.lock() = Some((parts, batch, busy));
                    };
                    if nested {
                        // This thread is a worker: it folds the batch itself,
                        // joining in, rather than block waiting for the pool.
                        fold();
                    } else if laned {
                        if lane.push(Box::new(fold)) {
                            let lane = &lane;
                            scope.spawn(move |_| lane.run());
                        }
                    } else {
                        scope.spawn(move |_| fold());
                    }
                }
                pending.push_back(Pending {
                    work: Work::Pool {
                        slot: spawned % IN_FLIGHT,
                        spawned_at: Instant::now(),
                        laned,
                    },
                    cut,
                });
                spawned += 1;
                on_pool += 1;
            }
            // While the pool folds, this thread folds the leaves after its
            // batches straight from the iterator (no copy), until the
            // oldest batch is done and the pool needs the next one.
            if input_done {
                // Nothing is left to fold in place: this thread, one of the
                // run's workers, folds the batch still waiting in the lane.
                lane.close();
                for job in lane.release() {
                    job();
                }
            }
            let oldest = pending.iter().find_map(|pending| match pending.work {
                Work::Pool { slot, .. } => Some(&slots[slot].finished),
                Work::Here(_) => None,
            });
            // Not while a batch folds on all the workers (one handed over
            // before the items were known to be fast): the run would be a
            // thread busier than its workers.
            let all_laned = pending.iter().all(|pending| match pending.work {
                Work::Pool { laned, .. } => laned,
                Work::Here(_) => true,
            });
            if let (true, true, false, Some(oldest), Some(first_leaf)) = (
                in_place && reader.pace.fast,
                all_laned,
                input_done,
                oldest,
                cursor.at_leaf_start(),
            ) {
                let first_index = reader.read;
                let (parts, read) = reader.fold_in_place(
                    &run,
                    cursor.leaves(),
                    first_leaf,
                    || oldest.is_done(),
                    (&state, &mut *monitor, tally),
                );
                let exhausted = read.unwrap_or_else(|err| {
                    read_error = Some(err);
                    true
                });
                input_done = exhausted || state.has_event();
                if reader.read > first_index {
                    let cut = cursor.cut(first_index, reader.read - first_index);
                    debug_assert_eq!(cut.segments.len(), parts.len());
                    pending.push_back(Pending {
                        work: Work::Here(parts),
                        cut,
                    });
                }
            }
            let Some(Pending { work, cut }) = pending.pop_front() else {
                if state.is_stopped() {
                    // Reading stopped early: the open leaf is not complete.
                    if let Some(prefix) = prefix.as_deref_mut() {
                        prefix.keep(done, &stack);
                    }
                    return run.settle(Err(Error::Cancelled));
                }
                // Every batch is in: the last leaf is complete, unless the
                // input panicked inside it (its items so far stay).
                let last = open.take();
                let node = match read_error.map(Panic::of_error) {
                    Some(Ok(panic)) => Some(Node::Ended {
                        pieces: last.and_then(|(_, part)| into_done(part)).into_iter().collect(),
                        event: Event::Panic(panic),
                    }),
                    Some(Err(err)) => return Err(err),
                    None => last.map(|(_, part)| Node::of_leaf(part)),
                };
                if let Some(node) = node {
                    stack.push(&run, 0, node, FIRST_POSITION + reader.read);
                }
                return stack.finish(&run, || catch_panic(|| job.empty_result(ctx)));
            };
            let (slot, spawned_at) = match work {
                Work::Pool { slot, spawned_at, .. } => (&slots[slot], spawned_at),
                Work::Here(parts) => {
                    if state.is_stopped() {
                        // Folding stopped early: what it holds is not a prefix.
                        return run.settle(Err(Error::Cancelled));
                    }
                    for (segment, part) in cut.segments.into_iter().zip(parts) {
                        place(&run, &mut stack, &mut open, segment, part);
                    }
                    if stack.has_ended() {
                        let outcome = stack.finish(&run, || catch_panic(|| job.empty_result(ctx)));
                        state.abort();
                        return outcome;
                    }
                    continue;
                }
            };
            on_pool -= 1;
            match (monitor.as_mut(), tally) {
                (Some(monitor), Some(tally)) => {
                    monitor.watch(tally, &slot.finished);
                    if monitor.failed() {
                        // The sink panicked: stop reading and folding; the
                        // run fails with that panic.
                        state.abort();
                    }
                    slot.finished.wait_done();
                }
                _ => slot.finished.wait_done(),
            }
            let (parts, mut buffer, busy) = slot
                .folded
                .lock()
                .take()
                .unwrap_or_else(|| unreachable!("a batch signals only after leaving its result"));
            // Fast items, as the pool folded them (a bound: its threads may
            // have been descheduled): this thread may fold in place.
            let pool_items = cut.segments.iter().map(|segment| segment.len).sum::<usize>();
            if pool_items > 0 {
                reader.pace.observe(busy / pool_items as u32);
                // What the lane's threads fold in `LANE_BATCH_TIME`.
                let fits = pool_items as u128 * LANE_BATCH_TIME.as_nanos() * lane_threads.max(1) as u128
                    / busy.as_nanos().max(1);
                lane_len = fits.min(usize::MAX as u128) as usize;
            }
            if state.is_stopped() {
                // The batch was cut short: what it holds is not a prefix.
                if let Some(prefix) = prefix.as_deref_mut() {
                    prefix.keep(done, &stack);
                }
                return run.settle(Err(Error::Cancelled));
            }
            if let Some(limit) = block_time {
                let batch_items = cut
                    .continued
                    .iter()
                    .chain(&cut.segments)
                    .map(|segment| segment.len)
                    .sum::<usize>();
                let took = spawned_at.elapsed().as_nanos().max(1);
                let fits = (batch_items as u128 * limit.as_nanos() / took).min(usize::MAX as u128) as usize;
                durable_len = fits.max(workers);
            }
            let mut prefix_here = prefix.as_deref_mut();
            let mut place_leaf = |stack: &mut Stack<J::Acc>,
                                  open: &mut Option<(usize, Part<J::Acc>)>,
                                  segment: Segment,
                                  part: Part<J::Acc>| {
                let pushed = segment.completes || !matches!(part, Part::Done(_) | Part::Skipped);
                if !pushed {
                    return place(&run, stack, open, segment, part);
                }
                let complete = segment.completes && matches!(part, Part::Done(_));
                if let (Part::Failed { .. }, true, Some(prefix)) = (&part, whole, prefix_here.as_deref_mut()) {
                    // The run fails here: a rerun retries from this leaf.
                    prefix.keep(done, stack);
                }
                place(&run, stack, open, segment, part);
                if complete && whole {
                    done = Done {
                        leaves: done.leaves + 1,
                        items: (segment.start + segment.len) as u64,
                    };
                } else {
                    whole = false;
                }
            };
            // The open leaf goes on with this batch's first items.
            if let Some(segment) = cut.continued {
                let (leaf_start, part) = open
                    .take()
                    .unwrap_or_else(|| unreachable!("a leaf continues only if open"));
                let items = buffer.drain(..segment.len);
                let part = match part {
                    Part::Done(acc) => {
                        let folder = MapReduceFolder::resume(&run, FIRST_POSITION + leaf_start, segment.start, acc);
                        fold_here(folder, items, monitor, tally)
                    }
                    ended => ended,
                };
                place_leaf(&mut stack, &mut open, segment, part);
            }
            buffer.clear();
            spare.push(buffer);
            for (segment, part) in cut.segments.into_iter().zip(parts) {
                place_leaf(&mut stack, &mut open, segment, part);
            }
            if let (Some(prefix), true, false) = (prefix.as_deref_mut(), whole, stack.has_ended()) {
                prefix.completed(done, &stack);
            }
            if stack.has_ended() {
                // Every leaf left of this event is pushed: it decides the
                // answer. Stop the batches still in flight.
                let outcome = stack.finish(&run, || catch_panic(|| job.empty_result(ctx)));
                state.abort();
                return outcome;
            }
        }
    })?;
    outcome
}

/// Closes a lane when dropped.
struct Closing<'l, 'a>(&'l Lane<'a>);

impl Drop for Closing<'_, '_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Fold `items` into `folder` on this thread, the one that watches the run:
/// in runs of items that take a few dozen milliseconds, the display ticked
/// between them, so that a bar or sink stays live however long the leaf.
fn fold_here<'r, 'a, T, J, C>(
    folder: MapReduceFolder<'r, 'a, T, J, C>,
    items: impl Iterator<Item = T>,
    monitor: &mut Option<Monitor>,
    tally: Option<&Tally>,
) -> Part<J::Acc>
where
    J: MapReduce<T, C>,
    C: Sync + ?Sized,
{
    let (Some(monitor), Some(tally)) = (monitor.as_mut(), tally) else {
        return folder.consume_iter(items).complete().part;
    };
    let mut items = items.peekable();
    let mut folder = folder;
    let mut run_length = 1;
    while items.peek().is_some() && !folder.full() && !monitor.failed() {
        let started = Instant::now();
        folder = folder.consume_iter(items.by_ref().take(run_length));
        monitor.tick(tally);
        // Runs of 10 to 50 ms: the clock is read once per run.
        match started.elapsed() {
            took if took < Duration::from_millis(10) => run_length = run_length.saturating_mul(2),
            took if took > Duration::from_millis(50) => run_length = (run_length / 2).max(1),
            _ => {}
        }
    }
    folder.complete().part
}

/// A leaf's segment folded to `part`: onto the stack if the leaf is
/// complete (or an event ended it), else kept open for the next batch.
fn place<T, J, C>(
    run: &Run<'_, T, J, C>,
    stack: &mut Stack<J::Acc>,
    open: &mut Option<(usize, Part<J::Acc>)>,
    segment: Segment,
    part: Part<J::Acc>,
) where
    J: MapReduce<T, C>,
    C: ?Sized,
{
    match part {
        // Goes on in the next batch: folding, or skipped (any order: an
        // event in a later batch cancelled it), pushed once it completes.
        part @ (Part::Done(_) | Part::Skipped) if !segment.completes => *open = Some((segment.leaf_start, part)),
        part => {
            if !segment.completes {
                // An event ended the leaf early: what the next batch holds
                // of it cannot matter.
                *open = Some((segment.leaf_start, Part::Skipped));
            }
            stack.push(run, 0, Node::of_leaf(part), FIRST_POSITION + segment.leaf_start);
        }
    }
}

/// The accumulator of a leaf's items so far, if they folded without event.
fn into_done<A>(part: Part<A>) -> Option<A> {
    match part {
        Part::Done(acc) => Some(acc),
        _ => None,
    }
}

/// How many batches may be alive at once, and the longest batch, for items
/// of type `T` under a [`Config::with_stream_buffer`] cap (`0`: none): the
/// batches alive hold at most `cap` items together.
fn batch_limits<T>(cap: usize) -> (usize, usize) {
    match cap {
        0 => (IN_FLIGHT, max_batch_len::<T>()),
        cap => {
            let in_flight = IN_FLIGHT.min(cap);
            (in_flight, (cap / in_flight).min(max_batch_len::<T>()))
        }
    }
}

/// The longest batch for items of type `T`, without a cap.
fn max_batch_len<T>() -> usize {
    (MAX_BATCH_BYTES / std::mem::size_of::<T>().max(1)).clamp(MIN_BATCH_LEN, MAX_BATCH_LEN)
}

/// Whether items are fast enough to fold in place ([`IN_PLACE_ITEM_TIME`]),
/// as the batches folded on the pool and the chunks folded in place say:
/// not known before one is.
#[derive(Default)]
struct Pace {
    fast: bool,
    /// Slow batches or chunks in a row.
    slow_in_a_row: u32,
}

impl Pace {
    /// Items took `per_item` each, in a batch or a chunk: fast from the first
    /// fast one on, slow again after two slow ones in a row (one may be a
    /// thread descheduled while it folded, or a pool thread slow to join).
    fn observe(&mut self, per_item: Duration) {
        if per_item <= IN_PLACE_ITEM_TIME {
            self.fast = true;
            self.slow_in_a_row = 0;
        } else {
            self.slow_in_a_row += 1;
            self.fast &= self.slow_in_a_row < 2;
        }
    }
}

/// Reads the user's iterator, counting what it has read.
struct Reader<'i, I> {
    /// The iterator, at home between reads (folding in place takes it).
    items: &'i mut Option<I>,
    read: usize,
    /// Items read between two looks at the clock: doubled while a chunk
    /// takes under half of `CHUNK_TIME`, cut to fit it when it takes longer.
    chunk: usize,
    /// The same for items read and folded in place.
    fold_chunk: usize,
    /// How fast the items are.
    pace: Pace,
}

impl<'i, I: Iterator> Reader<'i, I> {
    fn new(items: &'i mut Option<I>) -> Self {
        Reader {
            items,
            read: 0,
            chunk: 1,
            fold_chunk: 1,
            pace: Pace::default(),
        }
    }

    /// Fold the leaves from `first_leaf` (its index and first item) on
    /// straight from the iterator, on this thread, with no batch: each leaf
    /// from `empty_result`, its items in order, as a worker would. Stops
    /// once `stop` says so (asked between chunks of items, sized like
    /// `fill`'s but to `IN_PLACE_CHUNK_TIME`), at the end of the iterator,
    /// or once the run has an event.
    /// The parts of the leaves begun, in order (the last one possibly
    /// incomplete), and, as for `fill`, whether the iterator has ended or
    /// its panic with the index of the item being read.
    fn fold_in_place<J, C>(
        &mut self,
        run: &Run<'_, I::Item, J, C>,
        leaves: StreamLeaves,
        first_leaf: (usize, usize),
        mut stop: impl FnMut() -> bool,
        folding: Folding<'_>,
    ) -> (Vec<Part<J::Acc>>, Result<bool, Error>)
    where
        J: MapReduce<I::Item, C>,
        C: Sync + ?Sized,
    {
        let (state, monitor, tally) = folding;
        let (mut leaf, mut start) = first_leaf;
        let items = &mut *self.items;
        let chunk_len = &mut self.fold_chunk;
        // The reads, each with its panic caught (which costs nothing unless
        // one happens): a panicking iterator ends the source, the folder
        // keeps its items so far.
        let ends = Ends::default();
        let mut read = 0;
        let mut parts = Vec::new();
        'leaves: while self.pace.fast && !stop() && !state.has_event() {
            // A leaf begins with an item read: none folds from nothing.
            let Some(first) = InPlace::new(&mut *items, 1, &ends).next() else {
                break;
            };
            read += 1;
            let size = leaves.size(leaf);
            let mut folder = MapReduceConsumer::new(run, Some(start)).into_folder();
            let mut in_leaf = 1;
            let mut first = Some(first);
            loop {
                // The first chunk holds the item read first.
                let room = size - in_leaf + usize::from(first.is_some());
                let chunk = (*chunk_len).min(room);
                let started = Instant::now();
                let (folded, asked) = match first.take() {
                    Some(first) => {
                        let rest = InPlace::new(&mut *items, chunk - 1, &ends);
                        (folder.consume_iter(std::iter::once(first).chain(rest)), chunk - 1)
                    }
                    None => (folder.consume_iter(InPlace::new(&mut *items, chunk, &ends)), chunk),
                };
                folder = folded;
                let took = started.elapsed();
                let chunk_read = asked - ends.unread.get();
                read += chunk_read;
                in_leaf += chunk_read;
                self.pace.observe(took / chunk as u32);
                if took > IN_PLACE_CHUNK_TIME {
                    let fits = chunk as u128 * IN_PLACE_CHUNK_TIME.as_nanos() / took.as_nanos().max(1);
                    *chunk_len = (fits as usize).max(1);
                } else if took < IN_PLACE_CHUNK_TIME / 2 && chunk == *chunk_len {
                    *chunk_len = (chunk * 2).min(LEAF_MAX);
                }
                debug_assert!(in_leaf <= size, "a leaf folds at most its size");
                let over = ends.ended.get() || folder.full();
                if in_leaf == size && !over {
                    parts.push(folder.complete().part);
                    leaf += 1;
                    start += size;
                    continue 'leaves;
                }
                if !over {
                    if let (Some(monitor), Some(tally)) = (monitor.as_mut(), tally) {
                        monitor.tick(tally);
                        if monitor.failed() {
                            // The sink panicked: nothing more is read.
                            state.abort();
                        }
                    }
                }
                if over || !self.pace.fast || state.has_event() || stop() {
                    parts.push(folder.complete().part);
                    break 'leaves;
                }
            }
        }
        self.read += read;
        let outcome = match ends.panicked.into_inner() {
            Some(payload) => Err(Panic::new(Some(self.read), payload).into()),
            None => Ok(ends.ended.get()),
        };
        (parts, outcome)
    }

    /// Append items to `batch` until it holds `len`, or fewer when the time
    /// rule says so: once this call has been reading for `BATCH_READ_TIME`
    /// and the batch holds at least `min_len` items (at most `len`). Stop early once the batch
    /// being folded (`folding`) has ended the run, and keep its progress
    /// display live meanwhile. `Ok(true)` when the iterator has ended. A
    /// panic in the iterator is reported with the index of the item being
    /// read.
    fn fill(
        &mut self,
        batch: &mut Vec<I::Item>,
        len: usize,
        min_len: usize,
        folding: Option<Folding<'_>>,
    ) -> Result<bool, Error> {
        let Some(items) = self.items.as_mut() else {
            unreachable!("the iterator is at home between reads")
        };
        let chunk_len = &mut self.chunk;
        let mut folding = folding;
        let start = batch.len();
        let min_len = min_len.min(len);
        let mut exhausted = false;
        let read = catch_unwind(AssertUnwindSafe(|| {
            let started = Instant::now();
            let mut chunk_started = started;
            while batch.len() < len {
                if let Some((state, monitor, tally)) = &mut folding {
                    if state.has_event() {
                        return;
                    }
                    if let (Some(monitor), Some(tally)) = (monitor.as_mut(), tally) {
                        monitor.tick(tally);
                        if monitor.failed() {
                            // The sink panicked: nothing more is read.
                            state.abort();
                            return;
                        }
                    }
                }
                // A chunk at a time: `extend` copies without per-item checks.
                let chunk = (*chunk_len).min(len - batch.len());
                let before = batch.len();
                batch.extend(items.by_ref().take(chunk));
                if batch.len() - before < chunk {
                    exhausted = true;
                    return;
                }
                let now = Instant::now();
                let took = now - chunk_started;
                chunk_started = now;
                if took > CHUNK_TIME {
                    let fits = chunk as u128 * CHUNK_TIME.as_nanos() / took.as_nanos().max(1);
                    *chunk_len = (fits as usize).max(1);
                } else if took < CHUNK_TIME / 2 && chunk == *chunk_len {
                    *chunk_len = (chunk * 2).min(MAX_CHUNK);
                }
                if now - started >= BATCH_READ_TIME && batch.len() >= min_len {
                    return;
                }
            }
        }));
        // `Vec::extend` keeps what it pushed before a panic: the panicking
        // item is the next one.
        self.read += batch.len() - start;
        read.map(|()| exhausted)
            .map_err(|payload| Panic::new(Some(self.read), payload).into())
    }
}

/// Up to `left` items read from the iterator as they are folded, each read
/// with its panic caught (which costs nothing unless one happens): a panic
/// ends them as the iterator's end does, and the items before it stay
/// folded. The iterator is taken from its home by value and the count kept
/// here, so that both can stay in registers while the items are folded;
/// on drop, the iterator goes home and how many items were left unread is
/// told.
struct InPlace<'a, I: Iterator> {
    items: Option<I>,
    home: &'a mut Option<I>,
    left: usize,
    ends: &'a Ends,
}

/// How reading in place ended.
#[derive(Default)]
struct Ends {
    /// Of the last [`InPlace`]'s items, those not read.
    unread: Cell<usize>,
    /// Whether the iterator has ended (or panicked).
    ended: Cell<bool>,
    panicked: Cell<Option<Box<dyn std::any::Any + Send>>>,
}

impl<'a, I: Iterator> InPlace<'a, I> {
    fn new(home: &'a mut Option<I>, left: usize, ends: &'a Ends) -> Self {
        InPlace {
            items: home.take(),
            home,
            left,
            ends,
        }
    }
}

impl<I: Iterator> Iterator for InPlace<'_, I> {
    type Item = I::Item;

    #[inline]
    fn next(&mut self) -> Option<I::Item> {
        let (true, Some(items)) = (self.left > 0, self.items.as_mut()) else {
            return None;
        };
        match catch_unwind(AssertUnwindSafe(|| items.next())) {
            Ok(Some(item)) => {
                self.left -= 1;
                Some(item)
            }
            Ok(None) => {
                self.ends.ended.set(true);
                None
            }
            Err(payload) => {
                self.ends.ended.set(true);
                self.ends.panicked.set(Some(payload));
                None
            }
        }
    }
}

impl<I: Iterator> Drop for InPlace<'_, I> {
    fn drop(&mut self) {
        *self.home = self.items.take();
        self.ends.unread.set(self.left);
    }
}

/// What the reader looks at while a batch is folded: the batch's state, and
/// the run's progress display.
type Folding<'a> = (&'a Shortcircuit, &'a mut Option<Monitor>, Option<&'a Tally>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_turn_slow_only_after_two_slow_measures_in_a_row() {
        let fast = IN_PLACE_ITEM_TIME / 2;
        let slow = IN_PLACE_ITEM_TIME * 100;
        let mut pace = Pace::default();
        // Not known before a measure; one slow measure does not make it fast.
        assert!(!pace.fast);
        pace.observe(slow);
        assert!(!pace.fast);
        pace.observe(fast);
        assert!(pace.fast);
        // One slow measure (a thread descheduled) keeps it fast ...
        pace.observe(slow);
        assert!(pace.fast);
        // ... a fast one in between starts the count again ...
        pace.observe(fast);
        pace.observe(slow);
        assert!(pace.fast);
        // ... and a second slow one in a row turns it slow.
        pace.observe(slow);
        assert!(!pace.fast);
        pace.observe(fast);
        assert!(pace.fast);
    }

    #[test]
    fn batches_are_bounded_in_bytes_and_length() {
        assert_eq!(max_batch_len::<u64>(), 512 * 1024);
        assert_eq!(max_batch_len::<()>(), MAX_BATCH_LEN);
        assert_eq!(max_batch_len::<[u8; 1 << 20]>(), MIN_BATCH_LEN);
        assert_eq!(batch_limits::<u64>(0), (IN_FLIGHT, 512 * 1024));
    }

    #[test]
    fn a_stream_buffer_caps_the_items_of_all_batches_together() {
        for cap in [1, 2, 3, 7, 64, 1000, usize::MAX] {
            let (in_flight, len) = batch_limits::<u64>(cap);
            assert!(in_flight >= 1 && len >= 1, "cap {cap}");
            assert!(in_flight * len <= cap, "cap {cap}: {in_flight} × {len}");
            assert!(len <= max_batch_len::<u64>());
        }
        assert_eq!(batch_limits::<u64>(1), (1, 1));
        assert_eq!(batch_limits::<u64>(7), (2, 3));
        assert_eq!(batch_limits::<[u8; 1 << 20]>(1000), (2, MIN_BATCH_LEN));
    }

    /// An iterator that takes `pause` per item.
    fn slow(n: u64, pause: Duration) -> impl Iterator<Item = u64> {
        (0..n).inspect(move |_| std::thread::sleep(pause))
    }

    #[test]
    fn the_time_rule_hands_over_slow_batches_early() {
        // 1 ms per item: 4 ms of reading hold a handful of items, far from 1000.
        let mut items = Some(slow(1000, Duration::from_millis(1)));
        let mut reader = Reader::new(&mut items);
        let mut batch = Vec::new();
        assert!(!reader.fill(&mut batch, 1000, 2, None).unwrap());
        // At least `min_len` (2) items; far fewer than asked, however loaded
        // the machine (a 1 ms sleep may take longer, never shorter).
        assert!((2..100).contains(&batch.len()), "{} items", batch.len());
        assert_eq!(reader.read, batch.len());
        // The chunk shrank to fit the clock: one item at a time.
        assert_eq!(reader.chunk, 1);
        // The time rule waits for `min_len` items, however slow.
        let mut batch = Vec::new();
        let mut items = Some(slow(1000, Duration::from_millis(3)));
        let mut reader = Reader::new(&mut items);
        assert!(!reader.fill(&mut batch, 1000, 5, None).unwrap());
        assert_eq!(batch.len(), 5);
    }

    #[test]
    fn fast_batches_fill_and_the_end_is_reported() {
        // `min_len = len`: no time rule, however loaded the machine.
        let mut items = Some(0..10_000u64);
        let mut reader = Reader::new(&mut items);
        let mut batch = Vec::new();
        assert!(!reader.fill(&mut batch, 5000, 5000, None).unwrap());
        assert_eq!(batch, (0..5000).collect::<Vec<_>>());
        batch.clear();
        // Full: the end is not known yet.
        assert!(!reader.fill(&mut batch, 5000, 5000, None).unwrap());
        assert_eq!(batch, (5000..10_000).collect::<Vec<_>>());
        batch.clear();
        assert!(reader.fill(&mut batch, 5000, 5000, None).unwrap());
        assert!(batch.is_empty());
        assert_eq!(reader.read, 10_000);
        // An empty iterator ends at once.
        let mut items = Some(std::iter::empty::<u64>());
        let mut empty = Reader::new(&mut items);
        assert!(empty.fill(&mut Vec::new(), 10, 1, None).unwrap());
    }
}
