//! Why a checkpoint could not be used.

use std::fmt;
use std::path::{Path, PathBuf};

/// A durable run's checkpoint could not be used: the path, and the reason.
/// Inside [`Error::Checkpoint`](crate::Error::Checkpoint).
///
/// ```
/// use mapreduce::durable::{par_map_reduce_durable, Checkpoint, CheckpointProblem};
/// use mapreduce::{jobs, Error};
///
/// let dir = std::env::temp_dir().join(format!("mapreduce-doc-error-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("search.ckpt");
/// std::fs::write(&path, b"not a checkpoint").unwrap();
/// let err = par_map_reduce_durable(0..10usize, &(), jobs::count(|_: &usize, _: &()| true), &Checkpoint::new(&path, "count"))
///     .unwrap_err();
/// let Error::Checkpoint(err) = err else { panic!("{err}") };
/// assert_eq!(err.path(), path);
/// assert!(matches!(err.problem(), CheckpointProblem::NotACheckpoint));
/// assert!(err.to_string().contains("search.ckpt"));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub struct CheckpointError {
    path: PathBuf,
    problem: CheckpointProblem,
}

/// What is wrong with a checkpoint.
#[non_exhaustive]
#[derive(Debug)]
pub enum CheckpointProblem {
    /// Reading, writing or locking it failed (`doing` says which step).
    Io {
        doing: &'static str,
        source: std::io::Error,
    },
    /// Another run holds it, in this process or another (its lock file,
    /// `<path>.lock`, is locked).
    Locked,
    /// The path is a directory.
    IsADirectory,
    /// The file does not start like a checkpoint of this crate, or is no
    /// regular file (a FIFO, a socket, a device).
    NotACheckpoint,
    /// The file was written by a format version this build does not read.
    OtherVersion { found: u32, supported: u32 },
    /// The file ends early: cut short by a full disk or a copy.
    Truncated,
    /// The file's checksum does not match its content, or its content does
    /// not decode: damaged.
    Corrupt(String),
    /// The file belongs to another search: another key, input length, leaf
    /// size, mode or accumulator type (`what`), saved as `saved`, asked for
    /// as `now`.
    Mismatch {
        what: &'static str,
        saved: String,
        now: String,
    },
    /// A streamed input ended before the items the file says are done.
    InputTooShort { saved: u64, read: u64 },
    /// Under MPI, rank 0 (which alone reads and writes the file) could not
    /// use it: its message.
    OnRank0(String),
}

impl CheckpointError {
    pub(crate) fn new(path: &Path, problem: CheckpointProblem) -> CheckpointError {
        CheckpointError {
            path: path.to_owned(),
            problem,
        }
    }

    pub(crate) fn io(path: &Path, doing: &'static str, source: std::io::Error) -> CheckpointError {
        CheckpointError::new(path, CheckpointProblem::Io { doing, source })
    }

    /// Rank 0's checkpoint error, as another rank returns it.
    #[cfg(feature = "mpi")]
    pub(crate) fn on_rank_0(path: &Path, reason: String) -> CheckpointError {
        CheckpointError::new(path, CheckpointProblem::OnRank0(reason))
    }

    /// The reason alone, without the path (another rank adds its own).
    #[cfg(feature = "mpi")]
    pub(crate) fn problem_text(&self) -> String {
        let full = self.to_string();
        let prefix = format!("checkpoint {}: ", self.path.display());
        full.strip_prefix(&prefix).map_or(full.clone(), str::to_owned)
    }

    /// The checkpoint's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &CheckpointProblem {
        &self.problem
    }
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "checkpoint {}: ", self.path.display())?;
        match &self.problem {
            CheckpointProblem::Io { doing, source } => write!(f, "{doing}: {source}"),
            CheckpointProblem::Locked => write!(
                f,
                "another run is using it, in this process or another (its lock file {}.lock is held)",
                self.path.display()
            ),
            CheckpointProblem::IsADirectory => write!(f, "is a directory, not a file"),
            CheckpointProblem::NotACheckpoint => write!(f, "not a checkpoint file of this crate"),
            CheckpointProblem::OtherVersion { found, supported } => write!(
                f,
                "written in format version {found}; this build reads version {supported}"
            ),
            CheckpointProblem::Truncated => write!(f, "truncated: the file ends early"),
            CheckpointProblem::Corrupt(what) => write!(f, "corrupt: {what}"),
            CheckpointProblem::Mismatch { what, saved, now } => write!(
                f,
                "saved for another search: its {what} is {saved}, this run's is {now} \
                 (resume it with the same search, or start over: delete the file, or use `Checkpoint::fresh(true)`)"
            ),
            CheckpointProblem::OnRank0(reason) => write!(f, "rank 0 could not use it: {reason}"),
            CheckpointProblem::InputTooShort { saved, read } => write!(
                f,
                "the input ended after {read} item(s), before the {saved} the checkpoint says are done"
            ),
        }
    }
}

impl fmt::Debug for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointError")
            .field("path", &self.path)
            .field("problem", &self.problem)
            .finish()
    }
}

impl std::error::Error for CheckpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.problem {
            CheckpointProblem::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
