//! One rank's side of a run: the calling thread talks to the other ranks
//! while the rank's pool runs the blocks it was handed, one at a time, each
//! with the single-machine engine, in one run whose positions are the
//! items' indices, so an event anywhere cancels exactly what lies right of
//! it here too.
//!
//! Rank 0 is also the coordinator: it hands out blocks (to itself through
//! direct calls), joins their results in order, spreads the horizon and
//! draws the progress bar. Every rank asks for its next block as soon as it
//! starts one, so its workers never wait for a message.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use rayon::iter::plumbing::{Producer, ProducerCallback};
use rayon::Scope;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::coordinator::Coordinator;
use super::link::{Backoff, Link};
use super::logs;
use super::wire::{self, Down, Up, WireEvent, WireNode, WirePanic};
use crate::cancel::FIRST_POSITION;
use crate::engine::prefix::{reborrow, Prefix};
use crate::engine::tree::{Event, Node as TreeNode, Stack};
use crate::engine::{evaluate, Leaves, Run};
use crate::error::Error;
use crate::job::MapReduce;
use crate::pool;
use crate::progress::{Monitor, Tally};

/// How often a rank tells rank 0 how many items it has done.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// What one rank brings to the run.
pub(crate) struct Node<'r, 'a, T, J: MapReduce<T, C>, C: ?Sized> {
    pub(crate) run: &'r Run<'a, T, J, C>,
    pub(crate) link: &'r Link<'r>,
    /// The input's leaves, with the leaf size every rank agreed on.
    pub(crate) leaves: Leaves,
    pub(crate) workers: usize,
    /// Where this rank's items are counted when rank 0 draws progress.
    pub(crate) tally: Option<&'r Tally>,
    /// Rank 0's display, when someone watches; dropped if it panics.
    pub(crate) monitor: &'r mut Option<Monitor>,
    /// The first leaf to run: after a durable run's saved prefix.
    pub(crate) from: usize,
    /// Rank 0 of a durable run: the saved prefix's subtrees' roots, and who
    /// hears of the progress.
    pub(crate) resumed: Option<Stack<J::Acc>>,
    pub(crate) prefix: Option<&'r mut dyn Prefix<J::Acc>>,
}

impl<T, J, C> ProducerCallback<T> for Node<'_, '_, T, J, C>
where
    J: MapReduce<T, C>,
    J::Acc: Serialize + DeserializeOwned,
    C: Sync + ?Sized,
{
    /// Rank 0: the answer. Other ranks: `None`, the answer comes by broadcast.
    type Output = Option<Result<ControlFlow<J::Acc, J::Acc>, Error>>;

    fn callback<P: Producer<Item = T>>(self, producer: P) -> Self::Output {
        let parallel = self.run.config.parallel();
        let (sender, receiver) = mpsc::channel();
        let outcome = pool::in_place_scope(self.workers, parallel, |scope| {
            let mut blocks = Blocks {
                rest: Some(producer),
                offset: 0,
                leaves: self.leaves,
                queue: VecDeque::new(),
                running: false,
                ready: None,
                sender,
                receiver,
            };
            if self.link.rank == 0 {
                Some(self.coordinate(scope, &mut blocks))
            } else {
                self.serve(scope, &mut blocks);
                None
            }
        });
        // The pool was built before the run started (see `prepare`).
        outcome.unwrap_or_else(|err| unreachable!("the pool was built before the run: {err}"))
    }
}

