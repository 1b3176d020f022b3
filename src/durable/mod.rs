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
//!   (60 s by default) at the end of a block of leaves; durable runs keep
//!   their blocks to about a quarter of the interval at the pace seen so
//!   far, with at least a leaf per worker. After a `kill -9`, at most the
//!   interval plus the block in flight is lost. Only the contiguous prefix
//!   is saved: leaves done right of an unfinished one are done again.
//! - **Stop.** [`StopHandle::stop`] (from any thread), or SIGINT, SIGTERM or
//!   SIGUSR1 under [`Checkpoint::stop_on_signals`], cancels the items in
//!   flight ([`is_cancelled`](crate::is_cancelled) turns true), saves the
//!   prefix and returns [`Error::Stopped`] within about the time of one
//!   item. A second signal ends the process at once. Batch scripts
//!   requeue on exit code 85 ("stopped, resume me"; README "Long runs").
//! - **Panics.** A panic returns [`Error::Panicked`] after saving the prefix
//!   before the block it happened in; a rerun retries from there.
//! - **Crash-safe files.** Each checkpoint goes to a temporary file beside
//!   the real one, is flushed to disk, renamed over it, and the directory is
//!   flushed: a kill at any moment leaves the old file or the new one, both
//!   whole. Writes happen on a thread of their own, never on a worker. A
//!   failed write is logged (warning) and tried again at the next interval;
//!   the final one (the answer, or the prefix of a stop) is reported. The
//!   path's directory must be writable when the run starts (else
//!   [`Error::Checkpoint`] at once).
//! - **One process per file.** A run holds an advisory lock (`flock`) on
//!   `<path>.lock` while it runs; a second run on the same file, in this
//!   process or another, gets [`Error::Checkpoint`] ([`CheckpointProblem::Locked`]).
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
mod signals;
mod store;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rayon::iter::{IndexedParallelIterator, IntoParallelIterator};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use error::{CheckpointError, CheckpointProblem};

use crate::config::Config;
use crate::engine::prefix::{Done, Prefix};
use crate::engine::tree::{self, Stack};
use crate::error::{catch_panic, Error};
use crate::job::MapReduce;
use crate::StopHandle;
use file::{Input, Meta, State, StateRef};

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
    let meta = Meta {
        key: checkpoint.key.clone(),
        acc_type: std::any::type_name::<J::Acc>().to_owned(),
        input: Input::Indexed(len as u64),
        leaf_size: tree::leaf_size(len, config.leaf_size()) as u64,
        deterministic: config.deterministic(),
        saved_at: 0,
    };
    let session = Session::open(checkpoint, meta, &config)?;
    let (done, stack) = match session.load::<J::Acc>()? {
        Loaded::Finished(answer) => return Ok(answer),
        Loaded::Running(done, stack) => (done, stack),
    };
    session.run(config, done, stack, |saver| {
        crate::engine::map_reduce_durable(items, ctx, &job, done.items as usize, saver)
    })
}

/// What a checkpoint file held for this run.
enum Loaded<A> {
    /// The answer of a finished run.
    Finished(A),
    /// The prefix to resume from (none: the start).
    Running(Done, Stack<A>),
}

/// One durable run's use of its checkpoint: the lock held, the header it
/// must match.
pub(crate) struct Session<'c> {
    checkpoint: &'c Checkpoint,
    meta: Meta,
    _lock: store::Lock,
}

