//! Scoped configuration: worker count, progress bars, parallel and
//! deterministic modes (PyPhi: `config.override(...)`).

use std::cell::RefCell;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Instant;

use crate::error::ConfigError;
use crate::progress::{ProgressSink, SharedSink};
use crate::stop::StopHandle;
use std::sync::Arc;

/// Environment variable for the default worker count (PyPhi: `NUMBER_OF_CORES`).
///
/// ```
/// assert_eq!(mapreduce::ENV_WORKERS, "MAPREDUCE_WORKERS");
/// ```
pub const ENV_WORKERS: &str = "MAPREDUCE_WORKERS";
/// Environment variable for the default of progress bars (PyPhi: `PROGRESS_BARS`).
///
/// ```
/// assert_eq!(mapreduce::ENV_PROGRESS, "MAPREDUCE_PROGRESS");
/// ```
pub const ENV_PROGRESS: &str = "MAPREDUCE_PROGRESS";
/// Environment variable for the default of parallel runs (PyPhi: `PARALLEL`).
///
/// ```
/// assert_eq!(mapreduce::ENV_PARALLEL, "MAPREDUCE_PARALLEL");
/// ```
pub const ENV_PARALLEL: &str = "MAPREDUCE_PARALLEL";
/// Environment variable for the default of deterministic shortcircuits.
///
/// ```
/// assert_eq!(mapreduce::ENV_DETERMINISTIC, "MAPREDUCE_DETERMINISTIC");
/// ```
pub const ENV_DETERMINISTIC: &str = "MAPREDUCE_DETERMINISTIC";
/// Environment variable for the default cap on the items a stream holds in
/// flight (see [`Config::with_stream_buffer`]; `0` is automatic).
///
/// ```
/// assert_eq!(mapreduce::ENV_STREAM_BUFFER, "MAPREDUCE_STREAM_BUFFER");
/// ```
pub const ENV_STREAM_BUFFER: &str = "MAPREDUCE_STREAM_BUFFER";
/// Environment variable for the default leaf size of reproducible runs (see
/// [`Config::with_leaf_size`]; `0` is automatic).
///
/// ```
/// assert_eq!(mapreduce::ENV_LEAF_SIZE, "MAPREDUCE_LEAF_SIZE");
/// ```
pub const ENV_LEAF_SIZE: &str = "MAPREDUCE_LEAF_SIZE";
/// Environment variable for the default of oversubscription (see
/// [`Config::with_oversubscription`]).
///
/// ```
/// assert_eq!(mapreduce::ENV_OVERSUBSCRIBE, "MAPREDUCE_OVERSUBSCRIBE");
/// ```
pub const ENV_OVERSUBSCRIBE: &str = "MAPREDUCE_OVERSUBSCRIBE";

/// How runs behave: how many workers, whether to draw progress bars, whether
/// to run in parallel at all, and whether shortcircuits are deterministic.
///
/// A `Config` is a value: build one from [`Config::current`] with the
/// `with_*` methods and apply it with [`Config::scope`]. The scope reaches
/// every task of every run started inside it, on whatever thread the task
/// runs, and every run nested inside those tasks.
///
/// ```
/// use mapreduce::{jobs, par_map_reduce, Config};
///
/// let total = Config::current()
///     .with_workers(2)
///     .with_progress_bars(false)
///     .scope(|| par_map_reduce(0..1000u64, &(), jobs::sum(|x: u64, _: &()| x)))
///     .unwrap();
/// assert_eq!(total, 499_500);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    workers: isize,
    progress_bars: bool,
    progress_bars_always: bool,
    parallel: bool,
    deterministic: bool,
    progress_sink: Option<SharedSink>,
    nested_progress_bars: bool,
    /// The most items a stream holds in flight; 0: automatic.
    stream_buffer: usize,
    /// Items per leaf of reproducible runs; 0: automatic.
    leaf_size: usize,
    /// Whether `with_workers(n)` may exceed the machine's cores.
    oversubscription: bool,
    /// Runs stop when this is pulled.
    stop: Option<StopHandle>,
    /// A durable run's own stop handle, its checkpoint's: watched besides
    /// the user's.
    durable_stop: Option<StopHandle>,
    /// Runs stop at this moment.
    deadline: Option<Instant>,
    /// Environment values that did not parse; reported when a run starts,
    /// forgotten once the setting they concern is set explicitly.
    env_errors: Vec<ConfigError>,
}

thread_local! {
    /// The innermost configuration in force on this thread: set by
    /// `Config::scope` and, inside a task, by the engine to the run's config.
    static SCOPED: RefCell<Option<Config>> = const { RefCell::new(None) };
}

