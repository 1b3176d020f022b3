//! The fixed tree of reproducible runs: leaves of `leaf_size` consecutive
//! items, each folded left to right from `empty_result`, joined by `merge`
//! in a tree that depends only on the number of leaves.
//!
//! **The binary-counter rule.** Leaves are pushed, in order, onto a stack of
//! `(height, accumulator)`; a leaf has height 0. After each push, while the
//! two entries on top have equal heights `h`, they are replaced by
//! `merge(lower, upper)` of height `h + 1`. When the leaves run out, the
//! stack is collapsed left to right: `merge(merge(merge(s0, s1), s2), …)`.
//! For 6 leaves:
//!
//! ```text
//!              collapse
//!             /        \
//!          m(0..4)      m(4..6)        the stack at the end: [h2, h1]
//!         /      \       /   \
//!     m(0..2)  m(2..4)  L4   L5
//!     /   \     /   \
//!    L0   L1   L2   L3
//! ```
//!
//! So the tree is a row of perfect binary trees, one per bit of the leaf
//! count, largest first, joined left to right. Any run of whole leaves that
//! starts at a multiple of its own power-of-two size is one perfect subtree:
//! drivers evaluate such blocks in parallel (two halves joined, recursively)
//! and push their roots, so every driver builds this same tree whatever its
//! blocks, workers or ranks.
//!
//! **Events.** The answer of a deterministic run is what evaluating this
//! tree on one worker gives, bottom-up and left to right (leaf 0, leaf 1,
//! their merge, leaf 2, …), stopping at the first `Break` or panic met in
//! that order. What lies left of the event stays on the stack; the event's
//! own piece (a broken accumulator, or the items a panicking leaf folded
//! before the panic) goes on top; the stack is then collapsed left to right.
//! A `Break` that the collapse finds wins over a panic, as it would in a
//! sequential run that meets it first; without one, the panic is the answer.

use std::ops::ControlFlow::{self, Break, Continue};

use super::run::{Part, Run};
use crate::error::{Error, Panic};
use crate::job::MapReduce;

/// The automatic leaf size aims at this many leaves.
pub(crate) const LEAVES_WANTED: usize = 1024;
/// The largest automatic leaf: big enough that leaves cost nothing next to
/// their items, small enough that a leaf of ordinary items (up to a
/// millisecond each) ends within seconds.
pub(crate) const LEAF_MAX: usize = 16_384;

/// The automatic leaf size for an input of `len` items:
/// `clamp(len / 1024, 1, 16384)`. A function of the length alone, never of
/// the workers or ranks.
pub(crate) fn auto_leaf_size(len: usize) -> usize {
    (len / LEAVES_WANTED).clamp(1, LEAF_MAX)
}

/// The leaf size of a run over `len` items: `configured`, or the automatic
/// one when it is 0.
pub(crate) fn leaf_size(len: usize, configured: usize) -> usize {
    if configured == 0 {
        auto_leaf_size(len)
    } else {
        configured
    }
}

/// What a run of whole leaves came to.
pub(crate) enum Node<A> {
    /// Every leaf was folded and merged, without an event.
    Done(A),
    /// An event ended it: `pieces` are the accumulators left of the event,
    /// in order (the broken one last after a `Break`), still to be collapsed
    /// after whatever lies left of this node.
    Ended { pieces: Vec<A>, event: Event },
    /// Cancelled: an event left of it decides the answer.
    Skipped,
}

/// What a `merge` in the tree came to: its flow, or the node of its event
/// (a panic; or `Skipped` when the run was aborted).
type Merged<A> = Result<ControlFlow<A, A>, Node<A>>;

/// What ended a node.
pub(crate) enum Event {
    Break,
    Panic(Panic),
}

impl<A> Node<A> {
    /// A leaf's node, from what folding it came to.
    pub(crate) fn of_leaf(part: Part<A>) -> Node<A> {
        match part {
            Part::Done(acc) => Node::Done(acc),
            Part::Broke(acc) => Node::Ended {
                pieces: vec![acc],
                event: Event::Break,
            },
            Part::Failed { panic, prefix } => Node::Ended {
                pieces: prefix.into_iter().collect(),
                event: Event::Panic(panic),
            },
            Part::Skipped => Node::Skipped,
        }
    }

    /// Whether an event ended this node.
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) fn has_ended(&self) -> bool {
        matches!(self, Node::Ended { .. })
    }
}

impl<T, J: MapReduce<T, C>, C: ?Sized> Run<'_, T, J, C> {
    /// Join the nodes of two adjacent perfect subtrees of equal height,
    /// `left` before `right`; `right_position` is the position of `right`'s
    /// first item.
    pub(crate) fn combine(&self, left: Node<J::Acc>, right: Node<J::Acc>, right_position: usize) -> Node<J::Acc> {
        match (left, right) {
            (ended @ Node::Ended { .. }, _) => ended,
            (Node::Skipped, ended @ Node::Ended { .. }) => ended,
            (Node::Skipped, _) | (Node::Done(_), Node::Skipped) => Node::Skipped,
            (Node::Done(l), Node::Ended { mut pieces, event }) => {
                pieces.insert(0, l);
                Node::Ended { pieces, event }
            }
            (Node::Done(l), Node::Done(r)) => match self.tree_merge(right_position, l, r) {
                Ok(Continue(acc)) => Node::Done(acc),
                Ok(Break(acc)) => Node::Ended {
                    pieces: vec![acc],
                    event: Event::Break,
                },
                Err(event) => event,
            },
        }
    }

    /// `merge` inside the tree, whose result starts right before the item at
    /// `right_position`: a `Break` there cancels what lies right of it; a
    /// panic is an event there (with nothing left of it in this node).
    fn tree_merge(&self, right_position: usize, left: J::Acc, right: J::Acc) -> Merged<J::Acc> {
        if self.state.is_aborted() {
            return Err(Node::Skipped);
        }
        match self.guarded(right_position, || self.job.merge(left, right)) {
            Ok(flow) => {
                if flow.is_break() {
                    self.state.record_event(right_position);
                }
                Ok(flow)
            }
            Err(payload) => {
                self.state.record_event(right_position);
                Err(Node::Ended {
                    pieces: Vec::new(),
                    event: Event::Panic(Panic::new(None, payload)),
                })
            }
        }
    }
}

