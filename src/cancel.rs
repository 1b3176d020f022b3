//! Shortcircuit and cancellation state shared by the tasks of one run, and
//! [`is_cancelled`] for the code running inside them.
//!
//! Every task (a rayon leaf, folding a run of adjacent items) owns a
//! *position*: the items of the run are laid out on a line and split into
//! intervals as rayon splits the work, so a task to the left of another has a
//! smaller position. The run keeps one number, the *horizon*: the position of
//! the leftmost task known to have ended the run (by a `Break` or a panic).
//! A task is cancelled exactly when its position is right of the horizon.
//! Deterministic runs lower the horizon to the event's position, so work to
//! the left of it goes on; any-order runs drop it to 0, which cancels all.

use std::cell::Cell;
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use crate::config::{Config, ScopeGuard};
use crate::sync::{AtomicBool, AtomicUsize, Ordering};

/// The smallest position a task can have; 0 is below every task.
pub(crate) const FIRST_POSITION: usize = 1;

/// The shortcircuit state of one run.
pub(crate) struct Shortcircuit {
    /// Position of the leftmost known event; `usize::MAX` while there is none.
    ///
    /// Every access is `Relaxed` (the [`pulse`](Self::pulse) orders it for
    /// watched tasks): the horizon only decides which work is
    /// skipped, never what a result is. A task that reads a stale (higher)
    /// horizon does work that the in-order reduction then discards; results
    /// themselves travel through rayon's `join`, which orders them. Padded
    /// because every worker reads it per item while the rest of the
    /// allocation (the `Arc` counts) is written per task.
    horizon: CachePadded<AtomicUsize>,
    /// Changes whenever the horizon moves, and whenever whoever watches the
    /// run wants fresh counts ([`nudge`](Self::nudge)). A watched task's
    /// per-item loop checks it in place of the horizon (one relaxed load
    /// either way): when it changes, the task leaves the loop, publishes
    /// its count and reads the horizon. Bumped with `Release` after the
    /// horizon moves; a task that sees it change reads the horizon after an
    /// `Acquire`, so it sees the move. Padded: read per item by watched
    /// tasks, written ten times a second.
    pulse: CachePadded<AtomicUsize>,
    /// Set when the run stops for a reason outside its items (a panic in
    /// `merge`, the cancellation of the task that started the run): its
    /// result, whatever the reduction makes of it, is not to be trusted.
    aborted: AtomicBool,
    /// Set when a [`StopHandle`](crate::StopHandle) or a deadline stopped
    /// the run (an abort too): it ends with `Error::Stopped`.
    stopped: AtomicBool,
    deterministic: bool,
    /// The task that started this run, when it is nested in another run.
    parent: Option<Token>,
}

impl Shortcircuit {
    pub(crate) fn new(deterministic: bool, parent: Option<Token>) -> Arc<Shortcircuit> {
        Arc::new(Shortcircuit {
            horizon: CachePadded::new(AtomicUsize::new(usize::MAX)),
            pulse: CachePadded::new(AtomicUsize::new(0)),
            aborted: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            deterministic,
            parent,
        })
    }

    /// Whether the task at `position` can stop: the hot-path check, one
    /// relaxed load.
    #[inline]
    pub(crate) fn is_past(&self, position: usize) -> bool {
        self.horizon.load(Ordering::Relaxed) < position
    }

    /// The horizon itself, for the per-item loop to hold in a register:
    /// a task at `position` stops once `horizon < position` (a relaxed load).
    #[inline]
    pub(crate) fn horizon(&self) -> &AtomicUsize {
        &self.horizon
    }

    /// The pulse, for a watched task's per-item loop to hold in a
    /// register: it leaves the loop once the pulse differs from what it saw
    /// (a relaxed load), then loads it again with `Acquire` and reads the
    /// horizon.
    #[inline]
    pub(crate) fn pulse(&self) -> &AtomicUsize {
        &self.pulse
    }

    /// Ask the watched tasks running now to publish their counts: they
    /// leave their per-item loops once, and go on.
    pub(crate) fn nudge(&self) {
        self.pulse.fetch_add(1, Ordering::Release);
    }

    /// Whether anything has ended or aborted the run yet.
    pub(crate) fn has_event(&self) -> bool {
        self.horizon.load(Ordering::Relaxed) != usize::MAX
    }