impl Default for Config {
    /// The built-in defaults, ignoring the environment: all cores, progress
    /// bars on, parallel on, deterministic on.
    ///
    /// ```
    /// let config = mapreduce::Config::default();
    /// assert_eq!(config.workers(), -1);
    /// assert!(config.progress_bars() && config.parallel() && config.deterministic());
    /// ```
    fn default() -> Self {
        Config {
            workers: -1,
            progress_bars: true,
            progress_bars_always: false,
            parallel: true,
            deterministic: true,
            progress_sink: None,
            nested_progress_bars: false,
            stream_buffer: 0,
            leaf_size: 0,
            oversubscription: false,
            stop: None,
            durable_stop: None,
            deadline: None,
            env_errors: Vec::new(),
        }
    }
}

impl Config {
    /// The configuration in force here: the innermost [`scope`](Self::scope),
    /// else the process default: the last [`set_default`](Self::set_default),
    /// or else the environment (see [`Config::from_env`], read once).
    /// Never panics: a bad environment value is reported as
    /// [`Error::Config`](crate::Error::Config) when a run starts.
    ///
    /// ```
    /// use mapreduce::Config;
    ///
    /// let inner = Config::current().with_workers(1).scope(Config::current);
    /// assert_eq!(inner.workers(), 1);
    /// ```
    pub fn current() -> Config {
        // `try_with`: in a thread-local destructor that runs after this
        // thread's scopes are gone, the process default is in force.
        SCOPED
            .try_with(|scoped| scoped.borrow().clone())
            .ok()
            .flatten()
            .unwrap_or_else(process_default)
    }

    /// Make this the process default: what every thread starts from outside
    /// any [`scope`](Self::scope), threads the application spawns later
    /// included (PyPhi's global `config`). Scopes still override it where
    /// they are in force. The environment is read once, before the first
    /// default is needed; after this call it no longer matters.
    ///
    /// ```
    /// use mapreduce::Config;
    ///
    /// Config::current().with_workers(1).set_default();
    /// let seen = std::thread::spawn(|| Config::current().workers()).join().unwrap();
    /// assert_eq!(seen, 1);
    /// assert_eq!(Config::current().with_workers(2).scope(|| Config::current().workers()), 2);
    /// # Config::from_env().set_default();
    /// ```
    pub fn set_default(self) {
        *SET_DEFAULT.write() = Some(self);
    }

    /// The defaults as the environment sets them now: `MAPREDUCE_WORKERS`
    /// (an integer, see [`with_workers`](Self::with_workers)),
    /// `MAPREDUCE_PROGRESS`, `MAPREDUCE_PARALLEL` and
    /// `MAPREDUCE_DETERMINISTIC` (booleans: 1/0, true/false, yes/no, on/off;
    /// `MAPREDUCE_PROGRESS=always` also draws bars where stderr is not a
    /// terminal, see [`with_progress_bars_always`](Self::with_progress_bars_always)),
    /// and `MAPREDUCE_STREAM_BUFFER` (a count of items, `0` for automatic, see
    /// [`with_stream_buffer`](Self::with_stream_buffer)).
    /// Unset variables keep the built-in [`Default`]. Values that do not parse,
    /// and values that are not valid Unicode, are kept as errors
    /// ([`ConfigError::InvalidEnv`] naming the variable) that the next run
    /// using this config returns.
    ///
    /// ```
    /// let config = mapreduce::Config::from_env();
    /// assert!(config.workers() != 0 || config.check().is_err());
    /// ```
    pub fn from_env() -> Config {
        Config::from_lookup(|name| std::env::var_os(name))
    }

