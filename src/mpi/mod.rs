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
//! // Every rank's records logged after its last run, printed by rank 0.
//! mpi::flush_logs(&world).unwrap();
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
//! **Waiting costs no core; data moves at full speed.** A rank's calling
//! thread talks to the others while its pool computes. Open MPI moves a
//! non-blocking message or collective only while the rank is inside an MPI
//! call, and its blocking calls poll a core, so every wait here is a
//! non-blocking call tested at once and again for 100 µs (a partner that
//! is there answers within microseconds: a run of a few items costs tens
//! of microseconds per rank, not milliseconds), then between sleeps that
//! grow to 2 ms (a rank that waits for long costs next to no CPU, so one
//! worker per core keeps its core). Bulk data (block results, the answer)
//! moves only once the ranks it concerns are known to be there, tested
//! without pause, so it moves as fast as the copies go. The run's private
//! duplicate of `comm` is made by its first run and kept on `comm` (an MPI
//! attribute, freed with it).
//!
//! **Failures.** A panic on any rank is [`Error::Panicked`] on every rank,
//! naming the item; ranks other than the one that panicked get the message
//! as the payload. A panic in `merge` fails the run (which failure is
//! reported, when there are several, can depend on the rank that ran the
//! `merge`); so does a panic in rank 0's progress sink, at any point, and
//! in the logger of rank 0 of the logging communicator as it prints other
//! ranks' records. An invalid config on any rank is an error on every rank
//! ([`ConfigError::OnRank`] on the others). Every rank ends every run with
//! the same outcome: before returning, the ranks agree, so a failure that
//! only one rank sees (its `Deserialize` refuses the answer, its logger
//! panics) is every rank's [`Error::Panicked`], without an item, with the
//! same message (naming that rank).
//!
//! **Accumulators** travel encoded with postcard, which cannot read what
//! needs a self-describing format (`#[serde(untagged)]`, `flatten`,
//! `serde_json::Value`); such an answer fails the run on every rank with an
//! `Error::Panicked` saying it could not be decoded. One message carries at
//! most 2 GiB.
//!
//! **What every rank must keep the same.** [`par_map_reduce`] is a
//! collective call, like MPI's own: every rank of `comm` calls it, in the
//! same order as its other collective calls on `comm`, with
//! - the same items (the same number of them, and the same item at each
//!   index: only indices travel, each rank reads its blocks from its own
//!   `items`),
//! - the same job (the same type, and the same behaviour: blocks run on
//!   whichever rank asked, their results are joined on rank 0),
//! - the same accumulator type, from the same build of the program.
//!
//! The crate checks what it can: ranks that differ in the number of items,
//! the job's type or the item or accumulator type all get
//! [`ConfigError::RanksDisagree`] (a fingerprint of the types and the
//! count is compared as the run starts). What it cannot see (the same type
//! over other data, a job whose `compute` depends on the rank, a `ctx`
//! that differs) gives an answer that is a mix of the ranks' views, the
//! same on every rank. A rank that does not call at all, or calls another
//! collective instead, leaves the others waiting for it forever: that is
//! MPI's nature (no rank can tell a late rank from an absent one), not
//! something a library can detect. The advice that avoids it: make the
//! call unconditionally, on every rank, outside any `if rank == ...`; keep
//! what differs between ranks in `ctx`, and branch on the result, after
//! the call; a rank that fails before the call should still make it (an
//! error in its config is then every rank's error) or abort the whole job
//! (`MPI_Abort`, or `panic` with `mpirun` killing the rest).
//!
//! **Progress and logs.** Rank 0 alone draws the bar, counting every rank's
//! items. Under `mpirun` its stderr is a pipe, so the bar needs
//! `MAPREDUCE_PROGRESS=always` (or
//! [`Config::with_progress_bars_always`](crate::Config::with_progress_bars_always)).
//! With [`init_logging`] on every rank, the other ranks' records are
//! printed by rank 0 of that communicator, with the sender's rank in it and
//! its thread in the line, whatever communicator the runs use; records
//! logged after a rank's last run are printed by [`flush_logs`].
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
use wire::{WireOutcome, WirePanic, WireSetup};