impl<'r, 'a, T, J, C> Node<'r, 'a, T, J, C>
where
    J: MapReduce<T, C>,
    J::Acc: Serialize + DeserializeOwned,
    C: Sync + ?Sized,
{
    /// Rank 0: hand out blocks, run its own, join the results, until the
    /// answer is known and every other rank has stopped.
    fn coordinate<'s, P>(
        self,
        scope: &Scope<'s>,
        blocks: &mut Blocks<P, J::Acc>,
    ) -> Result<ControlFlow<J::Acc, J::Acc>, Error>
    where
        P: Producer<Item = T> + 's,
        'r: 's,
    {
        let (run, link) = (self.run, self.link);
        let mut prefix = self.prefix;
        let block_time = prefix.as_deref().map(|prefix| prefix.block_time());
        let stack = self.resumed.unwrap_or_else(Stack::new);
        let mut coordinator = Coordinator::resumed(self.leaves, link.size as usize, self.from, stack, block_time);
        let mut stopped_ranks = vec![false; link.size as usize];
        stopped_ranks[0] = true;
        // The horizon the other ranks were last told.
        let mut told = usize::MAX;
        let mut decided = false;
        let mut backoff = Backoff::new();
        loop {
            if !decided && blocks.queue.is_empty() {
                if let Some(block) = coordinator.assign(run, 0, self.workers) {
                    blocks.queue.push_back(block);
                }
            }
            if !decided {
                blocks.start_next(scope, run);
            }
            let mut busy = false;
            while let Some((from, message)) = link.try_receive::<Up>(None) {
                busy = true;
                match message {
                    Up::Request { workers } if !decided => {
                        let reply = match coordinator.assign(run, from as usize, workers as usize) {
                            Some((start, len)) => Down::Assign {
                                start: start as u64,
                                len: len as u64,
                            },
                            None => Down::NoMore,
                        };
                        link.send(from, &reply);
                    }
                    Up::Result { start, len, node } if !decided => {
                        coordinator.report(
                            run,
                            start as usize,
                            len as usize,
                            from_wire(node),
                            reborrow(&mut prefix),
                        );
                    }
                    Up::Stopped => run.state.stop(),
                    Up::Event { horizon } => run.state.lower_horizon(horizon as usize),
                    Up::Progress { items } => {
                        if let Some(tally) = self.tally {
                            tally.add(items);
                        }
                    }
                    Up::Finished => stopped_ranks[from as usize] = true,
                    // After the answer is known, requests and results no
                    // longer matter.
                    Up::Request { .. } | Up::Result { .. } => {}
                }
            }
            if let Some(finished) = blocks.take_finished() {
                if !decided {
                    coordinator.report(run, finished.start, finished.len, finished.node, reborrow(&mut prefix));
                }
                busy = true;
            }
            if !decided {
                let horizon = run.state.horizon_now();
                if horizon < told {
                    told = horizon;
                    for rank in 1..link.size {
                        link.send(
                            rank,
                            &Down::Horizon {
                                horizon: horizon as u64,
                            },
                        );
                    }
                }
                if coordinator.is_decided(run) {
                    decided = true;
                    if let (true, Some(prefix)) = (run.state.is_stopped(), reborrow(&mut prefix)) {
                        coordinator.keep(prefix);
                    }
                    for rank in 1..link.size {
                        link.send(rank, &Down::Stop);
                    }
                    // Our own block in flight, if any, cannot matter.
                    run.state.lower_horizon(0);
                    blocks.queue.clear();
                }
            }
            // Other ranks' log records, printed here if this is rank 0 of
            // the logging communicator (else this rank's are sent). Its
            // logger is the application's: a panic there fails the run, it
            // does not strand the others.
            if let Some(panic) = logs::print_arrived() {
                run.fail(panic);
            }
            if let (Some(monitor), Some(tally)) = (self.monitor.as_mut(), self.tally) {
                monitor.tick(tally);
                // The sink is user code too: its panic fails every rank.
                if let Some(panic) = monitor.take_failure() {
                    run.fail(panic);
                    *self.monitor = None;
                }
            }
            if decided && !blocks.running && stopped_ranks.iter().all(|&stopped| stopped) {
                return coordinator.finish(run);
            }
            if busy {
                backoff.reset();
            } else {
                blocks.wait(&mut backoff);
            }
        }
    }

    /// Ranks other than 0: ask for blocks, run them, report, until told to
    /// stop.
    fn serve<'s, P>(self, scope: &Scope<'s>, blocks: &mut Blocks<P, J::Acc>)
    where
        P: Producer<Item = T> + 's,
        'r: 's,
    {
        let (run, link) = (self.run, self.link);
        let (mut requested, mut no_more, mut stopped) = (false, false, false);
        // Whether rank 0 was told that someone stopped the run here.
        let mut told_stop = false;
        // The horizon rank 0 knows of, as far as this rank can tell.
        let mut told = usize::MAX;
        let mut counted = 0;
        let mut last_count = Instant::now();
        let mut backoff = Backoff::new();
        loop {
            if !stopped {
                blocks.start_next(scope, run);
                if blocks.queue.is_empty() && !requested && !no_more {
                    let workers = u32::try_from(self.workers).unwrap_or(u32::MAX);
                    link.send(0, &Up::Request { workers });
                    requested = true;
                }
            }
            let mut busy = false;
            while let Some((_, message)) = link.try_receive::<Down>(Some(0)) {
                busy = true;
                match message {
                    Down::Assign { start, len } => {
                        blocks.queue.push_back((start as usize, len as usize));
                        requested = false;
                    }
                    Down::NoMore => (no_more, requested) = (true, false),
                    Down::Horizon { horizon } => {
                        told = told.min(horizon as usize);
                        run.state.lower_horizon(horizon as usize);
                    }
                    Down::Stop => {
                        stopped = true;
                        run.state.lower_horizon(0);
                        blocks.queue.clear();
                    }
                }
            }
            if !told_stop && run.state.is_stopped() {
                // Before any result of a block the stop cut short.
                link.send(0, &Up::Stopped);
                told_stop = true;
            }
            if let Some(finished) = blocks.take_finished() {
                if !stopped {
                    // A panic that aborted this rank's run is the outcome of
                    // the block it happened in.
                    let node = match run.take_failure() {
                        Some(panic) => TreeNode::Ended {
                            pieces: Vec::new(),
                            event: Event::Panic(panic),
                        },
                        None => finished.node,
                    };
                    // The pool goes on with the next block while the result
                    // travels.
                    blocks.start_next(scope, run);
                    let message = Up::Result {
                        start: finished.start as u64,
                        len: finished.len as u64,
                        node: to_wire(node),
                    };
                    link.send(0, &message);
                }
                busy = true;
            }
            let horizon = run.state.horizon_now();
            if !told_stop && run.state.is_stopped() {
                // Read after the horizon: a horizon a stop lowered is sent
                // after the stop itself, so rank 0 knows it for a stop.
                link.send(0, &Up::Stopped);
                told_stop = true;
            }
            if !stopped && horizon < told {
                told = horizon;
                link.send(
                    0,
                    &Up::Event {
                        horizon: horizon as u64,
                    },
                );
            }
            let done = stopped && !blocks.running;
            if let Some(tally) = self.tally {
                if done || last_count.elapsed() >= PROGRESS_EVERY {
                    // Fresh counts from the tasks for the next report.
                    tally.refresh();
                    let items = tally.done() - counted;
                    if items > 0 {
                        link.send(0, &Up::Progress { items });
                        counted += items;
                    }
                    last_count = Instant::now();
                }
            }
            logs::pump();
            if done {
                link.send(0, &Up::Finished);
                return;
            }
            if busy {
                backoff.reset();
            } else {
                blocks.wait(&mut backoff);
            }
        }
    }
}