    /// The task at `position` ended the run (a `Break` or a panic): cancel
    /// everything right of it (deterministic) or everything (any order).
    pub(crate) fn record_event(&self, position: usize) {
        // Every write is a `fetch_min`: the horizon only ever goes down,
        // whatever order concurrent events and aborts land in.
        let horizon = if self.deterministic { position } else { 0 };
        self.horizon.fetch_min(horizon, Ordering::Relaxed);
        self.nudge();
    }

    /// The horizon's current value: `usize::MAX` while nothing has happened.
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) fn horizon_now(&self) -> usize {
        // `SeqCst`: see `stop`. Not on the per-item path.
        self.horizon.load(Ordering::SeqCst)
    }

    /// Lower the horizon to `horizon` as it stands, whatever the mode: an
    /// event decided elsewhere (on another rank) that this run must honour.
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) fn lower_horizon(&self, horizon: usize) {
        self.horizon.fetch_min(horizon, Ordering::Relaxed);
        self.nudge();
    }

    /// Stop every task: the run's result will be discarded.
    pub(crate) fn abort(&self) {
        self.aborted.store(true, Ordering::Relaxed);
        self.horizon.fetch_min(0, Ordering::Relaxed);
        self.nudge();
    }

    /// Stop every task because someone asked the run to stop: an abort
    /// that the run reports as `Error::Stopped`.
    pub(crate) fn stop(&self) {
        // `SeqCst`, with `is_stopped` and `horizon_now`: whoever reads the
        // horizon this lowers, then asks whether the run was stopped (an MPI
        // rank telling rank 0 why its run ended), hears that it was.
        self.stopped.store(true, Ordering::SeqCst);
        self.aborted.store(true, Ordering::Relaxed);
        self.horizon.fetch_min(0, Ordering::SeqCst);
    }

    /// Whether [`stop`](Self::stop) was called.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Whether [`abort`](Self::abort) was called. Read after the run's
    /// `join`s have completed, which orders it after every store.
    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Relaxed)
    }

    /// Whether the task that started this run was cancelled; if so, abort.
    /// Checked where work is split or started, not per item.
    pub(crate) fn abort_if_parent_cancelled(&self) -> bool {
        let cancelled = self.parent.as_ref().is_some_and(Token::is_cancelled);
        if cancelled {
            self.abort();
        }
        cancelled
    }
}

/// A task's claim on its run: the run's state and the task's position.
#[derive(Clone)]
pub(crate) struct Token {
    run: Arc<Shortcircuit>,
    position: usize,
}

impl Token {
    pub(crate) fn new(run: Arc<Shortcircuit>, position: usize) -> Token {
        Token { run, position }
    }

    /// Whether this task's result can no longer matter, here or in any run
    /// it is nested in.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.run.is_past(self.position) || self.run.parent.as_ref().is_some_and(Token::is_cancelled)
    }
}

thread_local! {
    /// The task this thread is running, if any.
    static CURRENT: Cell<Option<Token>> = const { Cell::new(None) };
}

/// True inside `compute` once the running item's result can no longer
/// matter: the run was shortcircuited left of it (or, in any-order mode,
/// anywhere), it failed, or the task that started it was itself cancelled.
/// False outside a run (and in a thread-local destructor). Long
/// computations poll it and return early; what they return is discarded.
///
/// It answers for the task *this thread* runs. When `compute` hands work to
/// rayon itself (a `join` or a `par_iter` inside `compute`), that work may
/// be stolen by another worker, where this function would answer for the
/// other worker's task: there, poll a [`Task`] handle from
/// [`current_task`] that the inner closures carry with them.
///
/// ```
/// use mapreduce::{is_cancelled, jobs, par_map_reduce};
///
/// assert!(!is_cancelled());
/// let job = jobs::find_first(|x: &u64, _: &()| {
///     // A long computation would poll this and give up early.
///     !is_cancelled() && *x == 10
/// });
/// assert_eq!(par_map_reduce(0..100u64, &(), job).unwrap(), Some(10));
/// ```
pub fn is_cancelled() -> bool {
    current_token().is_some_and(|token| token.is_cancelled())
}

