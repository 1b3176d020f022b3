//! The same job across the ranks of an MPI job (cargo feature `mpi`, on
//! [rsmpi](https://docs.rs/mpi)): for searches that outgrow one machine.
//!
//! ```no_run
//! use mapreduce::{jobs, mpi};
//! use ::mpi::traits::*;
//!
//! let (universe, _) = ::mpi::initialize_with_threading(::mpi::Threading::Funneled).unwrap();
//! let world = universe.world();
//! mpi::init_logging(&world);
//! let cost = |cut: usize, _: &()| (cut * 7919 % 10_007, cut);
//! // Every rank calls it with the same items; every rank gets the answer.
//! let cheapest = mpi::par_map_reduce(&world, 1..1_000_000usize, &(), jobs::min_by_key(cost).stop_at(0)).unwrap();
//! if world.rank() == 0 {
//!     println!("{cheapest:?}");
//! }
//! ```
//!
//! Run it with `mpirun -n 4 target/release/my-search` (or `srun`).
//!
//! # How a run goes
//!
//! SPMD: every rank calls [`par_map_reduce`] with the same indexed items (no
//! items travel, only accumulators). Rank 0 hands out blocks of indices
//! as ranks ask for them (rank 0 computes too); each rank runs its blocks on
//! its own pool, [`Config::current`](crate::Config::current) on that rank
//! deciding its worker count, with the single-machine engine; block results
//! go to rank 0 (encoded with [postcard](https://docs.rs/postcard)), which
//! joins them in index order. The answer is broadcast, so every rank
//! returns it. Blocks start at a few items per worker and grow, as in
//! [`par_map_reduce_in_order`](crate::par_map_reduce_in_order), so a match
//! near the start is found at once.
//!
//! **The same bits on any number of ranks.** Blocks are runs of whole
//! leaves of the fixed tree (crate docs, "Reproducible reductions"), and
//! rank 0 joins their results into that tree: the answer is bit for bit
//! what a single process's `par_map_reduce_in_order` gives with the same
//! leaf size, on 1 rank or 16, with any workers per rank. Rank 0's leaf
//! size ([`Config::with_leaf_size`](crate::Config::with_leaf_size), or the
//! automatic one) rules every rank.
//!
//! **Shortcircuit.** A `Break` (or a panic) on any rank stops the handing out
//! of blocks right of it and cancels the blocks in flight right of it on
//! every rank, where [`is_cancelled`](crate::is_cancelled) turns true within
//! a few milliseconds. Deterministic mode returns exactly what
//! [`seq_map_reduce`](crate::seq_map_reduce) returns; any-order mode, the
//! first answer found. Rank 0's config decides the mode (and whether
//! progress is shown) for all ranks.
//!
//! **Waiting costs no core.** A rank's calling thread talks to the others
//! while its pool computes; it sleeps between looks for messages (50 µs,
//! backing off to 2 ms), and its sends and collectives are non-blocking
//! calls tested between such sleeps (MPI's blocking ones poll a core), so
//! one worker per core keeps its core.
//!
//! **Failures.** A panic on any rank is [`Error::Panicked`] on every rank,
//! naming the item; ranks other than the one that panicked get the message
//! as the payload. A panic in `merge` fails the run (which failure is
//! reported, when there are several, can depend on the rank that ran the
//! `merge`); so does a panic in rank 0's progress sink or logger. An invalid
//! config on any rank is an error on every rank ([`ConfigError::OnRank`] on
//! the others).
//!
//! **Accumulators** travel encoded with postcard, which cannot read what
//! needs a self-describing format (`#[serde(untagged)]`, `flatten`,
//! `serde_json::Value`); such an answer fails the run on every rank with an
//! `Error::Panicked` saying it could not be decoded. One message carries at
//! most 2 GiB.
//!
//! **Progress and logs.** Rank 0 alone draws the bar, counting every rank's
//! items. Under `mpirun` its stderr is a pipe, so the bar needs
//! `MAPREDUCE_PROGRESS=always` (or
//! [`Config::with_progress_bars_always`](crate::Config::with_progress_bars_always)). With [`init_logging`] on every rank, the other ranks' records are
//! printed by rank 0, with their rank and thread in the line.
//!
//! **Requirements.** MPI must be initialized with at least
//! `Threading::Funneled` (only the calling thread talks MPI), and
//! `par_map_reduce` called from that thread, outside any parallel task.
//! Accumulators need `serde`'s `Serialize` and `DeserializeOwned`.

