//! Where checkpoints live on disk: the advisory lock that keeps a second
//! process off a file, crash-safe replacement of the file, and the thread
//! that writes periodic checkpoints off the run's path.
//!
//! **Crash safety.** A checkpoint is written to `.<name>.tmp` beside it,
//! flushed to disk (`fsync`), renamed over the old one, and the directory is
//! flushed, so that a kill or a power cut at any moment leaves the old file
//! or the new one, whole. Hand-written rather than from a crate:
//! `tempfile::persist` does not flush, and `atomicwrites` (which does)
//! writes each file into a fresh randomly named directory, which a `kill -9`
//! leaves behind on every kill; under our lock, one fixed temporary name is
//! safe and a kill leaves at most that one file, replaced by the next write.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::error::{CheckpointError, CheckpointProblem};

/// The lock on a checkpoint, held for a run: `<path>.lock`, locked with
/// `flock`. The lock file stays behind (removing it would race another
/// process opening it); it is empty.
///
/// An `flock` lock belongs to the open file, which `fork` shares with the
/// child: a child forked by any thread while a run holds the lock (to run
/// a command, say) holds it too until it execs. So a lock found held is
/// tried again for [`LOCK_GRACE`] before the checkpoint is reported
/// [`Locked`](CheckpointProblem::Locked): a run started on a file just
/// after another run on it ended is not refused because some thread was
/// starting a command at that moment. (A child that forks and never execs
/// holds the lock for its life.)
pub(crate) struct Lock {
    _file: File,
}

/// How long a held lock is waited for: far longer than a fork takes to
/// exec, short next to a run.
const LOCK_GRACE: Duration = Duration::from_millis(500);

impl Lock {
    /// Lock the checkpoint at `path`, creating its lock file. A directory,
    /// FIFO, socket or device at `path` is refused here, before anything
    /// opens it (opening a FIFO would wait for a writer forever; reading
    /// `/dev/zero` would never end).
    pub(crate) fn take(path: &Path) -> Result<Lock, CheckpointError> {
        // A path that ends without a file name ("", "dir/", "x/.") has no
        // file to rename the temporary one onto: every save would fail, so
        // it is refused here, before anything is computed or created.
        let last = path.as_os_str().to_string_lossy();
        let last = last.rsplit(std::path::is_separator).next().unwrap_or_default();
        if matches!(last, "" | "." | "..") {
            let source = io::Error::new(io::ErrorKind::InvalidInput, "the path ends without a file name");
            return match fs::metadata(path) {
                Ok(meta) if meta.is_dir() => Err(CheckpointError::new(path, CheckpointProblem::IsADirectory)),
                _ => Err(CheckpointError::io(path, "names no file", source)),
            };
        }
        match fs::metadata(path) {
            Ok(meta) if meta.is_dir() => return Err(CheckpointError::new(path, CheckpointProblem::IsADirectory)),
            Ok(meta) if !meta.is_file() => return Err(CheckpointError::new(path, CheckpointProblem::NotACheckpoint)),
            // Missing (a first run), or not for us to see: opening the lock
            // file says what is wrong.
            _ => {}
        }
        let lock_path = sibling(path, "", ".lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|err| CheckpointError::io(path, "cannot create its lock file", err))?;
        let deadline = Instant::now() + LOCK_GRACE;
        loop {
            match fs4::FileExt::try_lock(&file) {
                Ok(()) => return Ok(Lock { _file: file }),
                Err(fs4::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(fs4::TryLockError::WouldBlock) => {
                    return Err(CheckpointError::new(path, CheckpointProblem::Locked))
                }
                Err(fs4::TryLockError::Error(err)) => {
                    return Err(CheckpointError::io(path, "cannot lock its lock file", err))
                }
            }
        }
    }
}

/// `<dir>/<prefix><name><suffix>` for the checkpoint `<dir>/<name>`.
fn sibling(path: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let mut name = std::ffi::OsString::from(prefix);
    name.push(path.file_name().unwrap_or_default());
    name.push(suffix);
    path.with_file_name(name)
}

/// The bytes of the checkpoint at `path`, or `None` if there is none.
pub(crate) fn read(path: &Path) -> Result<Option<Vec<u8>>, CheckpointError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(CheckpointError::io(path, "cannot open it", err)),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|err| CheckpointError::io(path, "cannot read it", err))?;
    Ok(Some(bytes))
}