    /// [`from_env`](Self::from_env) with the variables looked up by `lookup`.
    pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Config {
        let mut config = Config::default();
        // Each variable as text; one that is not valid Unicode is an error.
        let lookup = |variable: &'static str, errors: &mut Vec<ConfigError>| {
            let value = lookup(variable)?;
            match value.into_string() {
                Ok(text) => Some(text),
                Err(raw) => {
                    errors.push(ConfigError::InvalidEnv {
                        variable,
                        value: raw.to_string_lossy().into_owned(),
                        reason: "not valid Unicode (UTF-8)".into(),
                    });
                    None
                }
            }
        };
        if let Some(value) = lookup(ENV_WORKERS, &mut config.env_errors) {
            match parse_workers(&value) {
                Ok(workers) => config.workers = workers,
                Err(reason) => config.env_errors.push(ConfigError::InvalidEnv {
                    variable: ENV_WORKERS,
                    value,
                    reason,
                }),
            }
        }
        if let Some(value) = lookup(ENV_PROGRESS, &mut config.env_errors) {
            // `always`: bars on, even where stderr is not a terminal.
            let always = value.trim().eq_ignore_ascii_case("always");
            match parse_bool(&value).or(always.then_some(true)) {
                Some(on) => (config.progress_bars, config.progress_bars_always) = (on, always),
                None => config.env_errors.push(ConfigError::InvalidEnv {
                    variable: ENV_PROGRESS,
                    value,
                    reason: "expected a boolean (1/0, true/false, yes/no, on/off) or always".into(),
                }),
            }
        }
        if let Some(value) = lookup(ENV_STREAM_BUFFER, &mut config.env_errors) {
            match parse_stream_buffer(&value) {
                Ok(items) => config.stream_buffer = items,
                Err(reason) => config.env_errors.push(ConfigError::InvalidEnv {
                    variable: ENV_STREAM_BUFFER,
                    value,
                    reason,
                }),
            }
        }
        if let Some(value) = lookup(ENV_LEAF_SIZE, &mut config.env_errors) {
            match value.trim().parse::<usize>() {
                Ok(items) => config.leaf_size = items,
                Err(_) => config.env_errors.push(ConfigError::InvalidEnv {
                    variable: ENV_LEAF_SIZE,
                    value,
                    reason: "expected a count of items: n > 0 items per leaf, 0 for automatic".into(),
                }),
            }
        }
        for (variable, slot) in [
            (ENV_PARALLEL, &mut config.parallel),
            (ENV_DETERMINISTIC, &mut config.deterministic),
            (ENV_OVERSUBSCRIBE, &mut config.oversubscription),
        ] {
            if let Some(value) = lookup(variable, &mut config.env_errors) {
                match parse_bool(&value) {
                    Some(on) => *slot = on,
                    None => config.env_errors.push(ConfigError::InvalidEnv {
                        variable,
                        value,
                        reason: "expected a boolean: 1/0, true/false, yes/no or on/off".into(),
                    }),
                }
            }
        }
        config
    }

    /// PyPhi's `NUMBER_OF_CORES`: `n > 0` asks for `n` workers (more than the
    /// machine has is clamped, with an info log); `-1` means all cores, `-2`
    /// all but one, and so on; `0` or too negative is an error when a run
    /// starts.
    ///
    /// ```
    /// let config = mapreduce::Config::current().with_workers(-1);
    /// assert_eq!(config.workers(), -1);
    /// assert!(config.num_workers().unwrap() >= 1);
    /// ```
    pub fn with_workers(mut self, n: isize) -> Config {
        self.workers = n;
        self.forget_env_error(ENV_WORKERS);
        self
    }

    /// Draw a progress bar for top-level runs (only when stderr is a terminal).
    ///
    /// ```
    /// assert!(!mapreduce::Config::current().with_progress_bars(false).progress_bars());
    /// ```
    pub fn with_progress_bars(mut self, on: bool) -> Config {
        self.progress_bars = on;
        self.forget_env_error(ENV_PROGRESS);
        self
    }

    /// Draw bars even when stderr is not a terminal, where a person still
    /// watches it: rank 0 of an `mpirun` job, whose stderr is a pipe that
    /// `mpirun` copies to your terminal as it comes. Bars are then drawn
    /// with ANSI escapes, 80 columns wide unless `COLUMNS` says otherwise.
    /// `MAPREDUCE_PROGRESS=always` sets it (with bars on).
    ///
    /// ```
    /// let config = mapreduce::Config::current().with_progress_bars_always(true);
    /// assert!(config.progress_bars_always());
    /// ```
    pub fn with_progress_bars_always(mut self, on: bool) -> Config {
        self.progress_bars_always = on;
        self.forget_env_error(ENV_PROGRESS);
        self
    }

    /// Whether bars are drawn even when stderr is not a terminal (see
    /// [`with_progress_bars_always`](Self::with_progress_bars_always)).
    ///
    /// ```
    /// assert!(!mapreduce::Config::default().progress_bars_always());
    /// ```
    pub fn progress_bars_always(&self) -> bool {
        self.progress_bars_always
    }

    /// Whether a bar would be drawn on this process's stderr.
    pub(crate) fn draws_bars(&self) -> bool {
        self.progress_bars && (self.progress_bars_always || std::io::stderr().is_terminal())
    }

    /// Off: runs process their items one at a time, in order (PyPhi:
    /// `run(parallel=False)`): `par_map_reduce_iter` on the calling thread,
    /// `par_map_reduce` and `par_map_reduce_in_order` on a single worker.
    /// The reproducible entry points (`par_map_reduce_in_order`,
    /// `par_map_reduce_iter`) still evaluate their fixed tree of leaves, on
    /// one worker: the sequential reference every parallel run equals, bit
    /// for bit. `par_map_reduce` stays a plain fold, equal to
    /// `seq_map_reduce`.
    ///
    /// ```
    /// use mapreduce::{jobs, par_map_reduce, Config};
    ///
    /// let order = Config::current()
    ///     .with_parallel(false)
    ///     .scope(|| par_map_reduce(0..5, &(), jobs::collect(|x: i32, _: &()| x)))
    ///     .unwrap();
    /// assert_eq!(order, [0, 1, 2, 3, 4]);
    /// ```
    pub fn with_parallel(mut self, on: bool) -> Config {
        self.parallel = on;
        self.forget_env_error(ENV_PARALLEL);
        self
    }

    /// On (the default): the result of a shortcircuited run is exactly the
    /// sequential result (the leftmost `Break` wins; items left of it are
    /// still computed). Off: the first `Break` found wins and everything else
    /// stops at once.
    ///
    /// ```
    /// use mapreduce::{jobs, par_map_reduce, Config};
    ///
    /// let found = Config::current()
    ///     .with_deterministic(false)
    ///     .scope(|| par_map_reduce(0..10_000u32, &(), jobs::find_first(|x: &u32, _: &()| x % 1000 == 999)))
    ///     .unwrap();
    /// assert_eq!(found.map(|x| x % 1000), Some(999));
    /// ```
    pub fn with_deterministic(mut self, on: bool) -> Config {
        self.deterministic = on;
        self.forget_env_error(ENV_DETERMINISTIC);
        self
    }

    /// Also show runs nested in tasks, as child bars under the top-level
    /// run's bar, removed when they end (off by default: nested runs draw
    /// no bar of their own). Needs progress bars on.
    ///
    /// ```
    /// let config = mapreduce::Config::current().with_nested_progress_bars(true);
    /// assert!(config.nested_progress_bars());
    /// ```
    pub fn with_nested_progress_bars(mut self, on: bool) -> Config {
        self.nested_progress_bars = on;
        self
    }

    /// Whether nested runs show child bars.
    ///
    /// ```
    /// assert!(!mapreduce::Config::default().nested_progress_bars());
    /// ```
    pub fn nested_progress_bars(&self) -> bool {
        self.nested_progress_bars
    }

    /// Cap the items a streamed run ([`par_map_reduce_iter`](crate::par_map_reduce_iter))
    /// holds in flight, all its batches together, to `items`: for items that
    /// own a lot of memory (buffers, records, images) or other resources.
    /// `0` (the default) is automatic: two batches of at most 4 MiB of items
    /// (inline) each, each handed to the workers when full or after 4 ms of
    /// reading. With a cap `n`, at most `min(2, n)` batches of at most
    /// `n / min(2, n)` items are alive at once, so at most `n` items: the
    /// input's peak memory is `n` times an item's size, inline and owned
    /// (the whole rule: [`par_map_reduce_iter`](crate::par_map_reduce_iter),
    /// "Memory"). A small cap keeps the workers waiting on the reader more
    /// often; `n` of a few times the worker count keeps them busy when items
    /// take long to compute. `MAPREDUCE_STREAM_BUFFER` sets the default.
    ///
    /// ```
    /// use mapreduce::{jobs, par_map_reduce_iter, Config};
    ///
    /// // Records of 1 MiB each: at most 8 of them (8 MiB) are in memory at once.
    /// let records = (0..64u8).map(|i| vec![i; 1 << 20]);
    /// let total = Config::current()
    ///     .with_stream_buffer(8)
    ///     .scope(|| par_map_reduce_iter(records, &(), jobs::sum(|r: Vec<u8>, _: &()| r[0] as u64)))
    ///     .unwrap();
    /// assert_eq!(total, (0..64).sum::<u64>());
    /// ```
    pub fn with_stream_buffer(mut self, items: usize) -> Config {
        self.stream_buffer = items;
        self.forget_env_error(ENV_STREAM_BUFFER);
        self
    }

    /// The cap on the items a stream holds in flight; `0`: automatic (see
    /// [`with_stream_buffer`](Self::with_stream_buffer)).
    ///
    /// ```
    /// use mapreduce::Config;
    ///
    /// assert_eq!(Config::default().stream_buffer(), 0);
    /// assert_eq!(Config::default().with_stream_buffer(64).stream_buffer(), 64);
    /// ```
    pub fn stream_buffer(&self) -> usize {
        self.stream_buffer
    }

    /// Items per leaf of the reproducible runs (`par_map_reduce_in_order`,
    /// `par_map_reduce_iter`, `mpi::par_map_reduce`): their answer is a
    /// function of the items, the job and the leaf size only, never of the
    /// workers or ranks (see the crate docs, "Reproducible reductions").
    /// `0` (the default) is automatic: `clamp(len / 1024, 1, 16384)` for an
    /// input of `len` items. `MAPREDUCE_LEAF_SIZE` sets the default.
    ///
    /// ```
    /// use mapreduce::{jobs, par_map_reduce_in_order, Config};
    ///
    /// let sum = |leaf_size| {
    ///     Config::current()
    ///         .with_leaf_size(leaf_size)
    ///         .scope(|| par_map_reduce_in_order(0..10_000usize, &(), jobs::sum(|x: usize, _: &()| 1.0 / (x as f64 + 1.0))))
    ///         .unwrap()
    /// };
    /// // The same bits for any worker count; the leaf size is part of the answer.
    /// assert_eq!(sum(64).to_bits(), Config::current().with_workers(1).scope(|| sum(64)).to_bits());
    /// ```
    pub fn with_leaf_size(mut self, items: usize) -> Config {
        self.leaf_size = items;
        self.forget_env_error(ENV_LEAF_SIZE);
        self
    }

    /// The leaf size of reproducible runs; `0`: automatic (see
    /// [`with_leaf_size`](Self::with_leaf_size)).
    ///
    /// ```
    /// assert_eq!(mapreduce::Config::default().leaf_size(), 0);
    /// ```
    pub fn leaf_size(&self) -> usize {
        self.leaf_size
    }

    /// On: [`with_workers(n)`](Self::with_workers) gets `n` workers even
    /// beyond the machine's cores, instead of clamping to them: for tests of
    /// reproducibility across worker counts, and for jobs that wait on I/O.
    /// `MAPREDUCE_OVERSUBSCRIBE` sets the default.
    ///
    /// ```
    /// use mapreduce::Config;
    ///
    /// let config = Config::current().with_workers(64).with_oversubscription(true);
    /// assert_eq!(config.num_workers(), Ok(64));
    /// ```
    pub fn with_oversubscription(mut self, on: bool) -> Config {
        self.oversubscription = on;
        self.forget_env_error(ENV_OVERSUBSCRIBE);
        self
    }

    /// Whether worker counts may exceed the machine's cores.
    ///
    /// ```
    /// assert!(!mapreduce::Config::default().oversubscription());
    /// ```
    pub fn oversubscription(&self) -> bool {
        self.oversubscription
    }

    /// Stop runs when `handle` is pulled ([`StopHandle::stop`], from any
    /// thread): their items in flight see [`is_cancelled`](crate::is_cancelled)
    /// and they return [`Error::Stopped`](crate::Error::Stopped) promptly,
    /// nothing saved. A run started after the pull stops at once. Durable
    /// runs (feature `durable`) stop by their checkpoint's handle, which
    /// saves the completed prefix first.
    ///
    /// ```
    /// use mapreduce::{jobs, par_map_reduce_in_order, Config, Error, StopHandle};
    ///
    /// let stop = StopHandle::new();
    /// stop.stop();
    /// let result = Config::current().with_stop(stop).scope(|| {
    ///     par_map_reduce_in_order(0..1_000_000usize, &(), jobs::count(|_: &usize, _: &()| true))
    /// });
    /// assert!(matches!(result, Err(Error::Stopped { done: 0, checkpoint: None })));
    /// ```
    pub fn with_stop(mut self, handle: StopHandle) -> Config {
        self.stop = Some(handle);
        self
    }

    /// The handle that stops runs, if any (see [`with_stop`](Self::with_stop)).
    pub fn stop_handle(&self) -> Option<&StopHandle> {
        self.stop.as_ref()
    }

    /// This config, for a durable run whose checkpoint's handle is `handle`.
    #[cfg_attr(not(feature = "durable"), allow(dead_code))]
    pub(crate) fn with_durable_stop(mut self, handle: StopHandle) -> Config {
        self.durable_stop = Some(handle);
        self
    }

    /// The stop handles a run watches: the user's and a durable run's.
    pub(crate) fn stop_handles(&self) -> impl Iterator<Item = &StopHandle> {
        self.stop.iter().chain(&self.durable_stop)
    }

    /// Stop runs that are still going at `deadline` with
    /// [`Error::Stopped`](crate::Error::Stopped), as
    /// [`with_stop`](Self::with_stop) does: a time limit for one search in a
    /// batch job, say. A thread of the crate's, asleep until the earliest
    /// deadline, pulls the cord.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use mapreduce::{jobs, par_map_reduce, Config, Error};
    ///
    /// let result = Config::current()
    ///     .with_deadline(Instant::now() + Duration::from_millis(50))
    ///     .scope(|| par_map_reduce(0..u64::MAX, &(), jobs::count(|_: &u64, _: &()| false)));
    /// assert!(matches!(result, Err(Error::Stopped { .. })));
    /// ```
    pub fn with_deadline(mut self, deadline: Instant) -> Config {
        self.deadline = Some(deadline);
        self
    }

    /// When runs stop, if ever (see [`with_deadline`](Self::with_deadline)).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Tell `sink` how top-level runs progress (start, items done several
    /// times a second, end), whether or not a bar is drawn. See
    /// [`ProgressSink`].
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use mapreduce::{jobs, par_map_reduce, Config, Outcome, ProgressSink};
    ///
    /// struct Done(AtomicU64);
    /// impl ProgressSink for Done {
    ///     fn finish(&self, done: u64, _: Outcome) { self.0.store(done, Ordering::Relaxed) }
    /// }
    ///
    /// let sink = Arc::new(Done(AtomicU64::new(0)));
    /// let job = jobs::sum(|x: u64, _: &()| x);
    /// Config::current().with_progress_sink(sink.clone()).scope(|| par_map_reduce(0..500u64, &(), job)).unwrap();
    /// assert_eq!(sink.0.load(Ordering::Relaxed), 500);
    /// ```
    pub fn with_progress_sink(mut self, sink: Arc<dyn ProgressSink>) -> Config {
        self.progress_sink = Some(SharedSink(sink));
        self
    }

    /// No [`ProgressSink`] (the default).
    ///
    /// ```
    /// assert!(mapreduce::Config::current().without_progress_sink().progress_sink().is_none());
    /// ```
    pub fn without_progress_sink(mut self) -> Config {
        self.progress_sink = None;
        self
    }

    /// The [`ProgressSink`] top-level runs report to, if any.
    ///
    /// ```
    /// assert!(mapreduce::Config::default().progress_sink().is_none());
    /// ```
    pub fn progress_sink(&self) -> Option<Arc<dyn ProgressSink>> {
        self.progress_sink.as_ref().map(|sink| Arc::clone(&sink.0))
    }

    pub(crate) fn progress_sink_shared(&self) -> Option<SharedSink> {
        self.progress_sink.clone()
    }

    /// Whether a [`ProgressSink`] is set (without cloning it).
    pub(crate) fn has_progress_sink(&self) -> bool {
        self.progress_sink.is_some()
    }

    /// Run `f` under this configuration: on this thread, and in every task
    /// and nested run started inside `f`, whatever thread runs it. The
    /// previous configuration is back when `f` returns or unwinds.
    ///
    /// ```
    /// use mapreduce::{jobs, par_map_reduce, Config};
    ///
    /// let seen = Config::current().with_workers(1).scope(|| {
    ///     par_map_reduce(0..4, &(), jobs::collect(|_: i32, _: &()| Config::current().workers()))
    /// });
    /// assert_eq!(seen.unwrap(), [1, 1, 1, 1]);
    /// ```
    pub fn scope<R>(self, f: impl FnOnce() -> R) -> R {
        let _scope = ScopeGuard::enter(self);
        f()
    }

    /// The worker count this configuration resolves to on this machine.
    ///
    /// ```
    /// use mapreduce::Config;
    ///
    /// assert_eq!(Config::current().with_workers(1).num_workers(), Ok(1));
    /// assert!(Config::current().with_workers(0).num_workers().is_err());
    /// ```
    pub fn num_workers(&self) -> Result<usize, ConfigError> {
        match self.env_errors.first() {
            Some(err) => Err(err.clone()),
            None => self.resolve(),
        }
    }

    /// [`resolve_workers`](Self::resolve_workers) on this machine, unclamped
    /// under oversubscription.
    fn resolve(&self) -> Result<usize, ConfigError> {
        match self.workers {
            n if n > 0 && self.oversubscription => Ok(n.unsigned_abs()),
            n => Config::resolve_workers(n, available_cores()),
        }
    }

    /// The rule itself, for any machine size: `n > 0` gives `min(n,
    /// available)`, `-k` gives `available + 1 - k`, and `0` or a count that
    /// leaves no worker is an error.
    ///
    /// ```
    /// use mapreduce::Config;
    ///
    /// assert_eq!(Config::resolve_workers(-1, 8), Ok(8));
    /// assert_eq!(Config::resolve_workers(-2, 8), Ok(7));
    /// assert_eq!(Config::resolve_workers(3, 2), Ok(2));
    /// assert!(Config::resolve_workers(-9, 8).is_err());
    /// ```
    pub fn resolve_workers(requested: isize, available: usize) -> Result<usize, ConfigError> {
        let available = available.max(1);
        match requested {
            0 => Err(ConfigError::ZeroWorkers),
            n if n > 0 => {
                let n = n.unsigned_abs();
                // Said once per process: thousands of small runs would repeat it.
                static CLAMPED: std::sync::Once = std::sync::Once::new();
                if n > available {
                    CLAMPED.call_once(|| {
                        log::info!("{n} workers requested but {available} cores available: using {available}")
                    });
                }
                Ok(n.min(available))
            }
            n => {
                let all_but = n.unsigned_abs() - 1;
                match available.checked_sub(all_but) {
                    Some(workers) if workers > 0 => Ok(workers),
                    _ => Err(ConfigError::TooNegative { requested, available }),
                }
            }
        }
    }

    /// Whether a run under this configuration can start: the first bad
    /// environment value, else an impossible worker count (`0`, or too
    /// negative for this machine), if any.
    ///
    /// **One rule for every run.** Every run checks its whole configuration
    /// when it starts, whether it runs in parallel or not: [`seq_map_reduce`](crate::seq_map_reduce)
    /// and runs under `with_parallel(false)` use no workers, but the same
    /// code would fail the moment it ran in parallel, so they fail now. The
    /// getters ([`workers`](Self::workers) and the others) report the value
    /// in force, which for a bad environment value is the built-in default.
    ///
    /// ```
    /// use mapreduce::{jobs, seq_map_reduce, Config};
    ///
    /// assert!(Config::default().check().is_ok());
    /// let zero = Config::default().with_workers(0);
    /// assert!(zero.check().is_err());
    /// assert!(zero.scope(|| seq_map_reduce(0..3, &(), jobs::count(|_: &i32, _: &()| true))).is_err());
    /// ```
    pub fn check(&self) -> Result<(), ConfigError> {
        match self.env_errors.first() {
            Some(err) => Err(err.clone()),
            None => self.resolve().map(drop),
        }
    }

    /// The requested worker count, before [`num_workers`](Self::num_workers)
    /// resolves it.
    ///
    /// ```
    /// assert_eq!(mapreduce::Config::default().with_workers(-2).workers(), -2);
    /// ```
    pub fn workers(&self) -> isize {
        self.workers
    }

    /// Whether top-level runs draw a progress bar.
    ///
    /// ```
    /// assert!(mapreduce::Config::default().progress_bars());
    /// ```
    pub fn progress_bars(&self) -> bool {
        self.progress_bars
    }

    /// Whether runs use the pool.
    ///
    /// ```
    /// assert!(mapreduce::Config::default().parallel());
    /// ```
    pub fn parallel(&self) -> bool {
        self.parallel
    }

    /// Whether shortcircuits return exactly the sequential result.
    ///
    /// ```
    /// assert!(mapreduce::Config::default().deterministic());
    /// ```
    pub fn deterministic(&self) -> bool {
        self.deterministic
    }

    fn forget_env_error(&mut self, variable: &str) {
        self.env_errors
            .retain(|err| !matches!(err, ConfigError::InvalidEnv { variable: v, .. } if *v == variable));
    }
}

