//! Durable runs: checkpoint, stop, resume (cargo feature `durable`).
//!
//! A search that runs for hours gets killed: Ctrl-C, a batch system's time
//! limit or preemption, the OOM killer, a node that dies. A durable run
//! saves its completed prefix now and then — the leaves of the fixed tree
//! done so far and their pending accumulators (crate docs, "Reproducible
//! reductions") — so that the same command, run again, resumes and returns
//! bit for bit what an uninterrupted run returns.
//!
//! ```
//! use mapreduce::durable::{par_map_reduce_durable, Checkpoint};
//! use mapreduce::jobs;
//!
//! let path = std::env::temp_dir().join(format!("mapreduce-doc-quick-{}.ckpt", std::process::id()));
//! let checkpoint = Checkpoint::new(&path, "harmonic sum, 10^6 terms");
//! let job = || jobs::sum(|k: usize, _: &()| 1.0 / (k as f64 + 1.0));
//! let sum = par_map_reduce_durable(0..1_000_000usize, &(), job(), &checkpoint).unwrap();
//! // Run again: the saved answer comes back at once, `compute` never called.
//! assert_eq!(par_map_reduce_durable(0..1_000_000usize, &(), job(), &checkpoint).unwrap().to_bits(), sum.to_bits());
//! # std::fs::remove_file(&path).unwrap();
//! ```
//!
//! # What is promised
//!
//! - **Resume.** A run finds the file its [`Checkpoint`] names; saved under
//!   the same key, for an input of the same length, leaf size and mode, by
//!   this format version and for the same accumulator type, it starts after
//!   the saved prefix, and its answer is bit for bit an uninterrupted run's,
//!   with any worker count (and, under MPI, any rank count). It logs at info
//!   level how many items were saved and when. The progress bar starts at
//!   the saved count.
//! - **Done is remembered.** A run that ends with an answer (complete, or at
//!   a `Break`) saves it; running it again returns it at once, calling
//!   `compute` on nothing (and says so at info level).
//! - **Bounded loss.** The prefix is saved every [`Checkpoint::every`]
//!   (60 s by default) at the end of a block of leaves; durable runs start
//!   with a block of a leaf per worker, then keep their blocks to about a
//!   quarter of the interval, and at most a second, at the pace seen so far,
//!   with at least a leaf per worker. After a `kill -9`, at most the interval plus the block in
//!   flight is lost, and what was done while the last checkpoint was being
//!   written (milliseconds on a local disk). Only the contiguous prefix is
//!   saved: leaves done right of an unfinished one are done again.
//! - **Stop.** [`StopHandle::stop`] (from any thread), or SIGINT, SIGTERM or
//!   SIGUSR1 under [`Checkpoint::stop_on_signals`], cancels the items in
//!   flight ([`is_cancelled`](crate::is_cancelled) turns true), saves the
//!   prefix and returns [`Error::Stopped`] within about the time of one
//!   item. The block it cuts short is done again by the next run: at most
//!   a second's work, or a leaf per worker. A second signal ends the
//!   process at once. Batch scripts
//!   requeue on exit code 85 ("stopped, resume me"; README "Long runs").
//! - **Panics.** A panic returns [`Error::Panicked`] after saving the prefix
//!   before the block it happened in; a rerun retries from there.
//! - **Crash-safe files.** Each checkpoint goes to a temporary file beside
//!   the real one, is flushed to disk, renamed over it, and the directory is
//!   flushed: a kill at any moment leaves the old file or the new one, both
//!   whole. Writes happen on a thread of their own, never on a worker. A
//!   failed write is logged (warning) and tried again at the next interval;
//!   the final one (the answer, or the prefix of a stop) is reported. The
//!   checkpoint must be writable when a run starts — its directory, and the
//!   file if there is one — else [`Error::Checkpoint`] at once, before any
//!   item is computed (a saved answer is returned from a read-only file).
//!   A FIFO, socket or device in its place is refused without opening it.
//! - **One process per file.** A run holds an advisory lock (`flock`) on
//!   `<path>.lock` while it runs; a second run on the same file, in this
//!   process or another, gets [`Error::Checkpoint`] ([`CheckpointProblem::Locked`])
//!   once the lock has stayed held for half a second (a child process
//!   forked while a run holds the lock shares it until it execs).
//! - **Bad files never lie.** A truncated, damaged (a checksum over the
//!   whole file), foreign (another key, length, leaf size, mode or
//!   accumulator type) or other-version file is [`Error::Checkpoint`] naming
//!   the path and the reason: never a panic, never a wrong answer. To start
//!   over after fixing a bug under the same key, delete the file or use
//!   [`Checkpoint::fresh`].
//!
//! # What is not
//!
//! - **`compute` may run more than once per item**: items of the block in
//!   flight when a run is killed or stopped are computed again by the next
//!   run. Side effects of `compute` (files written, counters) must tolerate
//!   that.
//! - **The key is yours.** It must name the job *and its parameters*: a run
//!   with the same key, length and types but another cost function resumes
//!   the old prefix. Put everything that changes the answer in it.
//! - **The accumulator type is checked by name** (`std::any::type_name`),
//!   not by layout: changing a field of your accumulator type under the same
//!   key and name may decode as garbage or fail; change the key when you
//!   change the type.
//! - **After `kill -9` or a power cut**, the last checkpoint written is what
//!   remains: the work since then is lost (see "Bounded loss"). The lock
//!   goes with the process.
//! - **Platforms.** Linux first. On macOS, flushing a file is `F_FULLFSYNC`
//!   (std's `sync_all`), slower but real. On network filesystems (NFS,
//!   Lustre), `flock` locks may be local to a node or unsupported, and a
//!   rename is atomic only as the server makes it: give the file a path on
//!   a local or cluster filesystem that supports them, and never run two
//!   jobs on one file. Signals are Unix only; elsewhere the stop handle is
//!   the way.
//!
//! # The file
//!
//! A small binary file (a versioned header, the accumulators encoded with
//! [postcard](https://docs.rs/postcard), a CRC-32 checksum), a few hundred
//! bytes plus about log2(leaves) accumulators. The accumulator needs
//! `serde`'s `Serialize` and `DeserializeOwned`; postcard cannot read what
//! needs a self-describing format (`#[serde(untagged)]`, `flatten`).

