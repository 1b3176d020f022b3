//! The reduction engine: a job over a rayon parallel iterator, folded per
//! task, joined in order, with the shortcircuit of [`crate::cancel`].

mod consumer;
mod in_order;
mod run;

use std::ops::ControlFlow::{self, Break, Continue};

use rayon::iter::{IndexedParallelIterator, ParallelIterator};

pub(crate) use run::Run;
#[cfg(feature = "mpi")]
pub(crate) use {
    in_order::{BLOCKS_AT_MOST, FIRST_BLOCK_PER_WORKER},
    run::{Part, Piece},
};

use crate::cancel::{self, Shortcircuit};
use crate::config::Config;
use crate::error::Error;
use crate::job::MapReduce;
use crate::pool;
use crate::progress::{self, ChildGuard, Finished, Monitor, Tally};
pub(crate) use consumer::MapReduceConsumer;

/// A whole run of `job` over a parallel iterator under the current config.
pub(crate) fn map_reduce<P, C, J>(items: P, ctx: &C, job: &J) -> Result<J::Acc, Error>
where
    P: ParallelIterator,
    C: Sync + ?Sized,
    J: MapReduce<P::Item, C>,
{
    let total = items.opt_len();
    execute(ctx, job, total, move |run| drive(items, run, Some(0)))
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
    execute(ctx, job, Some(total), move |run| in_order::drive(items, run))
}

/// Run `driver` as one run of `job` under the current config: on the pool
/// (or inline when nested), watched by this thread when someone watches.
fn execute<T, C, J, D>(ctx: &C, job: &J, total: Option<usize>, driver: D) -> Result<J::Acc, Error>
where
    C: Sync + ?Sized,
    J: MapReduce<T, C>,
    D: FnOnce(&Run<'_, T, J, C>) -> Result<ControlFlow<J::Acc, J::Acc>, Error> + Send,
{
    let config = Config::current();
    config.check()?;
    let workers = if config.parallel() { config.num_workers()? } else { 1 };
    let parallel = config.parallel();
    let deterministic = config.deterministic();
    log::debug!(
        "run {:?}: {workers} worker(s), {}{}",
        job.description(),
        if parallel { "parallel" } else { "sequential" },
        if deterministic {
            ", deterministic"
        } else {
            ", any order"
        },
    );
    let state = Shortcircuit::new(deterministic, cancel::current_task());
    let tally = Tally::new();
    let Some(mut monitor) = Monitor::for_run(&config, job.description(), total) else {
        let child = progress::child_for_run(&config, job.description(), total);
        let run = Run::new(job, ctx, config, state, child.as_ref().map(ChildGuard::tally));
        return pool::install(workers, parallel, || driver(&run))?.map(into_value);
    };
    // Someone watches: the run goes to the pool, this thread draws.
    let run = Run::new(job, ctx, config, state, Some(&tally));
    let finished = Finished::new();
    let mut outcome = None;
    pool::in_place_scope(workers, parallel, |scope| {
        scope.spawn(|_| {
            let _signal = finished.on_drop();
            outcome = Some(driver(&run));
        });
        monitor.watch(&tally, &finished);
    })?;
    let outcome = outcome.unwrap_or_else(|| unreachable!("rayon's scope waits for the run it spawned"));
    monitor.finish(&tally, &outcome);
    outcome.map(into_value)
}

/// Drive `items` through `run` on the current thread's pool. `first_index`
/// is the input index of the first item, used when `items` is indexed.
pub(crate) fn drive<P, C, J>(
    items: P,
    run: &Run<'_, P::Item, J, C>,
    first_index: Option<usize>,
) -> Result<ControlFlow<J::Acc, J::Acc>, Error>
where
    P: ParallelIterator,
    C: Sync + ?Sized,
    J: MapReduce<P::Item, C>,
{
    // Only an input with a known length is split at exact item counts.
    let first_index = first_index.filter(|_| items.opt_len().is_some());
    let piece = items.drive_unindexed(MapReduceConsumer::new(run, first_index));
    let outcome = run.finish(piece);
    match &outcome {
        Ok(Break(_)) => log::debug!("run {:?} shortcircuited", run.job.description()),
        Err(err) => log::debug!("run {:?} failed: {err}", run.job.description()),
        Ok(Continue(_)) => {}
    }
    outcome
}

/// The accumulator, whether the run broke or not.
pub(crate) fn into_value<A>(flow: ControlFlow<A, A>) -> A {
    match flow {
        Continue(acc) | Break(acc) => acc,
    }
}