/// Run `job` over `items` on every rank of `comm`, each rank using its own
/// pool under the current [`Config`]; every rank returns the same answer,
/// equal to [`seq_map_reduce`](crate::seq_map_reduce)'s in deterministic
/// mode. A `Break` on any rank stops every rank promptly. See the
/// [module docs](self) for how a run goes.
///
/// Collective: every rank of `comm` must call it, with the same items and
/// the same job (the same job, item and accumulator types, from the same
/// build); ranks that differ in the number of items or in these types get
/// [`ConfigError::RanksDisagree`], every one of them (see "What every rank
/// must keep the same" in the [module docs](self)). A rank that skips the
/// call leaves the others waiting, as any MPI collective does: call it on
/// every rank, or on none.
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
    let rank = comm.rank();
    let config = Config::current();
    // A logger that panics (in `prepare`'s notes) is a failure to run.
    let workers = crate::error::catch_panic(|| prepare(&config)).and_then(|workers| workers);
    // Rank 0's config rules the mode, the display and the leaf size (from
    // the length, the same everywhere: the tree must agree).
    let leaf_size = crate::engine::tree::leaf_size(len, config.leaf_size()) as u64;
    let flags = u64::from(Monitor::wanted(&config)) | u64::from(config.deterministic()) << 1;
    // A durable run resumes after rank 0's saved prefix: its first leaf.
    let resumed = reborrow(&mut prefix).map(|prefix| prefix.start());
    let from = resumed.as_ref().map_or(0, |(done, _)| done.leaves);
    let (leaf_size, flags, from) = if rank == 0 {
        (leaf_size, flags, from)
    } else {
        (u64::MAX, u64::MAX, u64::MAX)
    };
    // Agree that every rank can run, on the number of items, and on the
    // job: its type, its items' and its accumulator's (an SPMD slip that
    // passed one rank `jobs::sum` and another `jobs::collect` would decode
    // one accumulator as the other); and hear rank 0's settings. The first
    // collective of the run, on the caller's communicator: it waits for
    // every rank without a busy core.
    let failed = if workers.is_err() { rank as u64 } else { u64::MAX };
    let kind = fingerprint::<I::Item, J, C>();
    let agreed = link::all_min(
        comm,
        &[failed, len as u64, !(len as u64), kind, !kind, leaf_size, flags, from],
    );
    let link = Link::new(comm);
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
    let (leaf_size, watched, deterministic) = (agreed[5], agreed[6] & 1 == 1, agreed[6] & 2 == 2);
    let from = agreed[7] as usize;
    // A panic in rank 0's sink (user code) fails the run on every rank
    // rather than stranding them.
    let (mut monitor, watch_failure) = match (link.rank, watched) {
        (0, true) => match crate::engine::description_of(&job) {
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
    let leaves = Leaves::new(len, leaf_size as usize);
    let config = config.with_deterministic(deterministic).with_leaf_size(leaves.size);
    // The application's logger may panic: on any rank, that fails the run
    // on every rank, when it ends.
    let log_failure = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        log::debug!(
            "mpi run {:?}: rank {} of {}, {workers} worker(s), {len} items",
            crate::engine::description_of(&job).unwrap_or_default(),
            link.rank,
            link.size
        );
    }))
    .err()
    .map(|payload| Panic::new(None, payload));
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
    share_outcome(&link, outcome, log_failure, path)
}

/// Rank 0 of `comm`: [`init_logging`](crate::init_logging). Other ranks:
/// records logged there (that pass `RUST_LOG`, default `warn`) are
/// captured and sent to rank 0 of `comm`, which prints them with its logger,
/// with `rank N` (the sender's rank in `comm`) and the thread in the line
/// (PyPhi's LogThread, across machines); those ranks print none themselves.
///
/// Records travel over a private duplicate of `comm`, whatever
/// communicator the runs use (`comm` itself, a `split_by_color` of it,
/// `self_comm()`): a rank sends what waits at every turn of its runs'
/// loops; rank 0 prints what arrived while it coordinates a run and as each
/// of its runs ends. Records logged after a rank's last run are printed by
/// [`flush_logs`], which every rank calls at the end (or whenever all
/// should be printed); without it, records still waiting when MPI
/// finalizes are printed by their own rank on its stderr, with a line that
/// says so. What waits on a rank is bounded: 4 MiB of text (a record's
/// text is cut at 2 KiB); beyond that the oldest records are dropped, and
/// rank 0 prints how many in one line.
///
/// Collective: call it once, on every rank of `comm`, before the first run
/// (later calls change nothing); a logger installed earlier is left alone.
///
/// ```no_run
/// let universe = ::mpi::initialize_with_threading(::mpi::Threading::Funneled).unwrap().0;
/// let world = universe.world();
/// mapreduce::mpi::init_logging(&world);
/// log::warn!("rank 0 prints this line, whichever rank logged it");
/// mapreduce::mpi::flush_logs(&world).unwrap();
/// ```
pub fn init_logging<Comm: Communicator>(comm: &Comm) {
    logs::install(comm);
}