mod error;
mod file;
mod session;
mod signals;
mod store;

use session::Session;
pub(crate) use session::{open_indexed, Loaded};

use std::path::{Path, PathBuf};
use std::time::Duration;

use rayon::iter::{IndexedParallelIterator, IntoParallelIterator};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use error::{CheckpointError, CheckpointProblem};

use crate::config::Config;
use crate::engine::tree;
use crate::error::{catch_panic, Error};
use crate::job::MapReduce;
use crate::stream;
use crate::StopHandle;
use file::{Input, Meta};

/// Where and how often a durable run saves its progress, and how it is
/// stopped. See the [module docs](self).
///
/// ```
/// use std::time::Duration;
/// use mapreduce::durable::Checkpoint;
///
/// let checkpoint = Checkpoint::new("min_cut.ckpt", "min cut, network 7, 24 nodes")
///     .every(Duration::from_secs(30))
///     .stop_on_signals(true);
/// let stop = checkpoint.stop_handle(); // for another thread, a UI, a timer
/// # let _ = stop;
/// ```
#[derive(Clone, Debug)]
pub struct Checkpoint {
    path: PathBuf,
    key: String,
    interval: Duration,
    signals: bool,
    fresh: bool,
    stop: StopHandle,
}

impl Checkpoint {
    /// A checkpoint at `path` for the search named `key`. The key names the
    /// job and its parameters: a file saved under another key, another input
    /// length or another leaf size is refused, never resumed.
    pub fn new(path: impl Into<PathBuf>, key: impl Into<String>) -> Checkpoint {
        Checkpoint {
            path: path.into(),
            key: key.into(),
            interval: Duration::from_secs(60),
            signals: false,
            fresh: false,
            stop: StopHandle::new(),
        }
    }

