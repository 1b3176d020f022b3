//! Thread pools: one per worker count, built on first use and kept for the
//! life of the process, with threads named `mapreduce-<index>` (in a pool
//! smaller or larger than the machine: `mapreduce-<index>of<workers>`) and
//! stacks big enough for deep nesting ([`WORKER_STACK_BYTES`]).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use parking_lot::Mutex;
use rayon::{Scope, ThreadPool, ThreadPoolBuilder};

use crate::config::available_cores;
use crate::error::Error;

/// The stack each worker thread gets: 64 MiB of address space (rayon's
/// default is 2 MiB), touched only as deep as nesting goes. A run nested in
/// a task runs on the worker that started it, so each level of nesting
/// takes some of that worker's stack: about 3 KiB for a nested
/// `par_map_reduce` and 4 KiB for a nested stream in release builds, plus
/// the job's own frames. Measured with one-item jobs alternating the two:
/// 10,000 levels fit, 20,000 overflow (2 MiB overflowed at about 700).
pub(crate) const WORKER_STACK_BYTES: usize = 64 << 20;

thread_local! {
    /// Whether this thread is a worker of one of the crate's pools.
    static OUR_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is one of our pools' workers: then it is running a
/// task of one of our runs (or work stolen from one), and a run started
/// here is nested in it. Any other thread, a worker of the application's
/// own rayon pool included, starts top-level runs.
pub(crate) fn on_our_worker() -> bool {
    OUR_WORKER.try_with(Cell::get).unwrap_or(false)
}

/// Run `op` where a run with `workers` workers belongs and wait for it.
///
/// A run started inside a task (on one of our workers) stays on that pool:
/// no new pool, no cross-pool wait, no deadlock. A top-level run goes to the
/// pool of its worker count, also from a thread of another rayon pool. A
/// sequential run (`parallel` off) goes to the one-worker pool, where its
/// joins run in order.
pub(crate) fn install<R: Send>(workers: usize, parallel: bool, op: impl FnOnce() -> R + Send) -> Result<R, Error> {
    if parallel && on_our_worker() {
        return Ok(op());
    }
    let pool = pool(if parallel { workers } else { 1 })?;
    if pool.current_thread_index().is_some() {
        Ok(op())
    } else {
        Ok(pool.install(op))
    }
}

/// [`rayon::in_place_scope`] on the pool [`install`] would choose: `op` runs
/// on this thread, what it spawns on the pool.
pub(crate) fn in_place_scope<'scope, R>(
    workers: usize,
    parallel: bool,
    op: impl FnOnce(&Scope<'scope>) -> R,
) -> Result<R, Error> {
    if parallel && on_our_worker() {
        return Ok(rayon::in_place_scope(op));
    }
    Ok(pool(if parallel { workers } else { 1 })?.in_place_scope(op))
}

/// Build the pool a run with `workers` workers would use, if not built yet:
/// a failure to start its threads is known before the run starts.
#[cfg(feature = "mpi")]
pub(crate) fn prepare(workers: usize, parallel: bool) -> Result<(), Error> {
    pool(if parallel { workers } else { 1 }).map(drop)
}

/// The pool of `workers` threads: up to the machine's cores, found without
/// a lock; more (oversubscription) in a map of their own.
fn pool(workers: usize) -> Result<&'static ThreadPool, Error> {
    static POOLS: OnceLock<Vec<OnceLock<ThreadPool>>> = OnceLock::new();
    static OVERSUBSCRIBED: Mutex<BTreeMap<usize, &'static ThreadPool>> = Mutex::new(BTreeMap::new());
    let slots = POOLS.get_or_init(|| (0..available_cores()).map(|_| OnceLock::new()).collect());
    let workers = workers.max(1);
    if workers > slots.len() {
        let mut pools = OVERSUBSCRIBED.lock();
        if let Some(pool) = pools.get(&workers) {
            return Ok(pool);
        }
        // Kept for the life of the process, like the others.
        let pool: &'static ThreadPool = Box::leak(Box::new(build(workers)?));
        pools.insert(workers, pool);
        return Ok(pool);
    }
    let slot = &slots[workers - 1];
    if let Some(pool) = slot.get() {
        return Ok(pool);
    }
    // Building is rare and may fail, which `OnceLock` cannot express.
    static BUILDING: Mutex<()> = Mutex::new(());
    let _building = BUILDING.lock();
    if let Some(pool) = slot.get() {
        return Ok(pool);
    }
    let pool = build(workers)?;
    Ok(slot.get_or_init(|| pool))
}

/// A new pool of `workers` named threads with big stacks.
fn build(workers: usize) -> Result<ThreadPool, Error> {
    let pool = ThreadPoolBuilder::new()
        .num_threads(workers)
        .thread_name(move |index| thread_name(index, workers))
        .stack_size(WORKER_STACK_BYTES)
        .start_handler(|_| OUR_WORKER.with(|ours| ours.set(true)))
        .build()
        .map_err(|err| Error::ThreadPool(err.to_string()))?;
    log::debug!("built a pool of {workers} worker thread(s)");
    Ok(pool)
}

/// The name of worker `index` of a pool of `workers`: `mapreduce-<index>`
/// in the pool of all cores (the default), `mapreduce-<index>of<workers>`
/// in any other, so that logs and debuggers tell the pools apart.
fn thread_name(index: usize, workers: usize) -> String {
    if workers == available_cores() {
        format!("mapreduce-{index}")
    } else {
        format!("mapreduce-{index}of{workers}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_are_built_once_per_size_and_named() {
        let first = pool(1).unwrap() as *const ThreadPool;
        assert_eq!(first, pool(1).unwrap() as *const ThreadPool);
        let name = pool(1)
            .unwrap()
            .install(|| std::thread::current().name().map(str::to_owned));
        assert_eq!(name.as_deref(), Some(thread_name(0, 1).as_str()));
        let all = pool(available_cores()).unwrap();
        assert_eq!(all.current_num_threads(), available_cores());
        let name = all.install(|| std::thread::current().name().map(str::to_owned));
        assert!(name.is_some_and(|name| name.starts_with("mapreduce-") && !name.contains("of")));
    }

    #[test]
    fn pools_of_other_sizes_say_their_size() {
        assert_eq!(
            thread_name(3, available_cores() + 5),
            format!("mapreduce-3of{}", available_cores() + 5)
        );
        assert_eq!(thread_name(0, available_cores()), "mapreduce-0");
    }

    #[test]
    fn nested_install_stays_on_the_current_pool() {
        let outer = pool(available_cores()).unwrap();
        let inner_threads = outer.install(|| install(1, true, rayon::current_num_threads).unwrap());
        assert_eq!(inner_threads, available_cores());
    }

    #[test]
    fn sequential_install_uses_one_worker() {
        assert_eq!(install(4, false, rayon::current_num_threads).unwrap(), 1);
    }
}