/// Print every record logged so far on any rank of the communicator given
/// to [`init_logging`]: each rank sends what waits, rank 0 prints all of it
/// before any rank returns. Call it at the end of the program (records
/// logged after a rank's last run wait for it), on every rank of that
/// communicator (`comm`): it is collective. Without `init_logging`, it does
/// nothing.
///
/// A panic in rank 0's logger (the application's) is returned as
/// [`Error::Panicked`] on every rank.
///
/// ```no_run
/// let universe = ::mpi::initialize_with_threading(::mpi::Threading::Funneled).unwrap().0;
/// let world = universe.world();
/// mapreduce::mpi::init_logging(&world);
/// // ... runs ...
/// log::info!("done here");
/// mapreduce::mpi::flush_logs(&world).unwrap();
/// ```
pub fn flush_logs<Comm: Communicator>(comm: &Comm) -> Result<(), Error> {
    let _ = comm;
    logs::flush()
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
fn setup_failure(link: &Link<'_>, failed: i32, own: Result<usize, Error>) -> Error {
    let told = match &own {
        Err(Error::Config(err)) => WireSetup::Config(err.to_string()),
        Err(Error::ThreadPool(reason)) => WireSetup::ThreadPool(reason.clone()),
        Err(other) => WireSetup::Panicked(WirePanic::of_error(other)),
        Ok(_) => WireSetup::Panicked(WirePanic::without_item(String::new())),
    };
    let told = link.broadcast(failed, wire::encode(&told));
    if let Err(err) = own {
        return err;
    }
    match wire::decode(&told, failed) {
        WireSetup::Config(reason) => Error::Config(ConfigError::OnRank { rank: failed, reason }),
        WireSetup::ThreadPool(reason) => Error::ThreadPool(format!("on rank {failed}: {reason}")),
        WireSetup::Panicked(panic) => panic.into_panic().into(),
    }
}

/// Rank 0 broadcasts the answer; every rank returns it, unless a rank
/// could not decode it or had another failure of user code (`own`; or
/// rank 0 of the logging communicator, whose logger may panic as it prints
/// the records that arrived): then every rank returns the failure of the
/// lowest such rank.
fn share_outcome<A>(
    link: &Link<'_>,
    outcome: Option<Result<ControlFlow<A, A>, Error>>,
    own: Option<Panic>,
    path: Option<std::path::PathBuf>,
) -> Result<A, Error>
where
    A: Serialize + DeserializeOwned,
{
    // An answer that cannot travel fails like a panic in user code (its
    // `Serialize` or `Deserialize`), without an item.
    let unencodable = |reason| Error::from(WirePanic::without_item(reason).into_panic());
    let mut own = own.map(|panic| crate::error::panic_message(panic.payload.as_ref()));
    // What rank 0 broadcast, the same on every rank (`None`: it does not
    // decode here).
    let shared = match outcome {
        None => match wire::decode(&link.broadcast(0, Vec::new()), 0) {
            WireOutcome::Value(bytes) => match wire::decode_acc(&bytes) {
                Ok(acc) => Some(Ok(acc)),
                Err(reason) => {
                    own = own.or(Some(format!("on rank {}: {reason}", link.rank)));
                    None
                }
            },
            WireOutcome::Panicked(panic) => Some(Err(panic.into_panic().into())),
            WireOutcome::Cancelled => Some(Err(Error::Cancelled)),
            // A durable run's stop: `checkpoint` is this rank's path.
            WireOutcome::Stopped { done } => Some(Err(Error::Stopped { done, checkpoint: path })),
            #[cfg(feature = "durable")]
            WireOutcome::Checkpoint(reason) => Some(Err(Error::Checkpoint(
                crate::durable::CheckpointError::on_rank_0(path.as_deref().unwrap_or(std::path::Path::new("")), reason),
            ))),
        },
        Some(outcome) => {
            let (told, shared) = match outcome.map(engine::into_value) {
                // Alone, rank 0 checks that the answer decodes, as the
                // others would (with others, their decoding is the check).
                Ok(acc) => match wire::encode_acc(&acc).and_then(|bytes| {
                    if link.size == 1 {
                        wire::decode_acc::<A>(&bytes)?;
                    }
                    Ok(bytes)
                }) {
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
            // Every other rank has said `Finished` and is on its way here.
            link.broadcast(0, wire::encode(&told));
            Some(shared)
        }
    };
    let printed = logs::print_arrived().map(|panic| crate::error::panic_message(panic.payload.as_ref()));
    let agreed = link.agree_on_failure(own.or(printed));
    match (shared, agreed) {
        // A failure rank 0 told every rank stays the run's failure.
        (Some(Err(err)), _) => Err(err),
        (Some(Ok(acc)), None) => Ok(acc),
        (_, Some((_, message))) => Err(unencodable(message)),
        (None, None) => unreachable!("a rank that could not decode the answer says so"),
    }
}
