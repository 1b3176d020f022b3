//! The run's private line between ranks: a duplicate of the caller's
//! communicator, so the run's messages never meet the application's, and a
//! few verbs over it.
//!
//! Point-to-point messages are byte strings sent with blocking sends. Only
//! ranks other than 0 send large ones (block accumulators), and rank 0 keeps
//! receiving until each of them says `Finished`, so a large send always
//! finds its receiver; rank 0 sends only small messages point to point, and
//! the answer, which may be large, goes out in a collective broadcast once
//! every rank has stopped.
//!
//! MPI's blocking calls poll a core while they wait. Every wait here that
//! can last (for the other ranks to arrive, for the answer) is a
//! non-blocking call tested between sleeps instead.

use std::time::Duration;

use ::mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use ::mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use ::mpi::request::{self, Request, Scope};
use ::mpi::topology::{Communicator, SimpleCommunicator};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::wire;

/// The tag of every message of a run (the communicator is the run's own).
const TAG: i32 = 0x6d72;

/// Waiting for a message starts by looking again after this long...
const FIRST_POLL: Duration = Duration::from_micros(50);
/// ... and backs off to looking this often: the delay a cancellation or a
/// request may wait on a rank that is busy with nothing else.
const LAST_POLL: Duration = Duration::from_millis(2);

pub(crate) struct Link {
    comm: SimpleCommunicator,
    pub(crate) rank: i32,
    pub(crate) size: i32,
}

impl Link {
    /// A private duplicate of `comm` (collective: every rank calls it).
    pub(crate) fn new<C: Communicator>(comm: &C) -> Link {
        // Wait for every rank without a busy core; then duplicating (which
        // blocks) is quick.
        wait(comm.immediate_barrier());
        let comm = comm.duplicate();
        let (rank, size) = (comm.rank(), comm.size());
        Link { comm, rank, size }
    }

    /// Send `message` to rank `to`, waiting (without a busy core) until it
    /// has left.
    pub(crate) fn send<M: Serialize>(&self, to: i32, message: &M) {
        let bytes = wire::encode(message);
        let process = self.comm.process_at_rank(to);
        request::scope(|scope| wait(process.immediate_send_with_tag(scope, &bytes[..], TAG)));
    }

    /// The next message from `from` (any rank if `None`), if one is there.
    pub(crate) fn try_receive<M: DeserializeOwned>(&self, from: Option<i32>) -> Option<(i32, M)> {
        let probed = match from {
            Some(rank) => self.comm.process_at_rank(rank).immediate_matched_probe_with_tag(TAG),
            None => self.comm.any_process().immediate_matched_probe_with_tag(TAG),
        }?;
        let (bytes, status) = probed.matched_receive_vec::<u8>();
        let source = status.source_rank();
        Some((source, wire::decode(&bytes, source)))
    }

    /// The minimum over all ranks of each of `values` (collective).
    pub(crate) fn all_min(&self, values: &[u64]) -> Vec<u64> {
        let mut mins = vec![0; values.len()];
        request::scope(|scope| {
            let reduce = self
                .comm
                .immediate_all_reduce_into(scope, values, &mut mins[..], SystemOperation::min());
            wait(reduce);
        });
        mins
    }

    /// `bytes` from rank `root` on every rank (collective; other ranks pass
    /// anything, their argument is ignored).
    pub(crate) fn broadcast(&self, root: i32, bytes: Vec<u8>) -> Vec<u8> {
        let process = self.comm.process_at_rank(root);
        let mut len = bytes.len() as u64;
        request::scope(|scope| wait(process.immediate_broadcast_into(scope, &mut len)));
        let mut buffer = if self.rank == root {
            bytes
        } else {
            vec![0; len as usize]
        };
        request::scope(|scope| wait(process.immediate_broadcast_into(scope, &mut buffer[..])));
        buffer
    }
}

/// Wait for `request` to complete, testing it between sleeps.
fn wait<'a, D: ?Sized, S: Scope<'a>>(mut request: Request<'a, D, S>) {
    let mut backoff = Backoff::new();
    loop {
        match request.test() {
            Ok(_) => return,
            Err(pending) => request = pending,
        }
        std::thread::sleep(backoff.next_wait());
    }
}

/// Sleeps between looks for messages, short after activity and longer when
/// nothing happens: a waiting rank costs next to no CPU, so the workers on
/// its cores keep them.
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff { next: FIRST_POLL }
    }

    /// Something happened: look again soon.
    pub(crate) fn reset(&mut self) {
        self.next = FIRST_POLL;
    }

    /// How long to wait before looking again (and wait longer next time).
    pub(crate) fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(LAST_POLL);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_resets() {
        let mut backoff = Backoff::new();
        let waits: Vec<_> = (0..10).map(|_| backoff.next_wait()).collect();
        assert_eq!(waits[0], FIRST_POLL);
        assert!(waits.windows(2).all(|pair| pair[0] <= pair[1]));
        assert_eq!(*waits.last().unwrap(), LAST_POLL);
        backoff.reset();
        assert_eq!(backoff.next_wait(), FIRST_POLL);
    }
}
