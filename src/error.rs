//! What can go wrong in a run, and how it is reported.

use std::any::Any;
use std::fmt;

/// An invalid configuration: a worker count the machine cannot satisfy or an
/// environment variable that does not parse.
///
/// ```
/// use mapreduce::{Config, ConfigError};
///
/// let err = Config::resolve_workers(0, 4).unwrap_err();
/// assert_eq!(err, ConfigError::ZeroWorkers);
/// assert!(err.to_string().contains("0 workers"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// Zero workers were asked for; use a positive count, or -1 for all cores.
    ZeroWorkers,
    /// A negative count means "all cores but `-requested - 1`"; this one
    /// leaves no worker at all on a machine with `available` cores.
    TooNegative {
        /// The worker count that was asked for.
        requested: isize,
        /// The cores this machine offers.
        available: usize,
    },
    /// An environment variable holds a value that cannot be used.
    InvalidEnv {
        /// The variable, for example `MAPREDUCE_WORKERS`.
        variable: &'static str,
        /// The value found in the environment.
        value: String,
        /// What is wrong with it, and what would be right.
        reason: String,
    },
    /// The ranks of an MPI run (feature `mpi`) did not call
    /// `mpi::par_map_reduce` alike: another number of items, another job or
    /// accumulator type. Every rank gets this error.
    #[cfg(feature = "mpi")]
    RanksDisagree {
        /// What differs, for example "the job and accumulator types".
        what: String,
    },
    /// Another rank of an MPI run (feature `mpi`) cannot run: its own
    /// configuration is invalid.
    #[cfg(feature = "mpi")]
    OnRank {
        /// The rank that cannot run.
        rank: i32,
        /// What that rank reported.
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroWorkers => write!(
                f,
                "0 workers requested: ask for n > 0 workers, or -1 for all cores, -2 for all but one"
            ),
            ConfigError::TooNegative { requested, available } => write!(
                f,
                "{requested} workers requested, which leaves none of the {available} available cores \
                 (-1 means all cores, -2 all but one, ...)"
            ),
            ConfigError::InvalidEnv {
                variable,
                value,
                reason,
            } => write!(f, "environment variable {variable}={value:?} is invalid: {reason}"),
            #[cfg(feature = "mpi")]
            ConfigError::OnRank { rank, reason } => write!(f, "on rank {rank}: {reason}"),
            #[cfg(feature = "mpi")]
            ConfigError::RanksDisagree { what } => write!(
                f,
                "the MPI ranks disagree on {what}: every rank must run the same job over the same items"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Why a run did not produce a result; `Display` says what and where.
///
/// ```
/// use mapreduce::{jobs, seq_map_reduce, Error};
///
/// let job = jobs::collect(|x: u32, _: &()| {
///     assert!(x != 3, "item {x} is bad");
///     x
/// });
/// match seq_map_reduce(0..10u32, &(), job) {
///     Err(Error::Panicked { index, message, .. }) => {
///         assert_eq!(index, Some(3));
///         assert_eq!(message, "item 3 is bad");
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[non_exhaustive]
pub enum Error {
    /// An invalid configuration (zero workers, too negative, bad env value).
    Config(ConfigError),
    /// A task panicked (PyPhi's `ExceptionWrapper`). The panic message is
    /// printed by the panic hook as usual; the run then stops promptly.
    Panicked {
        /// The 0-based position of the item in the input when known (always
        /// for indexed and streamed inputs; `None` for unindexed parallel
        /// iterators, for panics in `merge` or `empty_result`, and for
        /// panics in the input's own adaptors, such as a `map` before
        /// `map_reduce`).
        index: Option<usize>,
        /// The panic message, or a note that the payload was not a string.
        message: String,
        /// The original payload, for [`Error::resume`].
        payload: PanicPayload,
    },
    /// The run was abandoned because the task that started it was cancelled
    /// (see [`is_cancelled`](crate::is_cancelled)): its result could no
    /// longer matter. Only nested runs end this way.
    Cancelled,
    /// The thread pool could not be built (the OS refused to start threads).
    ThreadPool(String),
    /// The run was stopped on request: by a [`StopHandle`](crate::StopHandle)
    /// (or, for durable runs, a signal) or by a
    /// [`Config::with_deadline`](crate::Config::with_deadline). Its items in
    /// flight saw [`is_cancelled`](crate::is_cancelled).
    Stopped {
        /// The items of the completed prefix that a durable run saved (the
        /// next run with the same checkpoint starts after them); 0 for an
        /// ordinary run, which saves nothing.
        done: u64,
        /// The checkpoint file holding them, for a durable run.
        checkpoint: Option<std::path::PathBuf>,
    },
    /// A durable run's checkpoint could not be used: unreadable, unwritable,
    /// locked by another process, corrupt, or saved for another search. Its
    /// [`CheckpointError`](crate::durable::CheckpointError) names the path
    /// and the reason.
    #[cfg(feature = "durable")]
    Checkpoint(crate::durable::CheckpointError),
}

impl Error {
    /// Re-raise a `Panicked` error's original panic, payload and all
    /// (PyPhi: `ExceptionWrapper.reraise`). Other errors panic with their
    /// `Display` text.
    ///
    /// ```
    /// use mapreduce::{jobs, seq_map_reduce};
    ///
    /// let err = seq_map_reduce(0..3, &(), jobs::collect(|_: i32, _: &()| -> i32 {
    ///     std::panic::panic_any(42_u8)
    /// }))
    /// .unwrap_err();
    /// let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || err.resume())).unwrap_err();
    /// assert_eq!(caught.downcast_ref::<u8>(), Some(&42));
    /// ```
    pub fn resume(self) -> ! {
        match self {
            Error::Panicked { payload, .. } => std::panic::resume_unwind(payload.into_inner()),
            other => panic!("{other}"),
        }
    }

    /// The failing item's position, for a `Panicked` error that knows it.
    ///
    /// ```
    /// use mapreduce::{jobs, seq_map_reduce};
    ///
    /// let err = seq_map_reduce(0..9, &(), jobs::collect(|x: i32, _: &()| 10 / (x - 4))).unwrap_err();
    /// assert_eq!(err.index(), Some(4));
    /// ```
    pub fn index(&self) -> Option<usize> {
        match self {
            Error::Panicked { index, .. } => *index,
            _ => None,
        }
    }
}

/// What a panic was given (`panic!`'s message, `panic_any`'s value), kept
/// inside an [`Error::Panicked`] to be re-raised by [`Error::resume`] or
/// inspected. It is `Sync` although the payload need not be (only whoever
/// owns it, or holds it mutably, reaches the payload), so that [`Error`] is
/// `Send + Sync + 'static` and `?` takes it into `anyhow::Error` or
/// `Box<dyn std::error::Error + Send + Sync>`.
///
/// ```
/// use mapreduce::{jobs, seq_map_reduce, Error};
///
/// let err = seq_map_reduce(0..3, &(), jobs::collect(|_: i32, _: &()| -> i32 {
///     std::panic::panic_any(7_u16)
/// }))
/// .unwrap_err();
/// let Error::Panicked { mut payload, .. } = err else { unreachable!() };
/// assert_eq!(payload.get_mut().downcast_ref::<u16>(), Some(&7));
/// assert!(payload.into_inner().is::<u16>());
/// ```
pub struct PanicPayload(parking_lot::Mutex<Box<dyn Any + Send + 'static>>);

impl PanicPayload {
    pub(crate) fn new(payload: Box<dyn Any + Send + 'static>) -> PanicPayload {
        PanicPayload(parking_lot::Mutex::new(payload))
    }

    /// The payload, to inspect or change.
    ///
    /// ```
    /// # let mut payload = mapreduce::seq_map_reduce(0..1, &(), mapreduce::jobs::count(|_: &i32, _: &()| -> bool { panic!("boom") }))
    /// #     .map(drop).unwrap_err();
    /// # let mapreduce::Error::Panicked { mut payload, .. } = payload else { unreachable!() };
    /// assert_eq!(payload.get_mut().downcast_ref::<&str>(), Some(&"boom"));
    /// ```
    pub fn get_mut(&mut self) -> &mut (dyn Any + Send + 'static) {
        &mut **self.0.get_mut()
    }

    /// The payload itself, as `catch_unwind` gave it.
    ///
    /// ```
    /// # let err = mapreduce::seq_map_reduce(0..1, &(), mapreduce::jobs::count(|_: &i32, _: &()| -> bool { std::panic::panic_any(3_i8) }))
    /// #     .unwrap_err();
    /// let mapreduce::Error::Panicked { payload, .. } = err else { unreachable!() };
    /// assert_eq!(*payload.into_inner().downcast::<i8>().unwrap(), 3);
    /// ```
    pub fn into_inner(self) -> Box<dyn Any + Send + 'static> {
        self.0.into_inner()
    }
}

impl fmt::Debug for PanicPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PanicPayload { .. }")
    }
}

