//! Logging that behaves with live progress bars: every record, from any
//! thread, is printed above the bars, never torn through a bar line.

use std::io::Write;

use log::{Log, Metadata, Record};

/// Install `env_logger` (filter from `RUST_LOG`, default `warn`) as the
/// process logger, wrapped in [`AboveBars`] so that lines from any thread
/// print above live progress bars. Each line names its thread, so records
/// from workers show which (`mapreduce-<n>`). Idempotent; if the application
/// already installed its own logger, that one is left alone (wrap it in
/// [`AboveBars`] to get the same behaviour).
///
/// ```
/// mapreduce::init_logging();
/// mapreduce::init_logging(); // a second call changes nothing
/// log::warn!("printed above any live progress bar");
/// ```
pub fn init_logging() {
    init_logging_with(default_builder());
}

/// Like [`init_logging`], with your own `env_logger::Builder` (format,
/// filters, target). Returns whether this call installed the logger (false
/// when a logger was already installed).
///
/// ```
/// use mapreduce::{env_logger, log};
///
/// let mut builder = env_logger::Builder::new();
/// builder.filter_level(log::LevelFilter::Info).format_timestamp(None);
/// let installed = mapreduce::logging::init_logging_with(builder);
/// assert!(installed || log::max_level() != log::LevelFilter::Off);
/// ```
pub fn init_logging_with(mut builder: env_logger::Builder) -> bool {
    let logger = builder.build();
    let max_level = logger.filter();
    let installed = log::set_boxed_logger(Box::new(AboveBars::new(logger))).is_ok();
    if installed {
        log::set_max_level(max_level);
    }
    installed
}

/// Run `print` (which writes to stdout or stderr) with the live progress
/// bars cleared, then redraw them: `println!` straight through a live bar
/// tears it and leaves stale bar lines behind. Log records need no such
/// care once [`init_logging`] (or [`AboveBars`]) is in place.
///
/// ```
/// mapreduce::logging::above_bars(|| println!("thread 3 found cut 0b1011"));
/// ```
pub fn above_bars<R>(print: impl FnOnce() -> R) -> R {
    crate::progress::above_bars(print)
}

/// The builder [`init_logging`] uses: `RUST_LOG` (default `warn`), lines as
/// `[time LEVEL target thread] message`.
///
/// ```
/// let mut builder = mapreduce::logging::default_builder();
/// builder.filter_module("my_app", mapreduce::log::LevelFilter::Debug);
/// mapreduce::logging::init_logging_with(builder);
/// ```
pub fn default_builder() -> env_logger::Builder {
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"));
    builder.format(|buf, record| {
        let style = buf.default_level_style(record.level());
        let thread = std::thread::current();
        // A record another MPI rank logged names that rank and its thread.
        #[cfg(feature = "mpi")]
        let origin = crate::mpi::logs::origin();
        #[cfg(not(feature = "mpi"))]
        let origin: Option<String> = None;
        writeln!(
            buf,
            "[{} {style}{:<5}{style:#} {} {}] {}",
            buf.timestamp(),
            record.level(),
            record.target(),
            origin.as_deref().unwrap_or(thread.name().unwrap_or("unnamed")),
            record.args()
        )
    });
    builder
}

/// Wraps any logger so that its lines print above live progress bars: the
/// bars are cleared, the record is logged, the bars are redrawn.
///
/// A panic while logging (a user's `Display` that panics) is caught while
/// the bars are cleared and resumed once they are redrawn and their lock is
/// released: it reaches the code that logged (inside `compute`, it is that
/// item's [`Error::Panicked`](crate::Error::Panicked)), and later lines log
/// as usual. One place is beyond reach: a panic hook. Rust aborts the
/// process on any panic raised while a panic hook runs, before anything
/// can catch it, so a hook that logs a value whose `Display` panics aborts,
/// with or without this crate.
///
/// ```
/// let inner = mapreduce::env_logger::Builder::new().build();
/// let logger = mapreduce::logging::AboveBars::new(inner);
/// // log::set_boxed_logger(Box::new(logger)) installs it.
/// # drop(logger);
/// ```
pub struct AboveBars<L> {
    inner: L,
}

impl<L: Log> AboveBars<L> {
    /// Wrap `inner`.
    ///
    /// ```
    /// let logger = mapreduce::logging::AboveBars::new(mapreduce::env_logger::Logger::from_default_env());
    /// # drop(logger);
    /// ```
    pub fn new(inner: L) -> AboveBars<L> {
        AboveBars { inner }
    }
}

impl<L: Log> Log for AboveBars<L> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if self.inner.enabled(record.metadata()) {
            above_bars(|| self.inner.log(record));
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}