mod coordinator;
#[cfg(feature = "durable")]
mod durable;
mod link;
pub(crate) mod logs;
mod node;
mod wire;

use std::ops::ControlFlow;

use ::mpi::topology::Communicator;
use rayon::iter::{IndexedParallelIterator, IntoParallelIterator};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cancel::Shortcircuit;
use crate::config::Config;
use crate::engine::prefix::{reborrow, Prefix};
use crate::engine::Leaves;
use crate::engine::{self, Run};
use crate::error::{ConfigError, Error, Panic};
use crate::job::MapReduce;
use crate::pool;
use crate::progress::{Monitor, Tally};
use link::Link;

#[cfg(feature = "durable")]
pub use durable::par_map_reduce_durable;
use node::Node;
use wire::{WireOutcome, WirePanic};

/// Run `job` over `items` on every rank of `comm`, each rank using its own
/// pool under the current [`Config`]; every rank returns the same answer,
/// equal to [`seq_map_reduce`](crate::seq_map_reduce)'s in deterministic
/// mode. A `Break` on any rank stops every rank promptly. See the
/// [module docs](self) for how a run goes.
///
/// Collective: every rank of `comm` must call it, with the same number of
/// items and the same job (the same job, item and accumulator types, from
/// the same build); ranks that do not get
/// [`ConfigError::RanksDisagree`], every
/// one of them. A rank that skips the call leaves the others waiting, as
/// any MPI collective does: call it on every rank, or on none.
///
/// ```no_run
/// use mapreduce::{jobs, mpi};
///
/// let universe = ::mpi::initialize_with_threading(::mpi::Threading::Funneled).unwrap().0;
/// let world = universe.world();
/// let total = mpi::par_map_reduce(&world, 0..1_000usize, &(), jobs::sum(|x: usize, _: &()| x * x)).unwrap();
/// assert_eq!(total, 332_833_500);
/// ```
pub fn par_map_reduce<Comm, I, C, J>(comm: &Comm, items: I, ctx: &C, job: J) -> Result<J::Acc, Error>
where
    Comm: Communicator,
    I: IntoParallelIterator,
    I::Iter: IndexedParallelIterator,
    C: Sync + ?Sized,
    J: MapReduce<I::Item, C>,
    J::Acc: Serialize + DeserializeOwned,
{
    run_on_ranks(comm, items, ctx, job, Durability::default())
}

/// What a durable run adds on a rank: rank 0's view of its checkpoint
/// (where it resumes, and who hears of its progress and end), and on every
/// rank the checkpoint's path, for the `Error::Stopped` it returns.
pub(crate) struct Durability<'p, A> {
    pub(crate) prefix: Option<&'p mut dyn Prefix<A>>,
    pub(crate) path: Option<std::path::PathBuf>,
}

impl<A> Default for Durability<'_, A> {
    fn default() -> Self {
        Durability {
            prefix: None,
            path: None,
        }
    }
}

