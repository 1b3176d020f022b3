//! Batches folded one after another on the pool, each starting the moment
//! the one before it ends, on the thread that folded it: no wake-up between
//! them, and never two at once.
//!
//! A stream of fast items is folded by the calling thread too (in place,
//! see `Reader::fold_in_place`), so the pool must leave a worker's share to
//! it: its batches go through a lane, each folded by at most `workers - 1`
//! threads, and the next one waits in the lane rather than on the pool,
//! where an idle worker would take it and make the run one thread busier
//! than its workers.
//!
//! A runner whose lane runs dry spins a little for the next batch before it
//! leaves ([`WAIT_FOR_NEXT`]): a runner started afresh must be woken, which
//! the scheduler may put off for a whole time slice (milliseconds) while
//! the waking thread keeps its core. Only a little, and without system
//! calls: a runner that yielded its core in a loop for a millisecond slowed
//! the feeding thread (on a 2-core virtual machine, by 4×) until the lane
//! was dry more often than not.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How long a runner waits for the next batch of a lane run dry, unless the
/// lane is closed: about two chunks folded in place (`IN_PLACE_CHUNK_TIME`),
/// after which the feeding thread looks at the lane again.
const WAIT_FOR_NEXT: Duration = Duration::from_micros(50);

/// A batch's work, run once.
pub(super) type Job<'a> = Box<dyn FnOnce() + Send + 'a>;

/// Batches waiting their turn, and whether a thread is running them.
pub(super) struct Lane<'a> {
    state: Mutex<State<'a>>,
    /// How many jobs are queued: what a waiting runner polls, so as not to
    /// take the lock while the lane is dry. A hint only (the queue itself
    /// is read under the lock), so relaxed.
    queued: AtomicUsize,
    /// Whether the lane is closed, for the same eyes.
    closing: AtomicBool,
}

struct State<'a> {
    queued: VecDeque<Job<'a>>,
    running: bool,
    /// No batch will come: a runner leaves as soon as the lane is empty.
    closed: bool,
}

impl<'a> Lane<'a> {
    pub(super) fn new() -> Self {
        Lane {
            state: Mutex::new(State {
                queued: VecDeque::new(),
                running: false,
                closed: false,
            }),
            queued: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
        }
    }

    /// Queue `job` behind the lane's others. `true` when no thread runs
    /// them: the caller must start one, with [`Lane::run`].
    #[must_use]
    pub(super) fn push(&self, job: Job<'a>) -> bool {
        let mut state = self.state.lock();
        state.queued.push_back(job);
        self.queued.fetch_add(1, Ordering::Relaxed);
        // Whoever sees the lane idle claims it, under the lock: the runner
        // only gives it up under the same lock, after finding it empty, so
        // no job is ever queued behind a runner that has left.
        !std::mem::replace(&mut state.running, true)
    }

    /// Run the queued jobs, in order, until none is left. If one unwinds,
    /// the jobs behind it are dropped unrun (each job signals its end on
    /// drop, so nobody waits for them) and the lane is idle again.
    pub(super) fn run(&self) {
        let _unwinding = Unwinding(self);
        while let Some(job) = self.next() {
            job();
        }
    }

    /// Take the jobs not started yet out of the lane, to be run elsewhere
    /// (at the end of the input, by the thread that fed the lane, which
    /// would otherwise wait for them).
    pub(super) fn release(&self) -> Vec<Job<'a>> {
        let mut state = self.state.lock();
        self.queued.store(0, Ordering::Relaxed);
        state.queued.drain(..).collect()
    }

    /// No more jobs will be pushed (pushing still works): a runner leaves
    /// once the lane is empty, without waiting.
    pub(super) fn close(&self) {
        self.state.lock().closed = true;
        self.closing.store(true, Ordering::Relaxed);
    }

    /// The next job, waiting up to [`WAIT_FOR_NEXT`] for one (spinning on
    /// the `queued` hint, without system calls), or `None` after giving the
    /// lane up.
    fn next(&self) -> Option<Job<'a>> {
        let mut waiting_since = None;
        loop {
            let mut state = self.state.lock();
            if let Some(job) = state.queued.pop_front() {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                return Some(job);
            }
            let since = *waiting_since.get_or_insert_with(Instant::now);
            if state.closed || since.elapsed() >= WAIT_FOR_NEXT {
                state.running = false;
                return None;
            }
            drop(state);
            while self.queued.load(Ordering::Relaxed) == 0
                && !self.closing.load(Ordering::Relaxed)
                && since.elapsed() < WAIT_FOR_NEXT
            {
                std::hint::spin_loop();
            }
        }
    }
}

/// Gives the lane up if its runner unwinds (it gives it up itself, in
/// `Lane::next`, when it leaves normally).
struct Unwinding<'l, 'a>(&'l Lane<'a>);

impl Drop for Unwinding<'_, '_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let dropped = {
            let mut state = self.0.state.lock();
            state.running = false;
            self.0.queued.store(0, Ordering::Relaxed);
            std::mem::take(&mut state.queued)
        };
        // Outside the lock: dropping a job signals whoever waits for it.
        drop(dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_in_order_on_one_runner() {
        let order = Mutex::new(Vec::new());
        let order = &order;
        let lane = Lane::new();
        assert!(lane.push(Box::new(move || order.lock().push(1))));
        assert!(!lane.push(Box::new(move || order.lock().push(2))));
        assert!(!lane.push(Box::new(move || order.lock().push(3))));
        lane.run();
        assert_eq!(*order.lock(), [1, 2, 3]);
        // Idle again: the next job needs a runner.
        assert!(lane.push(Box::new(move || order.lock().push(4))));
        lane.run();
        assert_eq!(*order.lock(), [1, 2, 3, 4]);
    }

    #[test]
    fn no_job_is_left_behind_a_runner_that_leaves() {
        // A runner on the pool while this thread pushes: every job runs,
        // however the push and the runner's leaving interleave.
        let ran = AtomicUsize::new(0);
        let lane = Lane::new();
        rayon::scope(|scope| {
            for _ in 0..20_000 {
                let ran = &ran;
                if lane.push(Box::new(move || {
                    ran.fetch_add(1, Ordering::Relaxed);
                })) {
                    let lane = &lane;
                    scope.spawn(move |_| lane.run());
                }
            }
        });
        assert_eq!(ran.load(Ordering::Relaxed), 20_000);
    }

    #[test]
    fn a_job_that_unwinds_drops_the_rest_and_frees_the_lane() {
        struct Signals<'a>(&'a AtomicUsize);
        impl Drop for Signals<'_> {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let signalled = AtomicUsize::new(0);
        let lane = Lane::new();
        let first = Signals(&signalled);
        assert!(lane.push(Box::new(move || {
            let _first = first;
            panic!("a bug in a batch");
        })));
        let second = Signals(&signalled);
        assert!(!lane.push(Box::new(move || drop(second))));
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lane.run()));
        assert!(unwound.is_err());
        // Both signalled: the first as it unwound, the second dropped unrun.
        assert_eq!(signalled.load(Ordering::Relaxed), 2);
        assert!(lane.push(Box::new(|| {})), "the lane is free again");
        lane.run();
    }
}