    /// Save the completed prefix every `interval` (default 60 s). A run
    /// shorter than its interval writes only its answer.
    pub fn every(mut self, interval: Duration) -> Checkpoint {
        self.interval = interval;
        self
    }

    /// On: SIGINT, SIGTERM and SIGUSR1 stop the run gracefully while it
    /// runs (its prefix saved, [`Error::Stopped`]); a second signal takes
    /// its default action (the process ends). The handlers are installed
    /// the first time a run asks and stay (signal-hook cannot remove them),
    /// but outside runs that asked, a signal keeps its default effect. Off
    /// by default: no handler is ever installed unless asked for. Unix only;
    /// elsewhere this is ignored, with a warning, and
    /// [`stop_handle`](Self::stop_handle) is the way.
    pub fn stop_on_signals(mut self, on: bool) -> Checkpoint {
        self.signals = on;
        self
    }

    /// On: ignore any saved file and start over (it is replaced at the first
    /// save): the way out after fixing a bug under the same key.
    pub fn fresh(mut self, on: bool) -> Checkpoint {
        self.fresh = on;
        self
    }

    /// The handle that stops runs of this checkpoint (clones of the
    /// checkpoint share it). Once pulled it stays pulled: a later run with
    /// it stops at once, saving nothing new; make a new `Checkpoint` to go on.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// What the file holds, read without running anything (and without
    /// the lock: a run may be replacing it meanwhile, and its answer is
    /// whichever whole file was there): `None` if there is no file yet. For
    /// a command line that says where it stands before it starts, or a
    /// batch script deciding whether to submit. Whether a run would resume
    /// it (the same key, input, leaf size, mode and types) is for the run
    /// to check; [`Saved::key`] says whose it is.
    ///
    /// ```
    /// use mapreduce::durable::{par_map_reduce_durable, Checkpoint};
    /// use mapreduce::jobs;
    ///
    /// let path = std::env::temp_dir().join(format!("mapreduce-doc-saved-{}.ckpt", std::process::id()));
    /// let checkpoint = Checkpoint::new(&path, "count");
    /// assert!(checkpoint.saved().unwrap().is_none());
    /// par_map_reduce_durable(0..1000usize, &(), jobs::count(|_: &usize, _: &()| true), &checkpoint).unwrap();
    /// let saved = checkpoint.saved().unwrap().unwrap();
    /// assert!(saved.finished && saved.key == "count");
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn saved(&self) -> Result<Option<Saved>, Error> {
        let Some(bytes) = store::read(&self.path).map_err(Error::Checkpoint)? else {
            return Ok(None);
        };
        let (meta, rest) = file::decode_meta(&self.path, &bytes).map_err(Error::Checkpoint)?;
        let (items, finished) = match file::decode_head(&self.path, rest).map_err(Error::Checkpoint)? {
            file::StateHead::Running { items, .. } => (items, false),
            file::StateHead::Finished => (0, true),
        };
        Ok(Some(Saved {
            key: meta.key,
            items,
            finished,
            saved_at: std::time::UNIX_EPOCH + Duration::from_secs(meta.saved_at),
        }))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The search's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// How often the prefix is saved.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

/// What a checkpoint file holds ([`Checkpoint::saved`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Saved {
    /// The key it was saved under.
    pub key: String,
    /// The items of the saved prefix, while the search is not finished.
    pub items: u64,
    /// Whether the search is done and its answer saved.
    pub finished: bool,
    /// When it was written (to the second).
    pub saved_at: std::time::SystemTime,
}

/// [`par_map_reduce_in_order`](crate::par_map_reduce_in_order), durable:
/// the completed prefix saved in `checkpoint`'s file every interval and
/// when the run stops or panics, the answer saved when it ends, and a saved
/// prefix resumed (see the [module docs](self)). The answer is the same
/// bits as `par_map_reduce_in_order`'s with the same leaf size, however
/// often the run was stopped, killed and resumed.
///
/// ```
/// use mapreduce::durable::{par_map_reduce_durable, Checkpoint};
/// use mapreduce::{jobs, Error};
///
/// let path = std::env::temp_dir().join(format!("mapreduce-doc-stop-{}.ckpt", std::process::id()));
/// let job = || jobs::min_by_key(|cut: usize, _: &()| (cut * 7919 % 100_003, cut));
/// let checkpoint = Checkpoint::new(&path, "cuts of network 1");
/// // Stopped (here at once; in life by Ctrl-C, SIGTERM or another thread):
/// checkpoint.stop_handle().stop();
/// let err = par_map_reduce_durable(0..1_000_000usize, &(), job(), &checkpoint).unwrap_err();
/// assert!(matches!(err, Error::Stopped { .. }));
/// // The same command resumes (with a new `Checkpoint`, whose handle is not pulled).
/// let best = par_map_reduce_durable(0..1_000_000usize, &(), job(), &Checkpoint::new(&path, "cuts of network 1")).unwrap();
/// assert_eq!(best, Some((0, 0)));
/// # std::fs::remove_file(&path).unwrap();
/// ```
///
/// # Errors
///
/// Those of `par_map_reduce_in_order`, and [`Error::Stopped`] (the prefix
/// saved), [`Error::Checkpoint`] (a file that cannot be used, or the final
/// save of a stop failing).
pub fn par_map_reduce_durable<I, C, J>(items: I, ctx: &C, job: J, checkpoint: &Checkpoint) -> Result<J::Acc, Error>
where
    I: IntoParallelIterator,
    I::Iter: IndexedParallelIterator,
    C: Sync + ?Sized,
    J: MapReduce<I::Item, C>,
    J::Acc: Serialize + DeserializeOwned,
{
    let config = Config::current();
    config.check()?;
    let items = items.into_par_iter();
    let len = items.len();
    let leaf_size = tree::leaf_size(len, config.leaf_size());
    let (session, loaded) = open_indexed::<J::Acc>(checkpoint, len, leaf_size, config.deterministic())?;
    let (done, stack) = match loaded {
        Loaded::Finished(answer) => return Ok(answer),
        Loaded::Running(done, stack) => (done, stack),
    };
    session.run(config, done, stack, |saver| {
        crate::engine::map_reduce_durable(items, ctx, &job, done.items as usize, saver)
    })
}

/// [`par_map_reduce_iter`](crate::par_map_reduce_iter), durable: like
/// [`par_map_reduce_durable`], for a plain iterator. A resume reads and
/// drops the saved prefix's items (without computing them), so the
/// iterator must yield the same items in the same order on every run: a
/// file, a generator with a fixed seed, a range. The input's length, when
/// its `size_hint` is exact, is part of what a checkpoint must match;
/// an input that ends before the saved prefix does is
/// [`Error::Checkpoint`] ([`CheckpointProblem::InputTooShort`]).
///
/// ```
/// use mapreduce::durable::{par_map_reduce_iter_durable, Checkpoint};
/// use mapreduce::jobs;
///
/// let path = std::env::temp_dir().join(format!("mapreduce-doc-iter-{}.ckpt", std::process::id()));
/// let lines = || (0..50_000u64).map(|i| format!("record {i}"));
/// let count = |cp: &Checkpoint| {
///     par_map_reduce_iter_durable(lines(), &(), mapreduce::jobs::count(|line: &String, _: &()| line.contains('7')), cp)
/// };
/// let checkpoint = Checkpoint::new(&path, "records with a 7");
/// checkpoint.stop_handle().stop();
/// assert!(count(&checkpoint).is_err()); // stopped at once, an empty prefix saved
/// let expected = lines().filter(|line| line.contains('7')).count();
/// assert_eq!(count(&Checkpoint::new(&path, "records with a 7")).unwrap(), expected);
/// # std::fs::remove_file(&path).unwrap();
/// ```
pub fn par_map_reduce_iter_durable<I, C, J>(items: I, ctx: &C, job: J, checkpoint: &Checkpoint) -> Result<J::Acc, Error>
where
    I: IntoIterator,
    I::Item: Send,
    C: Sync + ?Sized,
    J: MapReduce<I::Item, C>,
    J::Acc: Serialize + DeserializeOwned,
{
    let config = Config::current();
    config.check()?;
    let workers = if config.parallel() { config.num_workers()? } else { 1 };
    let description = crate::engine::description_of(&job)?;
    let mut items = catch_panic(|| items.into_iter())?;
    let opened = stream::exact_len(&mut items).and_then(|total| {
        let leaves = stream::Leaves::new(config.leaf_size(), total);
        let meta = Meta {
            key: checkpoint.key.clone(),
            acc_type: std::any::type_name::<J::Acc>().to_owned(),
            input: Input::Stream(total.map(|n| n as u64)),
            leaf_size: leaves.fixed().unwrap_or(0) as u64,
            deterministic: config.deterministic(),
            saved_at: 0,
        };
        let session = Session::open(checkpoint, meta)?;
        let items_in = |done: u64| {
            let items = leaves.items_in(done)?;
            match total.map(|n| n as u64) {
                // A stream of known length: the last leaf holds what is left.
                Some(total) => {
                    let size = leaves.fixed().unwrap_or(1) as u64;
                    (done <= total.div_ceil(size)).then_some(items.min(total))
                }
                None => Some(items),
            }
        };
        let loaded = session.load::<J::Acc>(items_in)?;
        Ok((total, session, loaded))
    });
    let (total, session, done, stack) = match opened {
        Ok((total, session, Loaded::Running(done, stack))) => (total, session, done, stack),
        Ok((_, _, Loaded::Finished(answer))) => return stream::release(items).map(|()| answer),
        Err(err) => {
            let _ = stream::release(items);
            return Err(err);
        }
    };
    // The saved prefix's items are read and dropped, not computed. Reading
    // them may take long (a big file): the run listens for its signals and
    // its stop handle meanwhile, and a stop ends it with that prefix, which
    // is saved already.
    let _listening = listen_for_signals(checkpoint);
    let read = std::cell::Cell::new(0u64);
    let skipped = catch_panic(|| {
        while read.get() < done.items && !checkpoint.stop.is_stopped() && items.next().is_some() {
            read.set(read.get() + 1);
        }
    });
    if let Err(err) = skipped {
        let _ = stream::release(items);
        return Err(match err {
            Error::Panicked { message, payload, .. } => Error::Panicked {
                index: Some(read.get() as usize),
                message,
                payload,
            },
            other => other,
        });
    }
    if read.get() < done.items && checkpoint.stop.is_stopped() {
        let _ = stream::release(items);
        return Err(Error::Stopped {
            done: done.items,
            checkpoint: Some(checkpoint.path.clone()),
        });
    }
    if read.get() < done.items {
        let _ = stream::release(items);
        let problem = CheckpointProblem::InputTooShort {
            saved: done.items,
            read: read.get(),
        };
        return Err(Error::Checkpoint(CheckpointError::new(&checkpoint.path, problem)));
    }
    session.run(config, done, stack, |saver| {
        let start = stream::Start {
            total,
            prefix: Some(saver),
        };
        stream::stream_from(items, ctx, &job, &description, Config::current(), workers, start)
    })
}

/// Have the signals stop runs of `checkpoint` while the result lives, if
/// it asks for that.
pub(crate) fn listen_for_signals(checkpoint: &Checkpoint) -> Option<signals::Listening> {
    if !checkpoint.signals {
        return None;
    }
    #[cfg(unix)]
    match signals::listen(&checkpoint.stop) {
        Ok(listening) => return Some(listening),
        Err(err) => log::warn!("{err}: signals will not stop the run"),
    }
    #[cfg(not(unix))]
    log::warn!("stopping on signals is for Unix only: use the checkpoint's stop handle");
    None
}
