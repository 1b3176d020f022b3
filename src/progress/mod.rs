//! Progress of top-level runs: counted by the workers, who publish when a
//! task ends or when asked ([`tally`]), watched by the thread that started
//! the run ([`Monitor`]), shown as a bar on a terminal ([`bar`]) and told to
//! a [`ProgressSink`].
//!
//! The thread that starts a run has nothing else to do while it waits, so it
//! is the one that draws: no extra thread, and the workers only add to a
//! counter now and then.

mod bar;
mod nested;
mod sink;
mod tally;

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

pub(crate) use bar::above_bars;
pub(crate) use nested::ChildGuard;
pub(crate) use sink::SharedSink;
pub use sink::{Outcome, ProgressSink};
pub(crate) use tally::{Publisher, Tally};

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::config::Config;
use crate::error::{Error, Panic};

/// A run shows a bar only once it has lasted this long: thousands of quick
/// runs never flash one.
const BAR_DELAY: Duration = Duration::from_millis(400);
/// How often the bar and the sink are updated.
const REFRESH: Duration = Duration::from_millis(100);

/// Watches one top-level run on the thread that started it.
pub(crate) struct Monitor {
    description: String,
    total: Option<u64>,
    sink: Option<SharedSink>,
    draw_bar: bool,
    /// The bar, once shown; dropping it clears it, also when the run unwinds.
    bar: Option<bar::Bar>,
    started: Instant,
    last_refresh: Instant,
    /// The sink's panic (it is user code): the run fails with it, and the
    /// sink is not called again.
    failure: Option<Panic>,
    /// Items done before the run started (a resumed durable run's): counted
    /// in the bar, not in its rate.
    before: u64,
}

impl Monitor {
    /// A monitor for a run about to start here, or `None` when nobody would
    /// watch it: bars off or stderr not a terminal, and no sink; or the run
    /// is nested in a task (nested runs draw no bar of their own).
    pub(crate) fn for_run(config: &Config, description: &str, total: Option<usize>) -> Option<Monitor> {
        if !Monitor::wanted(config) {
            return None;
        }
        let draw_bar = config.draws_bars();
        let sink = config.progress_sink_shared();
        let total = total.map(|n| n as u64);
        let now = Instant::now();
        let mut monitor = Monitor {
            description: description.to_owned(),
            total,
            sink,
            draw_bar,
            bar: None,
            started: now,
            last_refresh: now,
            failure: None,
            before: 0,
        };
        monitor.tell_sink(|sink| sink.start(description, total));
        Some(monitor)
    }