/// Whether a run can save to `path`, checked as it starts so that a run
/// never computes for hours to find that none of its saves land: its
/// temporary file can be created beside it (the directory takes new files,
/// even with the lock file already there), and the file, if there is one,
/// can be opened for writing. A file without write permission is refused
/// even where its directory would let a rename replace it: read-only says
/// "do not touch". (An immutable file, `chattr +i`, cannot be replaced even
/// by root.) Nothing is changed: the temporary file is ours under the lock.
pub(crate) fn check_writable(path: &Path) -> Result<(), CheckpointError> {
    let temporary = sibling(path, ".", ".tmp");
    File::create(&temporary).map_err(|err| CheckpointError::io(path, "cannot create its temporary file", err))?;
    fs::remove_file(&temporary).map_err(|err| CheckpointError::io(path, "cannot remove its temporary file", err))?;
    match OpenOptions::new().write(true).open(path) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(CheckpointError::io(path, "cannot write it", err)),
    }
}

/// Replace the checkpoint at `path` by `bytes`, crash-safely (see the
/// module docs).
pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let temporary = sibling(path, ".", ".tmp");
    let fail = |doing| move |err| CheckpointError::io(path, doing, err);
    let mut file = File::create(&temporary).map_err(fail("cannot create its temporary file"))?;
    let written = (|| {
        let half = bytes.len() / 2;
        file.write_all(&bytes[..half]).map_err(fail("cannot write it"))?;
        pause_for_tests();
        file.write_all(&bytes[half..]).map_err(fail("cannot write it"))?;
        // On macOS, `sync_all` is `F_FULLFSYNC`: the data reach the disk itself.
        file.sync_all().map_err(fail("cannot flush it to disk"))?;
        drop(file);
        fs::rename(&temporary, path).map_err(fail("cannot move its new version into place"))
    })();
    if written.is_err() {
        // A write cut short by a full disk or a file size limit would
        // otherwise leave its part behind, holding the very space that the
        // next save (of this run or another) needs.
        let _ = fs::remove_file(&temporary);
    }
    written?;
    sync_directory(path).map_err(fail("cannot flush its directory to disk"))
}

/// Flush the directory holding `path`, so that a rename into it survives a
/// power cut.
fn sync_directory(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        File::open(parent)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// Block SIGXFSZ on this thread: a write past the process's file-size
/// limit (`ulimit -f`) then fails with `EFBIG`, which is reported or
/// retried like any failed write, instead of the signal's default action
/// ending the process. The signal is sent to the thread that wrote, so
/// blocking it here, on the thread that does every checkpoint write, leaves
/// the rest of the process as it was (no handler is installed).
fn block_file_size_signal() {
    #[cfg(unix)]
    // SAFETY: `set` is a valid, initialized signal set for the calls that
    // fill and read it; `pthread_sigmask` changes only this thread's mask
    // (a thread of ours that runs nothing but checkpoint writes), and a
    // null `oldset` is allowed. Failure leaves the mask as it was, which
    // only means the old behaviour; tested by
    // `a_write_past_the_file_size_limit_does_not_kill_the_process`.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        if libc::sigemptyset(&mut set) == 0 && libc::sigaddset(&mut set, libc::SIGXFSZ) == 0 {
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
    }
}

/// Tests land kills inside a write: `MAPREDUCE_TEST_CHECKPOINT_PAUSE_MS`
/// pauses each write halfway through its temporary file. Not for users.
fn pause_for_tests() {
    static PAUSE: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
    let pause = PAUSE.get_or_init(|| {
        std::env::var("MAPREDUCE_TEST_CHECKPOINT_PAUSE_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map(std::time::Duration::from_millis)
    });
    if let Some(pause) = pause {
        std::thread::sleep(*pause);
    }
}

/// The thread that writes a run's periodic checkpoints, so that the run's
/// workers never wait for a disk. The newest checkpoint handed to it
/// replaces one not yet written. The thread starts with the first
/// checkpoint handed to it: a run shorter than its interval never starts
/// one (starting and joining a thread costs about 30 µs, a third of a
/// percent of a 10 ms run).
pub(crate) struct Writer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    path: PathBuf,
    slot: Mutex<Slot>,
    changed: Condvar,
}

#[derive(Default)]
struct Slot {
    /// The next checkpoint to write.
    pending: Option<Vec<u8>>,
    /// Whether a write is going on.
    writing: bool,
    /// The outcome of the last write.
    last: Option<Result<(), CheckpointError>>,
    closed: bool,
}

