//! The atomics the crate's own bookkeeping uses: std's, or loom's when the
//! crate is built with `--cfg loom` to model-check that bookkeeping.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