/// Makes a configuration the innermost one on this thread until dropped.
pub(crate) struct ScopeGuard {
    previous: Option<Config>,
}

impl ScopeGuard {
    /// `try_with`, here and in `drop`: in a thread-local destructor that
    /// runs after `SCOPED` is gone, the scope cannot be set (and stays
    /// unset until the drop, `SCOPED` never comes back): code inside it sees
    /// the process default.
    pub(crate) fn enter(config: Config) -> ScopeGuard {
        let previous = SCOPED.try_with(|scoped| scoped.replace(Some(config))).unwrap_or(None);
        ScopeGuard { previous }
    }
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        let _ = SCOPED.try_with(|scoped| *scoped.borrow_mut() = previous);
    }
}

/// The configuration outside any scope: the environment, read once.
fn process_default() -> Config {
    static FROM_ENV: OnceLock<Config> = OnceLock::new();
    match &*SET_DEFAULT.read() {
        Some(config) => config.clone(),
        None => FROM_ENV.get_or_init(Config::from_env).clone(),
    }
}

/// The default that [`Config::set_default`] set, if any.
static SET_DEFAULT: parking_lot::RwLock<Option<Config>> = parking_lot::RwLock::new(None);

/// The cores this process may use (affinity and cgroup limits included).
pub(crate) fn available_cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn parse_workers(value: &str) -> Result<isize, String> {
    match value.trim().parse::<isize>() {
        Ok(0) => Err("0 workers: use n > 0 workers, or -1 for all cores, -2 for all but one".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("expected an integer: n > 0 workers, or -1 for all cores, -2 for all but one".into()),
    }
}

fn parse_stream_buffer(value: &str) -> Result<usize, String> {
    value
        .trim()
        .parse::<usize>()
        .map_err(|_| "expected a count of items: n > 0 caps the items a stream holds in flight, 0 is automatic".into())
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Config {
        let pairs: Vec<(&str, OsString)> = pairs.iter().map(|(k, v)| (*k, OsString::from(v))).collect();
        env_os(&pairs)
    }

    fn env_os(pairs: &[(&str, OsString)]) -> Config {
        Config::from_lookup(|name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    #[cfg(unix)]
    fn non_unicode_env_values_name_their_variable() {
        use std::os::unix::ffi::OsStringExt;
        for variable in [ENV_WORKERS, ENV_PROGRESS, ENV_PARALLEL, ENV_DETERMINISTIC] {
            let config = env_os(&[(variable, OsString::from_vec(b"1\xff".to_vec()))]);
            let err = config.check().unwrap_err();
            match &err {
                ConfigError::InvalidEnv {
                    variable: v,
                    value,
                    reason,
                } => {
                    assert_eq!(*v, variable);
                    assert_eq!(value, "1\u{fffd}");
                    assert!(reason.contains("Unicode"), "{reason}");
                }
                other => panic!("{other:?}"),
            }
            assert!(err.to_string().contains(variable), "{err}");
            assert_eq!(config.num_workers().unwrap_err(), err);
            // The setting itself keeps its built-in default.
            assert_eq!(
                Config {
                    env_errors: Vec::new(),
                    ..config
                },
                Config::default()
            );
        }
        // Alongside a valid value, only the broken one is reported.
        let config = env_os(&[
            (ENV_WORKERS, OsString::from("2")),
            (ENV_PARALLEL, OsString::from_vec(vec![0x80])),
        ]);
        assert_eq!(config.workers(), 2);
        assert!(config.check().unwrap_err().to_string().contains(ENV_PARALLEL));
    }

    #[test]
    fn progress_always_turns_bars_on_anywhere() {
        let config = env(&[(ENV_PROGRESS, "Always")]);
        assert!(config.progress_bars() && config.progress_bars_always());
        assert!(config.check().is_ok());
        assert!(config.draws_bars());
        let config = env(&[(ENV_PROGRESS, "1")]);
        assert!(config.progress_bars() && !config.progress_bars_always());
        let err = env(&[(ENV_PROGRESS, "sometimes")]).check().unwrap_err();
        assert!(err.to_string().contains("or always"), "{err}");
        assert!(!Config::default()
            .with_progress_bars_always(true)
            .with_progress_bars(false)
            .draws_bars());
    }

    #[test]
    fn worker_rule_matches_pyphi() {
        assert_eq!(Config::resolve_workers(0, 2), Err(ConfigError::ZeroWorkers));
        assert_eq!(Config::resolve_workers(-1, 2), Ok(2));
        assert_eq!(Config::resolve_workers(-2, 2), Ok(1));
        assert_eq!(
            Config::resolve_workers(-3, 2),
            Err(ConfigError::TooNegative {
                requested: -3,
                available: 2
            })
        );
        assert_eq!(Config::resolve_workers(3, 2), Ok(2));
        assert_eq!(Config::resolve_workers(1, 2), Ok(1));
        assert!(Config::resolve_workers(isize::MIN, 2)
            .unwrap_err()
            .to_string()
            .contains("leaves none"));
        assert_eq!(Config::resolve_workers(isize::MAX, 64), Ok(64));
    }

    #[test]
    fn env_values_parse() {
        let config = env(&[
            (ENV_WORKERS, " 3 "),
            (ENV_PROGRESS, "off"),
            (ENV_PARALLEL, "No"),
            (ENV_DETERMINISTIC, "0"),
            (ENV_STREAM_BUFFER, " 64 "),
        ]);
        assert_eq!(config.workers(), 3);
        assert_eq!(config.stream_buffer(), 64);
        assert_eq!(env(&[(ENV_STREAM_BUFFER, "0")]).stream_buffer(), 0);
        assert!(!config.progress_bars() && !config.parallel() && !config.deterministic());
        assert!(config.check().is_ok());
        assert_eq!(env(&[]), Config::default());
    }

    #[test]
    fn bad_env_values_name_their_variable() {
        for (variable, value) in [
            (ENV_WORKERS, "many"),
            (ENV_WORKERS, "0"),
            (ENV_WORKERS, ""),
            (ENV_PROGRESS, "maybe"),
            (ENV_PARALLEL, "2"),
            (ENV_DETERMINISTIC, "yes please"),
            (ENV_STREAM_BUFFER, "lots"),
            (ENV_STREAM_BUFFER, "-1"),
            (ENV_STREAM_BUFFER, "1.5"),
            (ENV_STREAM_BUFFER, ""),
        ] {
            let config = env(&[(variable, value)]);
            let err = config.check().unwrap_err();
            assert!(err.to_string().contains(variable), "{err}");
            assert_eq!(config.num_workers().unwrap_err(), err);
        }
    }

    #[test]
    fn bad_stream_buffer_is_reported_at_run_start_until_set() {
        let config = env(&[(ENV_STREAM_BUFFER, "big")]);
        match config.check().unwrap_err() {
            ConfigError::InvalidEnv {
                variable,
                value,
                reason,
            } => {
                assert_eq!((variable, value.as_str()), (ENV_STREAM_BUFFER, "big"));
                assert!(reason.contains("count of items"), "{reason}");
            }
            other => panic!("expected InvalidEnv, got {other:?}"),
        }
        assert_eq!(config.stream_buffer(), 0);
        let config = config.with_stream_buffer(16);
        assert!(config.check().is_ok());
        assert_eq!(config.stream_buffer(), 16);
    }

    #[test]
    fn explicit_setting_overrides_bad_env_value() {
        let config = env(&[(ENV_WORKERS, "lots"), (ENV_PROGRESS, "sure")]);
        let config = config.with_workers(1);
        assert!(config.check().unwrap_err().to_string().contains(ENV_PROGRESS));
        assert_eq!(config.with_progress_bars(false).num_workers(), Ok(1));
    }

    #[test]
    fn scope_nests_and_restores_even_on_panic() {
        let outer = Config::current();
        Config::default().with_workers(7).scope(|| {
            assert_eq!(Config::current().workers(), 7);
            let caught = std::panic::catch_unwind(|| {
                Config::default().with_workers(3).scope(|| panic!("inside"));
            });
            assert!(caught.is_err());
            assert_eq!(Config::current().workers(), 7);
        });
        assert_eq!(Config::current(), outer);
    }
}
