//! One durable run's use of its checkpoint: the lock, reading and checking
//! what it holds, saving the prefix as the run goes (through the writer
//! thread), and saving how the run ends.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::{CheckpointError, CheckpointProblem};
use super::file::{self, Input, Meta, State, StateRef};
use super::{listen_for_signals, store, Checkpoint};
use crate::config::Config;
use crate::engine::prefix::{Done, Prefix};
use crate::engine::tree::Stack;
use crate::error::{catch_panic, Error};

/// Lock `checkpoint` for a run over an indexed input of `len` items in
/// leaves of `leaf_size`, and read what it holds.
pub(crate) fn open_indexed<A: DeserializeOwned>(
    checkpoint: &Checkpoint,
    len: usize,
    leaf_size: usize,
    deterministic: bool,
) -> Result<(Session<'_>, Loaded<A>), Error> {
    let meta = Meta {
        key: checkpoint.key.clone(),
        acc_type: std::any::type_name::<A>().to_owned(),
        input: Input::Indexed(len as u64),
        leaf_size: leaf_size as u64,
        deterministic,
        saved_at: 0,
    };
    let session = Session::open(checkpoint, meta)?;
    let leaves = crate::engine::Leaves::new(len, leaf_size);
    let items_in = |done: u64| (done <= leaves.count() as u64).then(|| leaves.start(done as usize) as u64);
    let loaded = session.load::<A>(items_in)?;
    Ok((session, loaded))
}

/// What a checkpoint file held for this run.
pub(crate) enum Loaded<A> {
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
    pub(crate) fn open(checkpoint: &'c Checkpoint, meta: Meta) -> Result<Session<'c>, Error> {
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
    /// saved for another search, or damaged, is an error. `items_in` says
    /// how many items the first leaves hold (`None`: the input has fewer
    /// leaves).
    pub(crate) fn load<A: DeserializeOwned>(&self, items_in: impl Fn(u64) -> Option<u64>) -> Result<Loaded<A>, Error> {
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
        // A panic in the accumulator's `Deserialize` is a file this run
        // cannot use, like any decoding failure (as `encode` treats a
        // panicking `Serialize`): never a panic out of the run.
        let state = catch_panic(|| file::decode_state::<A>(self.path(), rest)).unwrap_or_else(|err| {
            Err(CheckpointError::new(
                self.path(),
                CheckpointProblem::Corrupt(format!("the accumulator's `Deserialize` panicked ({err})")),
            ))
        });
        match state.map_err(Error::Checkpoint)? {
            State::Finished { answer } => {
                log::info!(
                    "{}: returning the answer saved {ago} (the search {:?} is done)",
                    self.path().display(),
                    self.meta.key
                );
                Ok(Loaded::Finished(answer))
            }
            State::Running { leaves, items, stack } => {
                let expected = items_in(leaves)
                    .ok_or_else(|| corrupt(format!("{leaves} leaves done, more than the input holds")))?;
                if expected != items {
                    return Err(corrupt(format!(
                        "{leaves} leaves done, but {items} items (not {expected})"
                    )));
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
    pub(crate) fn run<A, F>(self, config: Config, done: Done, stack: Stack<A>, drive: F) -> Result<A, Error>
    where
        A: Serialize + Send,
        F: FnOnce(&mut dyn Prefix<A>) -> Result<A, Error>,
    {
        self.run_concluding(config, done, stack, |prefix| {
            let outcome = drive(&mut *prefix);
            prefix.conclude(outcome)
        })?
    }

    /// Run `drive` from `done` (whose accumulators are on `stack`), saving
    /// its progress; `drive` calls [`Prefix::conclude`] with the outcome,
    /// which saves how the run ended.
    pub(crate) fn run_concluding<A, R, F>(
        self,
        config: Config,
        done: Done,
        stack: Stack<A>,
        drive: F,
    ) -> Result<R, Error>
    where
        A: Serialize + Send,
        F: FnOnce(&mut dyn Prefix<A>) -> R,
    {
        store::check_writable(self.path()).map_err(Error::Checkpoint)?;
        let _listening = listen_for_signals(self.checkpoint);
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
        Ok(config.scope(|| drive(&mut saver)))
    }

    /// Save how a run ended, and say what it returns: the answer (saved; a
    /// failed save is logged, the answer is right all the same), a stop
    /// (with the items saved, or the error that kept them from being
    /// saved), or the run's failure.
    fn conclude<A: Serialize>(
        &self,
        outcome: Result<A, Error>,
        kept: Option<Done>,
        failure: Option<CheckpointError>,
        written: Result<(), CheckpointError>,
        writer: &store::Writer,
    ) -> Result<A, Error> {
        match outcome {
            Ok(answer) => {
                // Periodic saves that failed do not matter now.
                let _ = written;
                match self.encode(&StateRef::Finished { answer: &answer }) {
                    Ok(bytes) => {
                        if let Err(err) = writer.write_now(bytes) {
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
                        .and_then(|bytes| writer.write_now(bytes))
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

/// The longest a durable run's block of leaves may take (at the pace seen):
/// what a stop may discard of finished work, beyond a leaf per worker.
const MAX_BLOCK_TIME: Duration = Duration::from_secs(1);

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
        // A quarter of the interval, so that saves come on time; at most a
        // second, so that a stop discards at most a second of finished
        // work (or a leaf per worker) with the block it cuts short.
        (self.session.checkpoint.interval / 4).clamp(Duration::from_millis(1), MAX_BLOCK_TIME)
    }

    fn conclude(&mut self, outcome: Result<A, Error>) -> Result<A, Error> {
        let written = self.writer.flush();
        self.session
            .conclude(outcome, self.saved, self.failure.take(), written, self.writer)
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
        1 => "1 item".into(),
        n => format!("{n} items"),
    }
}

fn describe_mode(deterministic: bool) -> String {
    if deterministic { "deterministic" } else { "any order" }.into()
}
