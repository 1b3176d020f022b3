//! Watching a run's progress without drawing anything: for GUIs, notebooks
//! and services.

use std::fmt;
use std::sync::Arc;

/// How a run ended, as told to a [`ProgressSink`].
///
/// ```
/// use mapreduce::Outcome;
/// assert_ne!(Outcome::Completed, Outcome::Shortcircuited);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Every item was processed.
    Completed,
    /// A `Break` ended the run early.
    Shortcircuited,
    /// The run failed (a panic, a cancellation).
    Failed,
}

/// Observes the progress of top-level runs (runs not nested in a task).
/// All calls come from the thread that started the run, never from workers,
/// and cost the workers nothing: they only count.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use mapreduce::{jobs, par_map_reduce, Config, Outcome, ProgressSink};
///
/// #[derive(Default)]
/// struct Record(Mutex<Vec<String>>);
///
/// impl ProgressSink for Record {
///     fn start(&self, description: &str, total: Option<u64>) {
///         self.0.lock().unwrap().push(format!("start {description} {total:?}"));
///     }
///     fn finish(&self, done: u64, outcome: Outcome) {
///         self.0.lock().unwrap().push(format!("finish {done} {outcome:?}"));
///     }
/// }
///
/// let record = Arc::new(Record::default());
/// let job = jobs::described("Counting", jobs::count(|_: &u32, _: &()| true));
/// Config::current()
///     .with_progress_sink(record.clone())
///     .scope(|| par_map_reduce(0..100u32, &(), job))
///     .unwrap();
/// assert_eq!(*record.0.lock().unwrap(), ["start Counting Some(100)", "finish 100 Completed"]);
/// ```
pub trait ProgressSink: Send + Sync {
    /// A run started: the job's description, and the number of items when
    /// the input's length is known.
    fn start(&self, description: &str, total: Option<u64>) {
        let _ = (description, total);
    }

    /// Items done so far; called several times a second while the run lasts.
    fn update(&self, done: u64) {
        let _ = done;
    }

    /// The run ended, with `done` items processed.
    fn finish(&self, done: u64, outcome: Outcome) {
        let _ = (done, outcome);
    }
}

/// A shared sink inside a [`Config`](crate::Config): compared by identity.
#[derive(Clone)]
pub(crate) struct SharedSink(pub(crate) Arc<dyn ProgressSink>);

impl PartialEq for SharedSink {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SharedSink {}

impl fmt::Debug for SharedSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProgressSink")
    }
}