impl From<ConfigError> for Error {
    fn from(err: ConfigError) -> Self {
        Error::Config(err)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(err) => write!(f, "invalid configuration: {err}"),
            Error::Panicked {
                index: Some(index),
                message,
                ..
            } => write!(f, "task panicked at item {index}: {message}"),
            Error::Panicked {
                index: None, message, ..
            } => write!(f, "task panicked: {message}"),
            Error::Cancelled => write!(f, "run cancelled: the task that started it was cancelled"),
            Error::ThreadPool(reason) => write!(f, "could not build the thread pool: {reason}"),
            Error::Stopped {
                done,
                checkpoint: Some(path),
            } => write!(f, "run stopped on request: {done} item(s) saved in {}", path.display()),
            Error::Stopped { checkpoint: None, .. } => write!(f, "run stopped on request"),
            #[cfg(feature = "durable")]
            Error::Checkpoint(err) => write!(f, "{err}"),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(err) => f.debug_tuple("Config").field(err).finish(),
            Error::Panicked { index, message, .. } => f
                .debug_struct("Panicked")
                .field("index", index)
                .field("message", message)
                .finish_non_exhaustive(),
            Error::Cancelled => f.write_str("Cancelled"),
            Error::ThreadPool(reason) => f.debug_tuple("ThreadPool").field(reason).finish(),
            Error::Stopped { done, checkpoint } => f
                .debug_struct("Stopped")
                .field("done", done)
                .field("checkpoint", checkpoint)
                .finish(),
            #[cfg(feature = "durable")]
            Error::Checkpoint(err) => f.debug_tuple("Checkpoint").field(err).finish(),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Config(err) => Some(err),
            #[cfg(feature = "durable")]
            Error::Checkpoint(err) => Some(err),
            _ => None,
        }
    }
}