/// The task running on this thread: a handle to its cancellation and its
/// run's [`Config`] that closures can carry to other threads.
///
/// Take it at the start of `compute` and *move* it into the closures that
/// `compute` hands to rayon (a `join`, a `par_iter`): rayon runs those on
/// whatever worker steals them, and that worker's own thread state belongs
/// to another task. The handle is correct by construction wherever it goes.
/// [`Task::enter`] makes it the current task for a block of code, so that
/// [`is_cancelled`], [`Config::current`] and runs nested there answer for it.
///
/// Outside a run, `current_task()` is a task that is never cancelled, with
/// the configuration in force here.
///
/// ```
/// use mapreduce::{current_task, jobs, par_map_reduce};
/// use mapreduce::rayon::prelude::*;
///
/// let job = jobs::sum(|x: u64, _: &()| {
///     let task = current_task();
///     // Data-parallel work inside one item: each closure polls the item's
///     // own task, whichever worker runs it.
///     (0..1000u64)
///         .into_par_iter()
///         .map(move |i| if task.is_cancelled() { 0 } else { x * i })
///         .sum::<u64>()
/// });
/// assert_eq!(par_map_reduce(0..10u64, &(), job).unwrap(), 45 * 499_500);
/// ```
pub fn current_task() -> Task {
    Task {
        token: current_token(),
        config: Config::current(),
    }
}

/// A handle to one task of a run, made by [`current_task`]: cheap to clone,
/// `Send` and `Sync`, so closures can move it to any thread.
///
/// ```
/// let task = mapreduce::current_task();
/// assert!(!task.is_cancelled()); // outside a run: never cancelled
/// std::thread::spawn(move || assert!(!task.is_cancelled())).join().unwrap();
/// ```
#[derive(Clone)]
pub struct Task {
    token: Option<Token>,
    config: Config,
}

