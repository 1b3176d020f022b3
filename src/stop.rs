//! Stopping runs from outside: a [`StopHandle`] that another thread (or a
//! signal, for durable runs) pulls, and deadlines, which a timer thread
//! turns into the same stop. A stopped run cancels its items in flight
//! ([`is_cancelled`](crate::is_cancelled) turns true) and returns
//! [`Error::Stopped`](crate::Error::Stopped).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::cancel::Shortcircuit;
use crate::config::Config;

/// Asks runs to stop: pulled once, it stops every run that watches it, now
/// or later. `Clone + Send + Sync`; clones pull the same cord.
///
/// Give it to ordinary runs with [`Config::with_stop`] (they end with
/// [`Error::Stopped`](crate::Error::Stopped), nothing saved), or take a
/// durable run's from its `Checkpoint::stop_handle` (feature `durable`),
/// whose stop saves the completed prefix first.
///
/// ```
/// use mapreduce::{jobs, par_map_reduce, Config, Error, StopHandle};
///
/// let stop = StopHandle::new();
/// let cord = stop.clone();
/// let result = Config::current().with_stop(stop).scope(|| {
///     par_map_reduce(0..u64::MAX, &(), jobs::count(move |x: &u64, _: &()| {
///         if *x == 1000 {
///             cord.stop(); // from anywhere: another thread, a UI, a timer
///         }
///         false
///     }))
/// });
/// assert!(matches!(result, Err(Error::Stopped { .. })));
/// ```
#[derive(Clone, Default)]
pub struct StopHandle {
    cord: Arc<Cord>,
}

#[derive(Default)]
struct Cord {
    /// `Release` on stop, `Acquire` on reads: whoever sees the cord pulled
    /// also sees the runs registered before it was (the list below is
    /// locked anyway; the ordering is for [`StopHandle::is_stopped`] users).
    pulled: AtomicBool,
    /// The runs watching this cord.
    runs: Mutex<Vec<Weak<Shortcircuit>>>,
}

impl StopHandle {
    /// A cord not yet pulled.
    pub fn new() -> StopHandle {
        StopHandle::default()
    }

    /// Stop every run that watches this handle, now and from now on: their
    /// items in flight see [`is_cancelled`](crate::is_cancelled), and they
    /// return [`Error::Stopped`](crate::Error::Stopped) promptly.
    pub fn stop(&self) {
        self.cord.pulled.store(true, Ordering::Release);
        let runs = std::mem::take(&mut *self.cord.runs.lock());
        for run in runs.iter().filter_map(Weak::upgrade) {
            run.stop();
        }
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.cord.pulled.load(Ordering::Acquire)
    }

    /// Have `run` stopped when this cord is pulled (at once if it was).
    pub(crate) fn watch(&self, run: &Arc<Shortcircuit>) {
        {
            let mut runs = self.cord.runs.lock();
            runs.retain(|run| run.strong_count() > 0);
            runs.push(Arc::downgrade(run));
        }
        // Checked after registering: a `stop` racing this call either sees
        // the run in the list or is seen here (both take the lock, or this
        // load comes after the store it races with).
        if self.is_stopped() {
            run.stop();
        }
    }
}

impl PartialEq for StopHandle {
    /// Clones of one handle are equal.
    fn eq(&self, other: &StopHandle) -> bool {
        Arc::ptr_eq(&self.cord, &other.cord)
    }
}

impl Eq for StopHandle {}

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopHandle")
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

/// Have `run` stopped by the stop handle and the deadline of `config`, if
/// it has any.
pub(crate) fn watch(config: &Config, run: &Arc<Shortcircuit>) {
    for handle in config.stop_handles() {
        handle.watch(run);
    }
    if let Some(deadline) = config.deadline() {
        Timer::global().stop_at(deadline, run);
    }
}

/// For a run without a shortcircuit state of its own (a sequential one): a
/// state that the stop handles and the deadline of `config` stop, if it has
/// any.
pub(crate) fn watched_state(config: &Config) -> Option<Arc<Shortcircuit>> {
    if config.stop_handles().next().is_none() && config.deadline().is_none() {
        return None;
    }
    let state = Shortcircuit::new(true, None);
    watch(config, &state);
    Some(state)
}

/// The thread that stops runs at their deadlines: one for the process,
/// started by the first run that has a deadline, asleep until the earliest.
struct Timer {
    due: Mutex<Vec<(Instant, Weak<Shortcircuit>)>>,
    changed: Condvar,
}

impl Timer {
    fn global() -> &'static Timer {
        static TIMER: std::sync::OnceLock<&'static Timer> = std::sync::OnceLock::new();
        TIMER.get_or_init(|| {
            let timer: &'static Timer = Box::leak(Box::new(Timer {
                due: Mutex::new(Vec::new()),
                changed: Condvar::new(),
            }));
            // If the thread cannot start, deadlines are checked by the runs
            // as they start only (see `stop_at`), and the failure is logged.
            if let Err(err) = std::thread::Builder::new()
                .name("mapreduce-deadlines".into())
                .spawn(move || timer.serve())
            {
                log::warn!("could not start the deadline thread ({err}): deadlines are checked when runs start only");
            }
            timer
        })
    }

    fn stop_at(&self, deadline: Instant, run: &Arc<Shortcircuit>) {
        if deadline <= Instant::now() {
            run.stop();
            return;
        }
        self.due.lock().push((deadline, Arc::downgrade(run)));
        self.changed.notify_one();
    }

    fn serve(&self) {
        let mut due = self.due.lock();
        loop {
            let now = Instant::now();
            due.retain(|(deadline, run)| match run.upgrade() {
                Some(run) if *deadline <= now => {
                    run.stop();
                    false
                }
                Some(_) => true,
                None => false,
            });
            match due.iter().map(|(deadline, _)| *deadline).min() {
                Some(next) => {
                    self.changed.wait_until(&mut due, next);
                }
                None => self.changed.wait(&mut due),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pulled_cord_stops_runs_watching_now_and_later() {
        let handle = StopHandle::new();
        let before = Shortcircuit::new(true, None);
        handle.watch(&before);
        assert!(!before.is_stopped());
        handle.clone().stop();
        assert!(before.is_stopped() && before.is_past(1));
        let after = Shortcircuit::new(true, None);
        handle.watch(&after);
        assert!(after.is_stopped());
        assert!(handle.is_stopped());
        assert_eq!(handle, handle.clone());
        assert_ne!(handle, StopHandle::new());
    }

    #[test]
    fn deadlines_stop_their_runs_and_only_theirs() {
        let soon = Shortcircuit::new(true, None);
        let late = Shortcircuit::new(true, None);
        let timer = Timer::global();
        timer.stop_at(Instant::now() + std::time::Duration::from_millis(20), &soon);
        timer.stop_at(Instant::now() + std::time::Duration::from_secs(3600), &late);
        let waited = Instant::now();
        while !soon.is_stopped() {
            assert!(waited.elapsed().as_secs() < 30, "the deadline never fired");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!late.is_stopped());
        let past = Shortcircuit::new(true, None);
        timer.stop_at(Instant::now(), &past);
        assert!(past.is_stopped());
    }
}
