//! Durable runs across ranks (features `mpi` and `durable`): rank 0 alone
//! reads and writes the checkpoint; every rank hears how reading it went
//! before the run starts, and every rank stops when any rank is stopped.

use rayon::iter::{IndexedParallelIterator, IntoParallelIterator};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::link::Link;
use super::wire;
use super::{run_on_ranks, Durability};
use crate::config::Config;
use crate::durable::{self, Checkpoint, CheckpointError, Loaded};
use crate::engine::tree;
use crate::error::Error;
use crate::job::MapReduce;

/// What rank 0 found in the checkpoint, told to every rank.
#[derive(Serialize, Deserialize)]
enum Found {
    /// Run, from the prefix rank 0 read (it tells the first leaf later).
    Run,
    /// The search is done: its answer, encoded.
    Answer(Vec<u8>),
    /// The checkpoint cannot be used: why.
    Refused(String),
}

/// [`par_map_reduce`](super::par_map_reduce), durable: rank 0 saves the
/// completed prefix in `checkpoint`'s file as
/// [`durable::par_map_reduce_durable`](crate::durable::par_map_reduce_durable)
/// does, and a rerun resumes it, with any number of ranks and workers, and
/// answers the bits of an uninterrupted single-process run. Collective: every
/// rank calls it with the same items, job and checkpoint (the same path and
/// key; only rank 0 touches the file, so it need not be on a shared
/// filesystem, but rank 0 of the rerun must see it).
///
/// A stop anywhere stops every rank: [`StopHandle::stop`](crate::StopHandle::stop)
/// on any rank, or a signal when the checkpoint has
/// [`stop_on_signals`](Checkpoint::stop_on_signals) (OpenMPI's `mpirun`
/// forwards SIGUSR1 and SIGUSR2 to every rank as they are; a SIGTERM to
/// `mpirun` is followed by SIGKILL after a short grace, so the periodic
/// checkpoint is what survives it; `srun` forwards the signals it is asked
/// to). Every rank returns [`Error::Stopped`], whose `checkpoint` is the
/// path each rank was given.
///
/// ```no_run
/// use mapreduce::durable::Checkpoint;
/// use mapreduce::{jobs, mpi};
///
/// let universe = ::mpi::initialize_with_threading(::mpi::Threading::Funneled).unwrap().0;
/// let world = universe.world();
/// let checkpoint = Checkpoint::new("search.ckpt", "min cost, 2^30 cuts").stop_on_signals(true);
/// let cost = |cut: usize, _: &()| (cut * 7919 % 1_000_003, cut);
/// match mpi::par_map_reduce_durable(&world, 0..1usize << 30, &(), jobs::min_by_key(cost), &checkpoint) {
///     Ok(best) => println!("{best:?}"),
///     Err(mapreduce::Error::Stopped { .. }) => std::process::exit(85), // resume me
///     Err(err) => panic!("{err}"),
/// }
/// ```
pub fn par_map_reduce_durable<Comm, I, C, J>(
    comm: &Comm,
    items: I,
    ctx: &C,
    job: J,
    checkpoint: &Checkpoint,
) -> Result<J::Acc, Error>
where
    Comm: ::mpi::topology::Communicator,
    I: IntoParallelIterator,
    I::Iter: IndexedParallelIterator,
    C: Sync + ?Sized,
    J: MapReduce<I::Item, C>,
    J::Acc: Serialize + DeserializeOwned,
{
    let items = items.into_par_iter();
    let len = items.len();
    let config = Config::current();
    let path = checkpoint.path().to_owned();
    let link = Link::new(comm);
    if link.rank != 0 {
        let found: Found = wire::decode(&link.broadcast(0, Vec::new()), 0);
        return match found {
            Found::Refused(reason) => Err(Error::Checkpoint(CheckpointError::on_rank_0(&path, reason))),
            Found::Answer(bytes) => wire::decode_acc(&bytes).map_err(|reason| {
                Error::Checkpoint(CheckpointError::on_rank_0(
                    &path,
                    format!("its answer does not decode here: {reason}"),
                ))
            }),
            Found::Run => {
                let _listening = durable::listen_for_signals(checkpoint);
                let durability = Durability {
                    prefix: None,
                    path: Some(path),
                };
                let config = config.with_durable_stop(checkpoint.stop_handle());
                config.scope(|| run_on_ranks(comm, items, ctx, job, durability))
            }
        };
    }
    let leaf_size = tree::leaf_size(len, config.leaf_size());
    let tell = |found: &Found| {
        link.broadcast(0, wire::encode(found));
    };
    match durable::open_indexed::<J::Acc>(checkpoint, len, leaf_size, config.deterministic()) {
        Err(err) => {
            tell(&Found::Refused(match &err {
                Error::Checkpoint(err) => err.problem_text(),
                other => other.to_string(),
            }));
            Err(err)
        }
        Ok((_, Loaded::Finished(answer))) => match wire::encode_acc(&answer) {
            Ok(bytes) => {
                tell(&Found::Answer(bytes));
                Ok(answer)
            }
            Err(reason) => {
                tell(&Found::Refused(format!("its answer cannot be sent: {reason}")));
                Err(Error::Checkpoint(CheckpointError::on_rank_0(&path, reason)))
            }
        },
        Ok((session, Loaded::Running(done, stack))) => {
            tell(&Found::Run);
            session.run_concluding(config, done, stack, |prefix| {
                let durability = Durability {
                    prefix: Some(prefix),
                    path: Some(path),
                };
                run_on_ranks(comm, items, ctx, job, durability)
            })?
        }
    }
}