impl Writer {
    /// A writer of the checkpoint at `path`, its thread not started yet.
    pub(crate) fn new(path: &Path) -> Writer {
        Writer {
            shared: Arc::new(Shared {
                path: path.to_owned(),
                slot: Mutex::new(Slot::default()),
                changed: Condvar::new(),
            }),
            thread: Mutex::new(None),
        }
    }

    /// Write `bytes` soon, instead of any checkpoint still waiting. If the
    /// thread cannot start, that is a failed write (logged, reported by
    /// [`flush`](Self::flush)); the next checkpoint tries again.
    pub(crate) fn submit(&self, bytes: Vec<u8>) {
        if let Err(err) = self.start() {
            log::warn!("{err}; the next checkpoint tries again");
            self.shared.slot.lock().last = Some(Err(err));
            return;
        }
        self.shared.slot.lock().pending = Some(bytes);
        self.shared.changed.notify_all();
    }

    /// Start the thread, unless it runs already.
    fn start(&self) -> Result<(), CheckpointError> {
        let mut thread = self.thread.lock();
        if thread.is_none() {
            let serving = Arc::clone(&self.shared);
            let started = std::thread::Builder::new()
                .name("mapreduce-checkpoint".into())
                .spawn(move || serving.serve())
                .map_err(|err| CheckpointError::io(&self.shared.path, "cannot start the thread that writes it", err))?;
            *thread = Some(started);
        }
        Ok(())
    }

    /// Write `bytes` on the writer's thread and wait for it: the outcome.
    /// (All writes happen there, where a file-size limit's signal is
    /// blocked: see `serve`.)
    pub(crate) fn write_now(&self, bytes: Vec<u8>) -> Result<(), CheckpointError> {
        self.submit(bytes);
        self.flush()
    }

    /// Wait until everything submitted is written: the outcome of the last
    /// write (`Ok` if there was none).
    pub(crate) fn flush(&self) -> Result<(), CheckpointError> {
        let mut slot = self.shared.slot.lock();
        while slot.pending.is_some() || slot.writing {
            self.shared.changed.wait(&mut slot);
        }
        slot.last.take().unwrap_or(Ok(()))
    }
}

impl Shared {
    fn serve(&self) {
        block_file_size_signal();
        let mut slot = self.slot.lock();
        loop {
            if let Some(bytes) = slot.pending.take() {
                slot.writing = true;
                let outcome = parking_lot::MutexGuard::unlocked(&mut slot, || write(&self.path, &bytes));
                if let Err(err) = &outcome {
                    log::warn!("{err}; the next checkpoint tries again");
                }
                slot.writing = false;
                slot.last = Some(outcome);
                self.changed.notify_all();
            } else if slot.closed {
                return;
            } else {
                self.changed.wait(&mut slot);
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shared.slot.lock().closed = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.get_mut().take() {
            // The thread catches nothing: a panic there is a bug of ours,
            // already printed by the panic hook.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mapreduce-store-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn writes_replace_the_file_and_leave_no_temporary() {
        let dir = scratch("replace");
        let path = dir.join("run.ckpt");
        assert_eq!(read(&path).unwrap(), None);
        write(&path, b"one").unwrap();
        write(&path, b"two!").unwrap();
        assert_eq!(read(&path).unwrap().unwrap(), b"two!");
        let mut names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["run.ckpt"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_lock_on_one_file_is_refused_until_the_first_is_dropped() {
        let dir = scratch("lock");
        let path = dir.join("run.ckpt");
        let first = Lock::take(&path).unwrap();
        let err = Lock::take(&path).map(drop).unwrap_err();
        assert!(matches!(err.problem(), CheckpointProblem::Locked), "{err}");
        drop(first);
        Lock::take(&path).unwrap();
        let err = Lock::take(&dir).map(drop).unwrap_err();
        assert!(matches!(err.problem(), CheckpointProblem::IsADirectory), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_writer_writes_the_newest_and_reports_failures() {
        let dir = scratch("writer");
        let path = dir.join("run.ckpt");
        let writer = Writer::new(&path);
        for i in 0..50u8 {
            writer.submit(vec![i; 100]);
        }
        writer.flush().unwrap();
        assert_eq!(read(&path).unwrap().unwrap(), vec![49; 100]);
        drop(writer);
        // A directory that does not exist: the write fails, and says so.
        let writer = Writer::new(&dir.join("missing").join("run.ckpt"));
        writer.submit(vec![1]);
        let err = writer.flush().unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