/// The binary-counter stack of a run: the roots of the perfect subtrees
/// done so far, left to right, with their heights.
pub(crate) struct Stack<A> {
    entries: Vec<(u32, A)>,
    /// Set once an event ended the evaluation: what the stack collapses to.
    ended: Option<Event>,
}

impl<A> Stack<A> {
    pub(crate) fn new() -> Stack<A> {
        Stack {
            entries: Vec::new(),
            ended: None,
        }
    }

    /// The stack of a run resumed after its first `leaves` leaves, whose
    /// perfect subtrees' roots are `entries` (heights and accumulators, left
    /// to right); `None` unless their heights are the binary-counter stack
    /// of `leaves` leaves: the set bits of `leaves`, highest first.
    #[cfg_attr(not(feature = "durable"), allow(dead_code))]
    pub(crate) fn resumed(leaves: u64, entries: Vec<(u32, A)>) -> Option<Stack<A>> {
        let heights = (0..u64::BITS).rev().filter(|bit| leaves >> bit & 1 == 1);
        if !entries.iter().map(|(height, _)| *height).eq(heights) {
            return None;
        }
        Some(Stack { entries, ended: None })
    }

    /// The roots of the perfect subtrees done so far, left to right, with
    /// their heights: what a durable run saves.
    #[cfg_attr(not(feature = "durable"), allow(dead_code))]
    pub(crate) fn entries(&self) -> &[(u32, A)] {
        &self.entries
    }

    /// Whether an event ended the evaluation: nothing more is pushed.
    pub(crate) fn has_ended(&self) -> bool {
        self.ended.is_some()
    }

    /// Push the node of the next perfect subtree, of `height`, whose first
    /// item is at `position`. Returns whether the evaluation goes on.
    pub(crate) fn push<T, J, C>(&mut self, run: &Run<'_, T, J, C>, height: u32, node: Node<A>, position: usize) -> bool
    where
        J: MapReduce<T, C, Acc = A>,
        C: ?Sized,
    {
        if self.ended.is_some() {
            return false;
        }
        match node {
            Node::Done(acc) => self.entries.push((height, acc)),
            Node::Ended { pieces, event } => {
                self.entries.extend(pieces.into_iter().map(|acc| (height, acc)));
                self.ended = Some(event);
                return false;
            }
            // Only right of an event; the event itself ends the evaluation
            // where its node is pushed. (A whole run skipped: see `finish`.)
            Node::Skipped => return true,
        }
        while let [.., (lower, _), (upper, _)] = self.entries[..] {
            if lower != upper {
                break;
            }
            let (_, right) = self.entries.pop().expect("two entries");
            let (_, left) = self.entries.pop().expect("two entries");
            match run.tree_merge(position, left, right) {
                Ok(Continue(acc)) => self.entries.push((lower + 1, acc)),
                Ok(Break(acc)) => {
                    self.entries.push((lower + 1, acc));
                    self.ended = Some(Event::Break);
                    return false;
                }
                Err(Node::Ended { event, .. }) => {
                    self.ended = Some(event);
                    return false;
                }
                Err(_) => {
                    // The run was aborted: its answer is discarded.
                    self.ended = Some(Event::Break);
                    return false;
                }
            }
        }
        true
    }

    /// Collapse the stack left to right into the answer: when an event ended
    /// the evaluation, its `Break` or panic, unless a merge of what lies left
    /// of it finds a `Break` first.
    pub(crate) fn finish<T, J, C>(
        self,
        run: &Run<'_, T, J, C>,
        empty: impl FnOnce() -> Result<A, Error>,
    ) -> Result<ControlFlow<A, A>, Error>
    where
        J: MapReduce<T, C, Acc = A>,
        C: ?Sized,
    {
        let mut entries = self.entries.into_iter().map(|(_, acc)| acc);
        let collapsed = match entries.next() {
            None => None,
            Some(first) => {
                let mut acc = first;
                for next in entries {
                    match run.guarded(crate::cancel::FIRST_POSITION, || run.job.merge(acc, next)) {
                        Ok(Continue(merged)) => acc = merged,
                        // Found left of (or at) the event: the answer.
                        Ok(Break(merged)) => return run.settle(Ok(Break(merged))),
                        Err(payload) => return run.settle(Err(Panic::new(None, payload).into())),
                    }
                }
                Some(acc)
            }
        };
        let outcome = match (self.ended, collapsed) {
            (None, Some(acc)) => Ok(Continue(acc)),
            (None, None) => empty().map(Continue),
            (Some(Event::Break), Some(acc)) => Ok(Break(acc)),
            (Some(Event::Panic(panic)), _) => Err(panic.into()),
            // A `Break` always leaves its piece on the stack.
            (Some(Event::Break), None) => Err(Error::Cancelled),
        };
        run.settle(outcome)
    }
}
