//! What a durable run asks of the drivers that build the fixed tree: where
//! to start (the leaves saved, and their stack), and to hear of each longer
//! prefix completed, so that it can save one now and then.

use std::time::Duration;

use super::tree::Stack;
use crate::error::Error;

/// How much of the input a prefix holds: whole leaves, and their items.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Done {
    pub(crate) leaves: u64,
    pub(crate) items: u64,
}

/// A durable run's view of its completed prefix.
pub(crate) trait Prefix<A>: Send {
    /// Where the run starts: the prefix saved by an earlier run (or none),
    /// and its stack. Asked once.
    fn start(&mut self) -> (Done, Stack<A>);

    /// The prefix `done` is complete, its subtrees' roots on `stack`: save
    /// it if the interval says so.
    fn completed(&mut self, done: Done, stack: &Stack<A>);

    /// The run is about to end without an answer (a stop, or a panic right
    /// of `done`): save `done` now, unless it is saved already.
    fn keep(&mut self, done: Done, stack: &Stack<A>);

    /// How long one block of leaves (the stretch between two chances to
    /// save) may take, at most, so that the loss after a kill stays bounded.
    fn block_time(&self) -> Duration;

    /// The run ended with `outcome`: save how (its answer, or the prefix of
    /// a stop), and say what the run returns.
    #[cfg_attr(not(any(feature = "durable", feature = "mpi")), allow(dead_code))]
    fn conclude(&mut self, outcome: Result<A, Error>) -> Result<A, Error>;
}

/// A short borrow of a durable run's prefix, for one call (a plain
/// `as_deref_mut` would borrow it for as long as the original).
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
pub(crate) fn reborrow<'x, A>(prefix: &'x mut Option<&mut dyn Prefix<A>>) -> Option<&'x mut dyn Prefix<A>> {
    match prefix {
        Some(prefix) => Some(&mut **prefix),
        None => None,
    }
}
