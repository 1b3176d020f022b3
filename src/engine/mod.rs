//! The reduction engine: a job over a rayon parallel iterator, folded per
//! task, joined in order, with the shortcircuit of [`crate::cancel`].

mod consumer;
mod in_order;
pub(crate) mod prefix;
mod run;
pub(crate) mod tree;

use std::ops::ControlFlow::{self, Break, Continue};
use std::time::Instant;

use rayon::iter::{IndexedParallelIterator, ParallelIterator};

#[cfg(any(feature = "mpi", feature = "durable"))]
pub(crate) use in_order::Leaves;
#[cfg(feature = "mpi")]
pub(crate) use in_order::{evaluate, BLOCKS_AT_MOST, FIRST_BLOCK_PER_WORKER};
pub(crate) use run::{Part, Run};

use crate::cancel::{self, Shortcircuit, TaskFrame};
use crate::config::Config;
use crate::error::{catch_panic, Error};
use crate::job::MapReduce;
use crate::pool;
use crate::progress::{self, ChildGuard, Finished, Monitor, Tally};
pub(crate) use consumer::{MapReduceConsumer, MapReduceFolder};

/// A whole run of `job` over a parallel iterator under the current config.
pub(crate) fn map_reduce<P, C, J>(items: P, ctx: &C, job: &J) -> Result<J::Acc, Error>
where
    P: ParallelIterator,
    C: Sync + ?Sized,
    J: MapReduce<P::Item, C>,
{
    let total = items.opt_len();
    execute(ctx, job, total, 0, move |run| drive(items, run))
}

/// A whole run over an indexed input scanned in growing blocks from its
/// start (see [`in_order`]).
pub(crate) fn map_reduce_in_order<P, C, J>(items: P, ctx: &C, job: &J) -> Result<J::Acc, Error>
where
    P: IndexedParallelIterator,
    C: Sync + ?Sized,
    J: MapReduce<P::Item, C>,
{
    let total = items.len();
    execute(ctx, job, Some(total), 0, move |run| in_order::drive(items, run, None))
}

/// A durable run over an indexed input: scanned in order from where
/// `prefix` says an earlier run stopped, `prefix` hearing of the progress.
#[cfg(feature = "durable")]
pub(crate) fn map_reduce_durable<P, C, J>(
    items: P,
    ctx: &C,
    job: &J,
    done_before: usize,
    prefix: &mut dyn prefix::Prefix<J::Acc>,
) -> Result<J::Acc, Error>
where
    P: IndexedParallelIterator,
    C: Sync + ?Sized,
    J: MapReduce<P::Item, C>,
{
    let total = items.len();
    execute(ctx, job, Some(total), done_before, move |run| {
        in_order::drive(items, run, Some(prefix))
    })
}

