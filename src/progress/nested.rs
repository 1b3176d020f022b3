//! Child bars for nested runs, on request: a nested run cannot draw (its
//! thread is a worker), so it registers here and the top-level run's
//! monitor draws it under its own bar.

use std::sync::{Arc, LazyLock};
use std::time::Instant;

use parking_lot::Mutex;

use super::{bar, Tally, BAR_DELAY, REFRESH};

/// A nested run that asked for a bar.
pub(crate) struct Child {
    description: String,
    total: Option<u64>,
    tally: Tally,
    started: Instant,
    /// The bar, once shown; `Err(())` once the run has ended (no bar may be
    /// shown after that).
    bar: Mutex<Result<Option<bar::Bar>, ()>>,
}

/// Nested runs with bars, alive now.
static CHILDREN: LazyLock<Mutex<Vec<Arc<Child>>>> = LazyLock::new(|| Mutex::new(Vec::new()));

/// Registers a nested run for a child bar until dropped; then its bar goes.
pub(crate) struct ChildGuard(Arc<Child>);

impl ChildGuard {
    pub(crate) fn register(description: &str, total: Option<u64>) -> ChildGuard {
        let child = Arc::new(Child {
            description: format!(
                "  {}",
                if description.is_empty() {
                    "nested run"
                } else {
                    description
                }
            ),
            total,
            tally: Tally::new(),
            started: Instant::now(),
            bar: Mutex::new(Ok(None)),
        });
        CHILDREN.lock().push(Arc::clone(&child));
        ChildGuard(child)
    }

    pub(crate) fn tally(&self) -> &Tally {
        &self.0.tally
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        CHILDREN.lock().retain(|child| !Arc::ptr_eq(child, &self.0));
        // Dropping the bar clears it.
        drop(std::mem::replace(&mut *self.0.bar.lock(), Err(())));
    }
}

/// Show and update the bars of the nested runs that have lasted long enough.
pub(crate) fn draw_children(now: Instant) {
    let children: Vec<Arc<Child>> = CHILDREN.lock().clone();
    for child in children {
        let mut slot = child.bar.lock();
        let Ok(bar) = &mut *slot else { continue };
        let done = child.tally.done();
        // Fresh counts for the next refresh (only bars that are due look).
        if bar.is_some() || now + REFRESH - child.started >= BAR_DELAY {
            child.tally.refresh();
        }
        match bar {
            Some(bar) => bar.set_position(done),
            None if now - child.started >= BAR_DELAY => {
                *bar = bar::show(&child.description, child.total, done, now - child.started, 0);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(guard: &ChildGuard) -> bool {
        CHILDREN.lock().iter().any(|child| Arc::ptr_eq(child, &guard.0))
    }

    #[test]
    fn children_are_registered_while_they_run_and_never_drawn_after() {
        let guard = ChildGuard::register("Inner", Some(10));
        assert!(registered(&guard));
        assert_eq!(guard.0.description, "  Inner");
        let child = Arc::clone(&guard.0);
        drop(guard);
        assert!(!CHILDREN.lock().iter().any(|c| Arc::ptr_eq(c, &child)));
        // A monitor holding an old snapshot cannot show its bar any more.
        assert!(child.bar.lock().is_err());
    }
}