/// [`par_map_reduce`], durable when `durability` says so.
pub(crate) fn run_on_ranks<Comm, I, C, J>(
    comm: &Comm,
    items: I,
    ctx: &C,
    job: J,
    durability: Durability<'_, J::Acc>,
) -> Result<J::Acc, Error>
where
    Comm: Communicator,
    I: IntoParallelIterator,
    I::Iter: IndexedParallelIterator,
    C: Sync + ?Sized,
    J: MapReduce<I::Item, C>,
    J::Acc: Serialize + DeserializeOwned,
{
    assert!(
        rayon::current_thread_index().is_none(),
        "mapreduce::mpi::par_map_reduce must be called from a rank's own thread, not inside a parallel task"
    );
    let Durability { mut prefix, path } = durability;
    let items = items.into_par_iter();
    let len = items.len();
    let link = Link::new(comm);
    let config = Config::current();
    let workers = prepare(&config);
    // Agree that every rank can run, on the number of items, and on the
    // job: its type, its items' and its accumulator's (an SPMD slip that
    // passed one rank `jobs::sum` and another `jobs::collect` would decode
    // one accumulator as the other).
    let failed = if workers.is_err() { link.rank as u64 } else { u64::MAX };
    let kind = fingerprint::<I::Item, J, C>();
    let agreed = link.all_min(&[failed, len as u64, !(len as u64), kind, !kind]);
    if agreed[0] != u64::MAX {
        return Err(setup_failure(&link, agreed[0] as i32, workers));
    }
    let disagree = |what: String| Error::Config(ConfigError::RanksDisagree { what });
    let (fewest, most) = (agreed[1], !agreed[2]);
    if fewest != most {
        return Err(disagree(format!("the number of items ({fewest} to {most})")));
    }
    if agreed[3] != !agreed[4] {
        return Err(disagree("the job, item or accumulator types".to_owned()));
    }
    let workers = workers?;
    // Rank 0's config rules the mode and the display; a panic in its sink
    // (user code) fails the run on every rank rather than stranding them.
    let (mut monitor, watch_failure) = match link.rank {
        0 => match crate::engine::description_of(&job) {
            Ok(description) => {
                let mut monitor = Monitor::for_run(&config, &description, Some(len));
                let failure = monitor.as_mut().and_then(Monitor::take_failure);
                (monitor, failure)
            }
            Err(Error::Panicked { payload, .. }) => (None, Some(Panic::new(None, payload.into_inner()))),
            Err(other) => (None, Some(Panic::new(None, Box::new(other.to_string())))),
        },
        _ => (None, None),
    };
    // Rank 0's leaf size (automatic: from the length, the same everywhere)
    // goes to every rank with the other settings: the tree must agree.
    let leaf_size = crate::engine::tree::leaf_size(len, config.leaf_size()) as u64;
    // A durable run resumes after rank 0's saved prefix.
    let resumed = reborrow(&mut prefix).map(|prefix| prefix.start());
    let from = resumed.as_ref().map_or(0, |(done, _)| done.leaves);
    let mut settings = vec![u8::from(monitor.is_some()), u8::from(config.deterministic())];
    settings.extend(leaf_size.to_le_bytes());
    settings.extend(from.to_le_bytes());
    let settings = link.broadcast(0, settings);
    let (watched, deterministic) = (settings[0] == 1, settings[1] == 1);
    let leaf_size = u64::from_le_bytes(settings[2..10].try_into().expect("8 bytes of leaf size"));
    let from = u64::from_le_bytes(settings[10..18].try_into().expect("8 bytes of the first leaf")) as usize;
    let leaves = Leaves::new(len, leaf_size as usize);
    let config = config.with_deterministic(deterministic).with_leaf_size(leaves.size);
    log::debug!(
        "mpi run {:?}: rank {} of {}, {workers} worker(s), {len} items",
        crate::engine::description_of(&job).unwrap_or_default(),
        link.rank,
        link.size
    );
    let tally = Tally::new();
    if let Some((done, _)) = &resumed {
        tally.add(done.items);
        if let Some(monitor) = monitor.as_mut() {
            monitor.resumes_after(done.items);
        }
    }
    let tally = watched.then_some(&tally);
    let state = Shortcircuit::new(deterministic, None);
    crate::stop::watch(&config, &state);
    let run = Run::new(&job, ctx, config, state, tally);
    if let Some(panic) = watch_failure {
        run.fail(panic);
    }
    let node = Node {
        run: &run,
        link: &link,
        leaves,
        workers,
        tally,
        monitor: &mut monitor,
        from,
        resumed: resumed.map(|(_, stack)| stack),
        prefix: reborrow(&mut prefix),
    };
    let mut outcome = items.with_producer(node);
    // Rank 0's sink hears of the answer before the others are told it, so
    // that its panic (user code) fails every rank alike.
    if let (Some(monitor), Some(tally), Some(result)) = (monitor, tally, outcome.as_mut()) {
        if let Some(panic) = monitor.finish_as(tally, crate::progress::outcome_of(result)) {
            *result = Err(panic.into());
        }
    }
    // A durable run saves how it ended before the others hear of it, so
    // that every rank returns the same (a save that a stop needed and
    // could not have is every rank's error).
    if let (Some(prefix), Some(result)) = (prefix, outcome.as_mut()) {
        let ended = std::mem::replace(result, Err(Error::Cancelled));
        *result = prefix
            .conclude(ended.map(engine::into_value))
            .map(ControlFlow::Continue);
    }
    share_outcome(&link, outcome, path)
}

/// Rank 0: [`init_logging`](crate::init_logging). Other ranks: records
/// logged there (that pass `RUST_LOG`, default `warn`) are captured, carried
/// to rank 0 by the next run and printed by rank 0's logger with `rank N`
/// and the thread in the line (PyPhi's LogThread, across machines); those
/// ranks print none themselves. Records wait for a run to carry them (at
/// most 10,000; older ones are dropped and counted). Call it once, on every
/// rank, before the first run; a logger installed earlier is left alone.
///
/// ```no_run
/// let universe = ::mpi::initialize_with_threading(::mpi::Threading::Funneled).unwrap().0;
/// let world = universe.world();
/// mapreduce::mpi::init_logging(&world);
/// log::warn!("rank 0 prints this line, whichever rank logged it");
/// ```
pub fn init_logging<Comm: Communicator>(comm: &Comm) {
    logs::install(comm.rank());
}