impl<'c> Session<'c> {
    /// Lock the checkpoint of a run whose header is `meta`.
    fn open(checkpoint: &'c Checkpoint, meta: Meta, _config: &Config) -> Result<Session<'c>, Error> {
        let lock = store::Lock::take(&checkpoint.path).map_err(Error::Checkpoint)?;
        Ok(Session {
            checkpoint,
            meta,
            _lock: lock,
        })
    }

    fn path(&self) -> &Path {
        &self.checkpoint.path
    }

    /// Read the saved state, if any (and unless starting fresh): a file
    /// saved for another search, or damaged, is an error.
    fn load<A: DeserializeOwned>(&self) -> Result<Loaded<A>, Error> {
        let start = Loaded::Running(Done::default(), Stack::new());
        if self.checkpoint.fresh {
            return Ok(start);
        }
        let Some(bytes) = store::read(self.path()).map_err(Error::Checkpoint)? else {
            return Ok(start);
        };
        let (saved, rest) = file::decode_meta(self.path(), &bytes).map_err(Error::Checkpoint)?;
        self.check(&saved).map_err(Error::Checkpoint)?;
        let ago = describe_age(saved.saved_at);
        let corrupt =
            |what: String| Error::Checkpoint(CheckpointError::new(self.path(), CheckpointProblem::Corrupt(what)));
        match file::decode_state::<A>(self.path(), rest).map_err(Error::Checkpoint)? {
            State::Finished { answer } => {
                log::info!(
                    "{}: returning the answer saved {ago} (the search {:?} is done)",
                    self.path().display(),
                    self.meta.key
                );
                Ok(Loaded::Finished(answer))
            }
            State::Running { leaves, items, stack } => {
                let expected = self
                    .items_in(leaves)
                    .ok_or_else(|| corrupt(format!("{leaves} leaves done, more than the input holds")))?;
                if expected.is_some_and(|expected| expected != items) {
                    return Err(corrupt(format!("{leaves} leaves done but {items} items")));
                }
                let stack = Stack::resumed(leaves, stack)
                    .ok_or_else(|| corrupt(format!("its saved accumulators do not fit {leaves} leaves")))?;
                log::info!(
                    "{}: resuming {:?} after {items} item(s) saved {ago}",
                    self.path().display(),
                    self.meta.key
                );
                Ok(Loaded::Running(Done { leaves, items }, stack))
            }
        }
    }

    /// The items in the first `leaves` leaves: `None` if there are not that
    /// many leaves; `Some(None)` when the leaves' sizes are not known here
    /// (a stream's, checked as it is read).
    fn items_in(&self, leaves: u64) -> Option<Option<u64>> {
        match self.meta.input {
            Input::Indexed(len) => {
                let leaf = self.meta.leaf_size.max(1);
                (leaves <= len.div_ceil(leaf)).then(|| Some((leaves * leaf).min(len)))
            }
            Input::Stream(_) => Some(None),
        }
    }

    /// Whether a file's header `saved` belongs to this run.
    fn check(&self, saved: &Meta) -> Result<(), CheckpointError> {
        let now = &self.meta;
        let mismatch = |what, saved: String, now: String| {
            Err(CheckpointError::new(
                self.path(),
                CheckpointProblem::Mismatch { what, saved, now },
            ))
        };
        if saved.key != now.key {
            return mismatch("key", format!("{:?}", saved.key), format!("{:?}", now.key));
        }
        if saved.acc_type != now.acc_type {
            return mismatch("accumulator type", saved.acc_type.clone(), now.acc_type.clone());
        }
        if saved.input != now.input {
            return mismatch("input", describe_input(saved.input), describe_input(now.input));
        }
        if saved.leaf_size != now.leaf_size {
            return mismatch(
                "leaf size",
                describe_leaf(saved.leaf_size),
                describe_leaf(now.leaf_size),
            );
        }
        if saved.deterministic != now.deterministic {
            return mismatch(
                "mode",
                describe_mode(saved.deterministic),
                describe_mode(now.deterministic),
            );
        }
        Ok(())
    }

    /// Run `drive` from `done` (whose accumulators are on `stack`), saving
    /// its progress, and save how it ends.
    fn run<A, F>(self, config: Config, done: Done, stack: Stack<A>, drive: F) -> Result<A, Error>
    where
        A: Serialize + Send,
        F: FnOnce(&mut dyn Prefix<A>) -> Result<A, Error>,
    {
        let _listening = self.listen_for_signals();
        let writer = store::Writer::new(self.path());
        let mut saver = Saver {
            session: &self,
            writer: &writer,
            start: Some((done, stack)),
            saved: (done.leaves > 0).then_some(done),
            last_save: std::time::Instant::now(),
            failure: None,
        };
        let config = config.with_durable_stop(self.checkpoint.stop.clone());
        let outcome = config.scope(|| drive(&mut saver));
        let kept = saver.saved;
        let failure = saver.failure.take();
        let written = writer.flush();
        drop(writer);
        match outcome {
            Ok(answer) => {
                // Periodic saves that failed do not matter now.
                let _ = written;
                match self.encode(&StateRef::Finished { answer: &answer }) {
                    Ok(bytes) => {
                        if let Err(err) = store::write(self.path(), &bytes) {
                            log::warn!("{err}: the answer is not saved, a rerun searches again");
                        }
                    }
                    Err(err) => log::warn!("{err}: the answer is not saved, a rerun searches again"),
                }
                Ok(answer)
            }
            Err(Error::Stopped { .. }) => {
                if let Some(err) = failure {
                    return Err(Error::Checkpoint(err));
                }
                written.map_err(Error::Checkpoint)?;
                if kept.is_none() {
                    // Stopped before any prefix was saved: the file says so,
                    // valid and empty.
                    let empty: StateRef<'_, A> = StateRef::Running {
                        leaves: 0,
                        items: 0,
                        stack: &[],
                    };
                    let bytes = self.encode(&empty);
                    bytes
                        .and_then(|bytes| store::write(self.path(), &bytes))
                        .map_err(Error::Checkpoint)?;
                }
                Err(Error::Stopped {
                    done: kept.map_or(0, |done| done.items),
                    checkpoint: Some(self.path().to_owned()),
                })
            }
            Err(err) => {
                if let Err(write) = written {
                    log::warn!("{write}: the prefix before the failure is not saved");
                }
                Err(err)
            }
        }
    }