    /// Tell the sink something, if there is one: a panic there is kept as
    /// the run's failure (see [`failed`](Self::failed)) and the sink is not
    /// called again, so that it never escapes from the run or stops the
    /// display.
    fn tell_sink(&mut self, tell: impl FnOnce(&dyn ProgressSink)) {
        let Some(sink) = &self.sink else { return };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| tell(&*sink.0))) {
            log::debug!("the progress sink panicked: the run fails");
            self.sink = None;
            self.failure.get_or_insert(Panic::new(None, payload));
        }
    }

    /// Whether the sink panicked: the run must stop, and fail with that
    /// panic ([`finish`](Self::finish) returns it).
    pub(crate) fn failed(&self) -> bool {
        self.failure.is_some()
    }

    /// The sink's panic, taken out (rank 0 of an MPI run fails every rank
    /// with it).
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) fn take_failure(&mut self) -> Option<Panic> {
        self.failure.take()
    }

    /// Whether a run started here under `config` would be watched, that is
    /// whether [`for_run`](Self::for_run) would return a monitor: a
    /// top-level run, with bars drawable or a sink.
    pub(crate) fn wanted(config: &Config) -> bool {
        !crate::pool::on_our_worker() && (config.has_progress_sink() || config.draws_bars())
    }

    /// The run resumes after `done` items done by earlier runs: the bar
    /// starts there, and its rate and time left count this run's items.
    pub(crate) fn resumes_after(&mut self, done: u64) {
        self.before = done;
    }

    /// Update the bar and the sink if it is time to.
    pub(crate) fn tick(&mut self, tally: &Tally) {
        let now = Instant::now();
        if now - self.last_refresh < REFRESH {
            return;
        }
        self.last_refresh = now;
        let done = tally.done();
        if self.draw_bar && self.bar.is_none() && now - self.started >= BAR_DELAY {
            self.bar = bar::show(&self.description, self.total, done, now - self.started, self.before);
        }
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            nested::draw_children(now);
        }
        self.tell_sink(|sink| sink.update(done));
        // Fresh counts for the next refresh, asked of the tasks only when
        // someone will look: a run whose bar is not due yet and that no
        // sink watches goes on exactly as an unwatched one.
        let bar_due = self.draw_bar && now + REFRESH - self.started >= BAR_DELAY;
        if self.bar.is_some() || bar_due || self.sink.is_some() {
            tally.refresh();
        }
    }

    /// Keep the display live until `finished` is signalled, or until the
    /// sink panics (the caller then stops the run).
    pub(crate) fn watch(&mut self, tally: &Tally, finished: &Finished) {
        while !finished.wait(REFRESH) {
            self.tick(tally);
            if self.failed() {
                return;
            }
        }
    }

    /// The run ended with `result`: clear the bar, tell the sink, and give
    /// the result the run returns: the sink's panic, if it panicked, in
    /// place of an answer (or of the cancellation it caused).
    pub(crate) fn finish<A>(
        self,
        tally: &Tally,
        result: Result<ControlFlow<A, A>, Error>,
    ) -> Result<ControlFlow<A, A>, Error> {
        let outcome = outcome_of(&result);
        match self.finish_as(tally, outcome) {
            Some(panic) if matches!(result, Ok(_) | Err(Error::Cancelled)) => Err(panic.into()),
            _ => result,
        }
    }

    /// The run ended as `outcome`: clear the bar, tell the sink; the sink's
    /// panic, if it panicked.
    pub(crate) fn finish_as(mut self, tally: &Tally, outcome: Outcome) -> Option<Panic> {
        drop(self.bar.take());
        self.tell_sink(|sink| sink.finish(tally.done(), outcome));
        self.failure
    }
}

/// How a run with `result` ended, for a sink.
pub(crate) fn outcome_of<A>(result: &Result<ControlFlow<A, A>, Error>) -> Outcome {
    match result {
        Ok(ControlFlow::Continue(_)) => Outcome::Completed,
        Ok(ControlFlow::Break(_)) => Outcome::Shortcircuited,
        Err(_) => Outcome::Failed,
    }
}

/// A child bar for a run nested in a task, when the config asks for one and
/// a top-level bar can show it.
pub(crate) fn child_for_run(config: &Config, description: &str, total: Option<usize>) -> Option<ChildGuard> {
    let wanted = config.draws_bars() && config.nested_progress_bars();
    let nested = crate::pool::on_our_worker();
    (wanted && nested).then(|| ChildGuard::register(description, total.map(|n| n as u64)))
}

/// Tells the watching thread that the work it waits for is done.
pub(crate) struct Finished {
    done: Mutex<bool>,
    signal: Condvar,
}

impl Finished {
    pub(crate) fn new() -> Finished {
        Finished {
            done: Mutex::new(false),
            signal: Condvar::new(),
        }
    }

    /// A guard that signals when dropped, also when the work unwinds, so
    /// the watcher can never wait forever.
    pub(crate) fn on_drop(&self) -> impl Drop + '_ {
        struct Signal<'f>(&'f Finished);
        impl Drop for Signal<'_> {
            fn drop(&mut self) {
                *self.0.done.lock() = true;
                self.0.signal.notify_all();
            }
        }
        Signal(self)
    }

    /// Ready the signal for new work.
    pub(crate) fn reset(&self) {
        *self.done.lock() = false;
    }

    /// Wait until the work is done.
    pub(crate) fn wait_done(&self) {
        let mut done = self.done.lock();
        while !*done {
            self.signal.wait(&mut done);
        }
    }

    /// Whether the work is done, without waiting.
    pub(crate) fn is_done(&self) -> bool {
        *self.done.lock()
    }

    /// Wait up to `timeout`; whether the work is done.
    fn wait(&self, timeout: Duration) -> bool {
        let mut done = self.done.lock();
        if !*done {
            self.signal.wait_for(&mut done, timeout);
        }
        *done
    }
}