/// A hash of the job's type, its items' and its accumulator's, the same on
/// every rank that runs the same build with the same job.
fn fingerprint<T, J: MapReduce<T, C>, C: ?Sized>() -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    (
        std::any::type_name::<J>(),
        std::any::type_name::<T>(),
        std::any::type_name::<J::Acc>(),
    )
        .hash(&mut hasher);
    hasher.finish()
}

/// Check the config and build the pool: the number of workers.
fn prepare(config: &Config) -> Result<usize, Error> {
    config.check()?;
    let workers = if config.parallel() { config.num_workers()? } else { 1 };
    pool::prepare(workers, config.parallel())?;
    Ok(workers)
}

/// Rank `failed` (the first that could not run) tells every rank why; each
/// rank returns its own error if it has one, else that rank's.
fn setup_failure(link: &Link, failed: i32, own: Result<usize, Error>) -> Error {
    let (is_config, reason) = match &own {
        Err(Error::Config(err)) => (true, err.to_string()),
        Err(Error::ThreadPool(reason)) => (false, reason.clone()),
        Err(other) => (false, other.to_string()),
        Ok(_) => (false, String::new()),
    };
    let told = link.broadcast(failed, wire::encode(&(is_config, reason)));
    if let Err(err) = own {
        return err;
    }
    let (is_config, reason): (bool, String) = wire::decode(&told, failed);
    if is_config {
        Error::Config(ConfigError::OnRank { rank: failed, reason })
    } else {
        Error::ThreadPool(format!("on rank {failed}: {reason}"))
    }
}

/// Rank 0 broadcasts the answer; every rank returns it. A durable run's
/// stop comes back with the checkpoint's path, `path`.
fn share_outcome<A>(
    link: &Link,
    outcome: Option<Result<ControlFlow<A, A>, Error>>,
    path: Option<std::path::PathBuf>,
) -> Result<A, Error>
where
    A: Serialize + DeserializeOwned,
{
    // An answer that cannot travel fails like a panic in user code (its
    // `Serialize` or `Deserialize`), without an item.
    let unencodable = |reason| Error::from(WirePanic::without_item(reason).into_panic());
    let Some(outcome) = outcome else {
        let told = link.broadcast(0, Vec::new());
        return match wire::decode(&told, 0) {
            WireOutcome::Value(bytes) => wire::decode_acc(&bytes).map_err(unencodable),
            WireOutcome::Panicked(panic) => Err(panic.into_panic().into()),
            WireOutcome::Cancelled => Err(Error::Cancelled),
            WireOutcome::Stopped { done } => Err(Error::Stopped { done, checkpoint: path }),
            #[cfg(feature = "durable")]
            WireOutcome::Checkpoint(reason) => Err(Error::Checkpoint(crate::durable::CheckpointError::on_rank_0(
                path.as_deref().unwrap_or(std::path::Path::new("")),
                reason,
            ))),
        };
    };
    let (told, outcome) = match outcome.map(engine::into_value) {
        // The other ranks must be able to decode what they are told.
        Ok(acc) => match wire::encode_acc(&acc).and_then(|bytes| wire::decode_acc::<A>(&bytes).map(|_| bytes)) {
            Ok(bytes) => (WireOutcome::Value(bytes), Ok(acc)),
            Err(reason) => (
                WireOutcome::Panicked(WirePanic::without_item(reason.clone())),
                Err(unencodable(reason)),
            ),
        },
        Err(Error::Cancelled) => (WireOutcome::Cancelled, Err(Error::Cancelled)),
        Err(Error::Stopped { done, checkpoint }) => {
            (WireOutcome::Stopped { done }, Err(Error::Stopped { done, checkpoint }))
        }
        #[cfg(feature = "durable")]
        Err(Error::Checkpoint(err)) => (WireOutcome::Checkpoint(err.to_string()), Err(Error::Checkpoint(err))),
        Err(err) => (WireOutcome::Panicked(WirePanic::of_error(&err)), Err(err)),
    };
    link.broadcast(0, wire::encode(&told));
    outcome
}