    fn listen_for_signals(&self) -> Option<signals::Listening> {
        if !self.checkpoint.signals {
            return None;
        }
        #[cfg(unix)]
        match signals::listen(&self.checkpoint.stop) {
            Ok(listening) => return Some(listening),
            Err(err) => log::warn!("{err}: signals will not stop the run"),
        }
        #[cfg(not(unix))]
        log::warn!("stopping on signals is for Unix only: use the checkpoint's stop handle");
        None
    }

    /// The bytes of a checkpoint holding `state`, stamped now. A panic in
    /// the accumulator's `Serialize` is an error like any encoding failure.
    fn encode<A: Serialize>(&self, state: &StateRef<'_, A>) -> Result<Vec<u8>, CheckpointError> {
        let meta = Meta {
            saved_at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
            ..self.meta.clone()
        };
        let problem = |what: String| CheckpointError::new(self.path(), CheckpointProblem::Corrupt(what));
        match catch_panic(|| file::encode(&meta, state)) {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(err)) => Err(problem(format!("the accumulator cannot be encoded ({err})"))),
            Err(err) => Err(problem(format!("the accumulator's `Serialize` panicked ({err})"))),
        }
    }
}

/// What a durable run's driver tells its checkpoint.
struct Saver<'s, 'c, A> {
    session: &'s Session<'c>,
    writer: &'s store::Writer,
    start: Option<(Done, Stack<A>)>,
    /// The prefix last handed to the writer (or read from the file).
    saved: Option<Done>,
    last_save: std::time::Instant,
    /// A save that a stop needed and could not have.
    failure: Option<CheckpointError>,
}

impl<A: Serialize + Send> Saver<'_, '_, A> {
    /// Hand the prefix `done` to the writer; whether it could be encoded.
    fn save(&mut self, done: Done, stack: &Stack<A>) -> Result<(), CheckpointError> {
        let state = StateRef::Running {
            leaves: done.leaves,
            items: done.items,
            stack: stack.entries(),
        };
        let bytes = self.session.encode(&state)?;
        self.writer.submit(bytes);
        self.saved = Some(done);
        self.last_save = std::time::Instant::now();
        Ok(())
    }
}

impl<A: Serialize + Send> Prefix<A> for Saver<'_, '_, A> {
    fn start(&mut self) -> (Done, Stack<A>) {
        self.start.take().unwrap_or_else(|| (Done::default(), Stack::new()))
    }

    fn completed(&mut self, done: Done, stack: &Stack<A>) {
        if self.last_save.elapsed() >= self.session.checkpoint.interval {
            if let Err(err) = self.save(done, stack) {
                log::warn!("{err}; the next checkpoint tries again");
                self.last_save = std::time::Instant::now();
            }
        }
    }

    fn keep(&mut self, done: Done, stack: &Stack<A>) {
        if self.saved != Some(done) {
            if let Err(err) = self.save(done, stack) {
                self.failure = Some(err);
            }
        }
    }

    fn block_time(&self) -> Duration {
        (self.session.checkpoint.interval / 4).max(Duration::from_millis(1))
    }
}

/// "3 min ago", for a time in seconds since the Unix epoch.
fn describe_age(saved_at: u64) -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    match now.saturating_sub(saved_at) {
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

fn describe_input(input: Input) -> String {
    match input {
        Input::Indexed(len) => format!("{len} items"),
        Input::Stream(Some(len)) => format!("a stream of {len} items"),
        Input::Stream(None) => "a stream of unknown length".into(),
    }
}

fn describe_leaf(leaf_size: u64) -> String {
    match leaf_size {
        0 => "growing".into(),
        n => format!("{n} items"),
    }
}

fn describe_mode(deterministic: bool) -> String {
    if deterministic { "deterministic" } else { "any order" }.into()
}