/// Run `driver` as one run of `job` under the current config: on the pool
/// (or inline when nested), watched by this thread when someone watches,
/// whose display starts at `done_before` items (a resumed run's).
fn execute<T, C, J, D>(ctx: &C, job: &J, total: Option<usize>, done_before: usize, driver: D) -> Result<J::Acc, Error>
where
    C: Sync + ?Sized,
    J: MapReduce<T, C>,
    D: FnOnce(&Run<'_, T, J, C>) -> Result<ControlFlow<J::Acc, J::Acc>, Error> + Send,
{
    let config = Config::current();
    config.check()?;
    let description = description_of(job)?;
    let started = Instant::now();
    let workers = if config.parallel() { config.num_workers()? } else { 1 };
    note_nested_workers(&config, workers);
    let parallel = config.parallel();
    let deterministic = config.deterministic();
    log::debug!(
        "run {description:?}: {workers} worker(s), {}{}",
        if parallel { "parallel" } else { "sequential" },
        if deterministic {
            ", deterministic"
        } else {
            ", any order"
        },
    );
    let state = Shortcircuit::new(deterministic, cancel::current_token());
    crate::stop::watch(&config, &state);
    let mut monitor = Monitor::for_run(&config, &description, total);
    if let Some(monitor) = monitor.as_mut() {
        monitor.resumes_after(done_before as u64);
    }
    let Some(mut monitor) = monitor else {
        let child = progress::child_for_run(&config, &description, total);
        let run = Run::new(job, ctx, config, state, child.as_ref().map(ChildGuard::tally));
        let outcome = pool::install(workers, parallel, || {
            // Nested in a task, this worker waits inside the run's joins, and
            // may run work stolen from other tasks' items meanwhile: none of
            // it is this thread's task (the run's own tasks set theirs).
            let _outside = TaskFrame::outside(&run.config);
            driver(&run)
        })?;
        log_outcome(&description, started, &outcome);
        return outcome.map(into_value);
    };
    // Someone watches: the run goes to the pool, this thread draws.
    let tally = Tally::new();
    tally.add(done_before as u64);
    let run = Run::new(job, ctx, config, state, Some(&tally));
    let finished = Finished::new();
    let mut outcome = None;
    pool::in_place_scope(workers, parallel, |scope| {
        if monitor.failed() {
            // The sink panicked as the run started: nothing runs.
            return;
        }
        scope.spawn(|_| {
            let _signal = finished.on_drop();
            outcome = Some(driver(&run));
        });
        monitor.watch(&tally, &finished);
        if monitor.failed() {
            // The sink panicked: stop the run, which fails with that panic.
            run.state.abort();
        }
    })?;
    // No outcome only when the run never started; `finish` says why.
    let outcome = monitor.finish(&tally, outcome.unwrap_or(Err(Error::Cancelled)));
    log_outcome(&description, started, &outcome);
    outcome.map(into_value)
}

/// The job's description, read once when a run starts: a panic in it fails
/// the run like a panic in any other part of the job.
pub(crate) fn description_of<T, C: ?Sized, J: MapReduce<T, C>>(job: &J) -> Result<String, Error> {
    catch_panic(|| job.description().to_owned())
}

/// Say at debug level how a run that started at `started` ended.
pub(crate) fn log_outcome<A>(description: &str, started: Instant, outcome: &Result<ControlFlow<A, A>, Error>) {
    let took = started.elapsed();
    match outcome {
        Ok(Continue(_)) => log::debug!("run {description:?} completed in {took:.2?}"),
        Ok(Break(_)) => log::debug!("run {description:?} shortcircuited after {took:.2?}"),
        Err(err) => log::debug!("run {description:?} failed after {took:.2?}: {err}"),
    }
}

/// A nested run stays on its task's pool, whatever worker count it asks
/// for: say so once, where someone asked for another.
fn note_nested_workers(config: &Config, workers: usize) {
    static SAID: std::sync::Once = std::sync::Once::new();
    if config.parallel() && pool::on_our_worker() && workers != rayon::current_num_threads() {
        SAID.call_once(|| {
            log::info!(
                "a run nested in a task asked for {workers} worker(s): nested runs stay on their task's pool \
                 ({} workers); the worker count applies to top-level runs",
                rayon::current_num_threads()
            )
        });
    }
}

/// Drive `items` through `run` on the current thread's pool. When `items`
/// has a known length, tasks are split at exact item counts and their
/// positions are the items' indices (panics name their item).
fn drive<P, C, J>(items: P, run: &Run<'_, P::Item, J, C>) -> Result<ControlFlow<J::Acc, J::Acc>, Error>
where
    P: ParallelIterator,
    C: Sync + ?Sized,
    J: MapReduce<P::Item, C>,
{
    let first_index = items.opt_len().map(|_| 0);
    run.finish(items.drive_unindexed(MapReduceConsumer::new(run, first_index)))
}

/// The accumulator, whether the run broke or not.
pub(crate) fn into_value<A>(flow: ControlFlow<A, A>) -> A {
    match flow {
        Continue(acc) | Break(acc) => acc,
    }
}