/// The blocks handed to this rank, and what of the input is left to run.
struct Blocks<P, A> {
    /// The input from `offset` on (blocks come in increasing order).
    rest: Option<P>,
    offset: usize,
    /// The input's leaves: blocks are whole ones.
    leaves: Leaves,
    /// Blocks handed to this rank, not started yet.
    queue: VecDeque<(usize, usize)>,
    running: bool,
    /// The running block's result, when a wait received it.
    ready: Option<Finished<A>>,
    sender: Sender<Finished<A>>,
    receiver: Receiver<Finished<A>>,
}

/// A block the pool has finished.
struct Finished<A> {
    start: usize,
    len: usize,
    node: TreeNode<A>,
}

impl<P: Producer, A: Send> Blocks<P, A> {
    /// Start the next block on the pool, unless one is running.
    fn start_next<'s, 'r, J, C>(&mut self, scope: &Scope<'s>, run: &'r Run<'_, P::Item, J, C>)
    where
        P: 's,
        A: 's,
        'r: 's,
        J: MapReduce<P::Item, C, Acc = A>,
        C: Sync + ?Sized,
    {
        if self.running {
            return;
        }
        let Some((start, len)) = self.queue.pop_front() else {
            return;
        };
        let rest = self
            .rest
            .take()
            .unwrap_or_else(|| unreachable!("the input is put back after each block"));
        let (_skipped, rest) = rest.split_at(start - self.offset);
        let (block, rest) = rest.split_at(len);
        self.rest = Some(rest);
        self.offset = start + len;
        self.running = true;
        let sender = self.sender.clone();
        let leaves = self.leaves;
        scope.spawn(move |_| {
            let position = FIRST_POSITION + start;
            let (first, count) = (start / leaves.size, len.div_ceil(leaves.size));
            // Item panics are caught per item; this catches the input's own
            // (a producer that panics while splitting).
            let node = catch_unwind(AssertUnwindSafe(|| evaluate(run, leaves, block, first, count)))
                .unwrap_or_else(|payload| TreeNode::of_leaf(run.settle_panic(position, None, payload, None)));
            // The receiver lives until the scope ends, which waits for us.
            let _ = sender.send(Finished { start, len, node });
        });
    }

    /// The running block, if it has finished.
    fn take_finished(&mut self) -> Option<Finished<A>> {
        if !self.running {
            return None;
        }
        let finished = self.ready.take().or_else(|| self.receiver.try_recv().ok());
        self.running = finished.is_none();
        finished
    }

    /// Nothing to do: wait as `backoff` says before looking for messages
    /// again. While a block runs, the wait ends as soon as it finishes,
    /// and never looks again at once: that would take a core from this
    /// rank's own workers.
    fn wait(&mut self, backoff: &mut Backoff) {
        if !self.running || self.ready.is_some() {
            backoff.pause();
            return;
        }
        match self.receiver.recv_timeout(backoff.next_sleep()) {
            Ok(finished) => self.ready = Some(finished),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => unreachable!("this side holds a sender"),
        }
    }
}

/// A block's node, ready to travel.
fn to_wire<A: Serialize>(node: TreeNode<A>) -> WireNode {
    let encoded = |acc: &A| wire::encode_acc(acc).map_err(WirePanic::without_item);
    match node {
        TreeNode::Done(acc) => encoded(&acc).map_or_else(WireNode::failed, WireNode::Done),
        TreeNode::Ended { pieces, event } => {
            let pieces: Result<Vec<_>, _> = pieces.iter().map(encoded).collect();
            match (pieces, event) {
                (Ok(pieces), Event::Break) => WireNode::Ended {
                    pieces,
                    event: WireEvent::Break,
                },
                (Ok(pieces), Event::Panic(panic)) => WireNode::Ended {
                    pieces,
                    event: WireEvent::Panic(WirePanic::of_panic(&panic)),
                },
                // A piece that does not encode is one rank 0 cannot merge:
                // the block fails with that.
                (Err(failure), _) => WireNode::failed(failure),
            }
        }
        TreeNode::Skipped => WireNode::Skipped,
    }
}

/// A block's node, arrived.
fn from_wire<A: DeserializeOwned>(node: WireNode) -> TreeNode<A> {
    let failed = |panic: WirePanic| TreeNode::Ended {
        pieces: Vec::new(),
        event: Event::Panic(panic.into_panic()),
    };
    match node {
        WireNode::Done(bytes) => {
            wire::decode_acc(&bytes).map_or_else(|m| failed(WirePanic::without_item(m)), TreeNode::Done)
        }
        WireNode::Ended { pieces, event } => {
            let pieces: Result<Vec<A>, String> = pieces.iter().map(|bytes| wire::decode_acc(bytes)).collect();
            match (pieces, event) {
                (Ok(pieces), WireEvent::Break) => TreeNode::Ended {
                    pieces,
                    event: Event::Break,
                },
                (Ok(pieces), WireEvent::Panic(panic)) => TreeNode::Ended {
                    pieces,
                    event: Event::Panic(panic.into_panic()),
                },
                (Err(message), _) => failed(WirePanic::without_item(message)),
            }
        }
        WireNode::Skipped => TreeNode::Skipped,
    }
}