impl Task {
    /// Whether this task's result can no longer matter (see
    /// [`is_cancelled`]), asked from any thread.
    ///
    /// ```
    /// assert!(!mapreduce::current_task().is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.token.as_ref().is_some_and(Token::is_cancelled)
    }

    /// The configuration of this task's run (outside a run: the one in force
    /// where the handle was taken).
    ///
    /// ```
    /// use mapreduce::{current_task, Config};
    ///
    /// let task = Config::current().with_workers(1).scope(current_task);
    /// assert_eq!(task.config().workers(), 1);
    /// ```
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Run `f` as this task, on this thread: inside it, [`is_cancelled`]
    /// and [`Config::current`] answer for this task, and runs started there
    /// are nested in it (cancelled with it). Use it in closures that rayon
    /// may run on other workers, when the code inside calls the free
    /// functions or starts runs of its own.
    ///
    /// ```
    /// use mapreduce::{current_task, is_cancelled, jobs, par_map_reduce, Config};
    /// use mapreduce::rayon::prelude::*;
    ///
    /// let job = jobs::collect(|x: u32, _: &()| {
    ///     let task = current_task();
    ///     let workers: Vec<isize> = (0..4)
    ///         .into_par_iter()
    ///         .map(move |_| task.enter(|| Config::current().workers()))
    ///         .collect();
    ///     (x, workers)
    /// });
    /// let seen = Config::current().with_workers(2).scope(|| par_map_reduce(0..3u32, &(), job)).unwrap();
    /// assert!(seen.iter().all(|(_, workers)| workers == &[2, 2, 2, 2]));
    /// assert!(!is_cancelled());
    /// ```
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        let _frame = match &self.token {
            Some(token) => TaskFrame::enter(token.clone(), &self.config),
            None => TaskFrame::outside(&self.config),
        };
        f()
    }
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("in_run", &self.token.is_some())
            .field("cancelled", &self.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// The task this thread is running, to become the parent of a nested run.
/// None outside a task, and where thread-locals are gone (a thread-local
/// destructor).
pub(crate) fn current_token() -> Option<Token> {
    CURRENT
        .try_with(|current| {
            let token = current.take();
            let copy = token.clone();
            current.set(token);
            copy
        })
        .ok()
        .flatten()
}

/// Marks this thread as running a task of a run, under the run's config,
/// until dropped (also when user code unwinds).
pub(crate) struct TaskFrame {
    previous: Option<Token>,
    _config: ScopeGuard,
}

impl TaskFrame {
    pub(crate) fn enter(token: Token, config: &Config) -> TaskFrame {
        TaskFrame::with(Some(token), config)
    }

    /// A frame of no task, under `config`: what runs inside is in no run.
    pub(crate) fn outside(config: &Config) -> TaskFrame {
        TaskFrame::with(None, config)
    }

    fn with(token: Option<Token>, config: &Config) -> TaskFrame {
        let previous = CURRENT.try_with(|current| current.replace(token)).ok().flatten();
        TaskFrame {
            previous,
            _config: ScopeGuard::enter(config.clone()),
        }
    }
}

impl Drop for TaskFrame {
    fn drop(&mut self) {
        let previous = self.previous.take();
        let _ = CURRENT.try_with(|current| current.set(previous));
    }
}

/// Model checks of the bookkeeping under every interleaving loom finds:
/// `RUSTFLAGS="--cfg loom" cargo test --release --lib loom`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    /// Two tasks end the run at once while a third looks: the leftmost event
    /// always wins, and the looker never sees a task left of it cancelled.
    #[test]
    fn loom_concurrent_events_keep_the_leftmost() {
        loom::model(|| {
            let run = Shortcircuit::new(true, None);
            let (a, b) = (Arc::clone(&run), Arc::clone(&run));
            let first = loom::thread::spawn(move || a.record_event(5));
            let second = loom::thread::spawn(move || b.record_event(3));
            // A task at position 2, left of both events, is never cancelled.
            assert!(!run.is_past(2));
            first.join().unwrap();
            second.join().unwrap();
            assert!(run.is_past(4) && !run.is_past(3));
            assert!(run.has_event() && !run.is_aborted());
        });
    }

    /// An abort (a failed merge) racing an event: after the joins, the run is
    /// aborted and everything is cancelled.
    #[test]
    fn loom_abort_racing_an_event_cancels_everything() {
        loom::model(|| {
            let run = Shortcircuit::new(true, None);
            let (a, b) = (Arc::clone(&run), Arc::clone(&run));
            let event = loom::thread::spawn(move || a.record_event(7));
            let abort = loom::thread::spawn(move || b.abort());
            event.join().unwrap();
            abort.join().unwrap();
            assert!(run.is_aborted());
            let horizon = run.horizon().load(Ordering::Relaxed);
            assert!(run.is_past(FIRST_POSITION), "horizon {horizon}");
        });
    }

    /// Any order: whichever of two events comes first, all tasks stop.
    #[test]
    fn loom_any_order_events_stop_all() {
        loom::model(|| {
            let run = Shortcircuit::new(false, None);
            let (a, b) = (Arc::clone(&run), Arc::clone(&run));
            let first = loom::thread::spawn(move || a.record_event(9));
            let second = loom::thread::spawn(move || b.record_event(2));
            first.join().unwrap();
            second.join().unwrap();
            assert!(run.is_past(FIRST_POSITION));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_event_cancels_only_the_right() {
        let run = Shortcircuit::new(true, None);
        assert!(!run.has_event());
        run.record_event(10);
        run.record_event(20);
        assert!(!run.is_past(5) && !run.is_past(10) && run.is_past(11));
        run.record_event(7);
        assert!(run.is_past(8) && !run.is_past(7));
        assert!(!run.is_aborted());
    }

    #[test]
    fn any_order_event_cancels_everything() {
        let run = Shortcircuit::new(false, None);
        run.record_event(10);
        assert!(run.is_past(FIRST_POSITION));
    }

    #[test]
    fn cancellation_reaches_nested_runs() {
        let outer = Shortcircuit::new(true, None);
        let inner = Shortcircuit::new(true, Some(Token::new(Arc::clone(&outer), 50)));
        let task = Token::new(Arc::clone(&inner), FIRST_POSITION);
        assert!(!task.is_cancelled() && !inner.abort_if_parent_cancelled());
        outer.record_event(3);
        assert!(task.is_cancelled());
        assert!(inner.abort_if_parent_cancelled() && inner.is_aborted());
    }

    #[test]
    fn frame_sets_and_restores_the_current_task() {
        assert!(!is_cancelled() && current_token().is_none());
        let run = Shortcircuit::new(true, None);
        {
            let _frame = TaskFrame::enter(Token::new(Arc::clone(&run), 9), &Config::default().with_workers(3));
            assert!(!is_cancelled());
            assert_eq!(Config::current().workers(), 3);
            run.record_event(2);
            assert!(is_cancelled());
        }
        assert!(!is_cancelled() && current_token().is_none());
    }
}