/// A caught panic, before it becomes an [`Error::Panicked`].
pub(crate) struct Panic {
    pub(crate) index: Option<usize>,
    pub(crate) payload: Box<dyn Any + Send + 'static>,
}

impl Panic {
    pub(crate) fn new(index: Option<usize>, payload: Box<dyn Any + Send + 'static>) -> Self {
        Panic { index, payload }
    }

    /// The panic an [`Error::Panicked`] reports, taken back out of it; any
    /// other error, as it is.
    pub(crate) fn of_error(err: Error) -> Result<Panic, Error> {
        match err {
            Error::Panicked { index, payload, .. } => Ok(Panic::new(index, payload.into_inner())),
            other => Err(other),
        }
    }
}

impl From<Panic> for Error {
    fn from(panic: Panic) -> Self {
        let message = panic_message(panic.payload.as_ref());
        Error::Panicked {
            index: panic.index,
            message,
            payload: PanicPayload::new(panic.payload),
        }
    }
}

/// Run user code that is not about one item (`empty_result`, a final
/// `merge`): a panic becomes an [`Error::Panicked`] without an index.
pub(crate) fn catch_panic<R>(f: impl FnOnce() -> R) -> Result<R, Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| Panic::new(None, payload).into())
}

/// The text of a panic payload: `panic!` gives `&str` or `String`.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic payload is not a string (use Error::resume to re-raise it)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_of_str_string_and_other_payloads() {
        assert_eq!(panic_message(&"boom"), "boom");
        assert_eq!(panic_message(&String::from("bang")), "bang");
        assert!(panic_message(&7_i32).contains("not a string"));
    }

    #[test]
    fn display_names_item_and_variable() {
        let err = Error::from(Panic::new(Some(12), Box::new("bad cut")));
        assert_eq!(err.to_string(), "task panicked at item 12: bad cut");
        let err = Error::from(ConfigError::InvalidEnv {
            variable: "MAPREDUCE_WORKERS",
            value: "many".into(),
            reason: "expected an integer".into(),
        });
        assert!(err.to_string().contains("MAPREDUCE_WORKERS=\"many\""));
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn errors_go_where_applications_send_errors() {
        fn send_sync_static<E: std::error::Error + Send + Sync + 'static>(_: &E) {}
        let err = Error::from(Panic::new(Some(1), Box::new(std::cell::Cell::new(5))));
        send_sync_static(&err);
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(err);
        assert_eq!(
            boxed.to_string(),
            "task panicked at item 1: panic payload is not a string (use Error::resume to re-raise it)"
        );
    }

    #[test]
    fn resume_of_non_panic_error_panics_with_its_text() {
        let caught = std::panic::catch_unwind(|| Error::Cancelled.resume()).unwrap_err();
        assert!(panic_message(caught.as_ref()).contains("cancelled"));
    }
}
