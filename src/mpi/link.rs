//! The run's private line between ranks: a duplicate of the caller's
//! communicator, so the run's messages never meet the application's, and a
//! few verbs over it.
//!
//! # Waiting without a busy core, moving data at full speed
//!
//! MPI's blocking calls poll a core while they wait, and Open MPI's
//! non-blocking ones move data only while the rank is inside an MPI call
//! (`MPI_Test`, say). So every wait here that can last (for the other ranks
//! to arrive, for a busy rank 0 to take a message, for the answer) is a
//! non-blocking call tested by a [`Backoff`]: at once and again for a
//! short while (a partner that is already there answers within
//! microseconds), then between sleeps that grow to 2 ms (a rank that waits
//! for long costs next to no CPU). Data in bulk moves only once every rank
//! it concerns is known to be there, tested without pause
//! ([`wait_moving`]), so it moves as fast as the copies go:
//!
//! - a point-to-point message larger than [`SMALL`] goes as a synchronous
//!   header (its send completes when the receiver has taken it, waited for
//!   by a [`Backoff`]) and then the bytes;
//! - a broadcast sends a fixed-size header (the length and the first
//!   bytes), waited for by a [`Backoff`], and then the rest, if any: it is
//!   only used where every other rank is on its way to the same call (the
//!   answer, once every rank has said `Finished`).

use std::mem::ManuallyDrop;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ::mpi::attribute::CommAttribute;
use ::mpi::raw::AsRaw;

use ::mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use ::mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use ::mpi::request::{self, Request, Scope};
use ::mpi::topology::{AnyCommunicator, Communicator, SimpleCommunicator};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::wire;

/// The tag of a run's small messages (the communicator is the run's own).
const TAG: i32 = 0x6d72;
/// The tag of the header of a large message: its length in bytes.
const LARGE_TAG: i32 = 0x6d73;
/// The tag of the bytes of a large message, after its header.
const DATA_TAG: i32 = 0x6d74;

/// Messages up to this size go in one non-blocking send: Open MPI sends
/// them eagerly (its shared-memory eager limit is 4 KiB), so the send
/// completes without the receiver.
pub(crate) const SMALL: usize = 4096;

/// A broadcast's first part: the length (8 bytes) and the first bytes of
/// the message, enough for every message but answers and failures.
const HEADER: usize = 256;

/// A wait looks again at once (yielding its core) for this long after
/// something happened...
const SPIN_FOR: Duration = Duration::from_micros(100);
/// ... then sleeps, first this long...
const FIRST_POLL: Duration = Duration::from_micros(50);
/// ... backing off to this: the delay a cancellation or a request may wait
/// on a rank that is busy with nothing else.
const LAST_POLL: Duration = Duration::from_millis(2);

pub(crate) struct Link<'c> {
    comm: &'c SimpleCommunicator,
    pub(crate) rank: i32,
    pub(crate) size: i32,
}

impl<'c> Link<'c> {
    /// The private duplicate of `comm`: made by the first run on `comm`
    /// (collective: every rank calls it, once every rank is known to be
    /// there, since duplicating blocks) and kept on `comm` as an MPI
    /// attribute for the next runs, so that a run costs no duplication; MPI
    /// frees it with `comm`.
    ///
    /// Every run leaves it clean: rank 0 takes every message sent to it
    /// until each rank's `Finished`, which is that rank's last, and sends
    /// nothing after `Stop`, which each rank reads before it finishes.
    pub(crate) fn new<C: Communicator>(comm: &'c C) -> Link<'c> {
        if comm.get_attr::<Private>().is_none() {
            let private = Private(Rc::new(PrivateComm(ManuallyDrop::new(comm.duplicate()))));
            set_attr(comm, private);
        }
        let private = comm.get_attr::<Private>().expect("the private duplicate was just kept");
        let comm: &SimpleCommunicator = &private.0 .0;
        let (rank, size) = (comm.rank(), comm.size());
        Link { comm, rank, size }
    }

    /// Send `message` to rank `to`, waiting (without a busy core) until it
    /// has left.
    pub(crate) fn send<M: Serialize>(&self, to: i32, message: &M) {
        let bytes = wire::encode(message);
        let process = self.comm.process_at_rank(to);
        if bytes.len() <= SMALL {
            request::scope(|scope| wait(process.immediate_send_with_tag(scope, &bytes[..], TAG)));
            return;
        }
        // The header's send completes once the receiver has taken it; it
        // then receives the bytes at once, so both sides copy at full speed.
        let len = bytes.len() as u64;
        request::scope(|scope| wait(process.immediate_synchronous_send_with_tag(scope, &len, LARGE_TAG)));
        request::scope(|scope| wait_moving(process.immediate_send_with_tag(scope, &bytes[..], DATA_TAG)));
    }

    /// The next message from `from` (any rank if `None`), if one is there.
    pub(crate) fn try_receive<M: DeserializeOwned>(&self, from: Option<i32>) -> Option<(i32, M)> {
        let probed = match from {
            Some(rank) => self.comm.process_at_rank(rank).immediate_matched_probe(),
            None => self.comm.any_process().immediate_matched_probe(),
        }?;
        let source = probed.1.source_rank();
        let bytes = if probed.1.tag() == LARGE_TAG {
            let mut len = 0u64;
            probed.0.matched_receive_into(&mut len);
            let mut bytes = vec![0u8; len as usize];
            // The sender sends the bytes as soon as it sees the header taken.
            let process = self.comm.process_at_rank(source);
            request::scope(|scope| {
                wait_moving(process.immediate_receive_into_with_tag(scope, &mut bytes[..], DATA_TAG));
            });
            bytes
        } else {
            probed.matched_receive_vec::<u8>().0
        };
        Some((source, wire::decode(&bytes, source)))
    }

    /// The minimum over all ranks of each of `values` (collective).
    pub(crate) fn all_min(&self, values: &[u64]) -> Vec<u64> {
        all_min(self.comm, values)
    }

    /// `bytes` from rank `root` on every rank (see [`broadcast`]).
    pub(crate) fn broadcast(&self, root: i32, bytes: Vec<u8>) -> Vec<u8> {
        broadcast(self.comm, root, bytes)
    }

    /// Agree on a failure (collective): `None` if no rank had one, else the
    /// lowest rank that had one and its message, the same on every rank.
    pub(crate) fn agree_on_failure(&self, own: Option<String>) -> Option<(i32, String)> {
        let failed = if own.is_some() { self.rank as u64 } else { u64::MAX };
        let first = self.all_min(&[failed])[0];
        if first == u64::MAX {
            return None;
        }
        let first = first as i32;
        let told = self.broadcast(first, wire::encode(&own.unwrap_or_default()));
        Some((first, wire::decode(&told, first)))
    }
}

/// A communicator's private duplicate, kept on it as an MPI attribute.
#[derive(Clone)]
struct Private(Rc<PrivateComm>);

impl CommAttribute for Private {}

/// Freed with its communicator, unless MPI is finalizing (then MPI frees
/// it, and freeing it from an attribute callback is not allowed).
struct PrivateComm(ManuallyDrop<SimpleCommunicator>);

impl Drop for PrivateComm {
    fn drop(&mut self) {
        if !FINALIZING.load(Ordering::Relaxed) {
            // SAFETY: dropped once, here, and never used again.
            unsafe { ManuallyDrop::drop(&mut self.0) };
        }
    }
}

/// Set as MPI finalizes. `Relaxed`: written and read only by the thread
/// that talks MPI (attribute callbacks run inside its MPI calls).
static FINALIZING: AtomicBool = AtomicBool::new(false);
/// Whether [`Finalizing`] is on `MPI_COMM_SELF`. `Relaxed`: as above.
static WATCHING_FINALIZE: AtomicBool = AtomicBool::new(false);

/// On `MPI_COMM_SELF`, whose attributes MPI deletes first thing when it
/// finalizes: it marks that moment.
#[derive(Clone)]
struct Finalizing;

impl CommAttribute for Finalizing {}

impl Drop for Finalizing {
    fn drop(&mut self) {
        FINALIZING.store(true, Ordering::Relaxed);
    }
}

/// Keep `value` on `comm` (`set_attr` wants a `&mut` that a borrowed
/// communicator cannot give; the attribute belongs to the MPI object).
fn set_attr<C: Communicator, A: CommAttribute>(comm: &C, value: A) {
    if !WATCHING_FINALIZE.swap(true, Ordering::Relaxed) {
        SimpleCommunicator::self_comm().set_attr(Finalizing);
    }
    let key = A::get_key();
    // SAFETY: `comm` is a live communicator; the boxed value is what
    // `CommAttribute::comm_delete_attr_fn` (the key's delete callback)
    // takes back and drops, as in rsmpi's own `set_attr`.
    unsafe {
        ::mpi::ffi::MPI_Comm_set_attr(
            comm.as_raw(),
            key.as_raw(),
            Box::into_raw(Box::new(value)).cast::<std::ffi::c_void>(),
        );
    }
}

/// The minimum over all ranks of `comm` of each of `values` (collective),
/// waiting without a busy core.
pub(crate) fn all_min<C: Communicator>(comm: &C, values: &[u64]) -> Vec<u64> {
    let mut mins = vec![0; values.len()];
    request::scope(|scope| {
        let reduce = comm.immediate_all_reduce_into(scope, values, &mut mins[..], SystemOperation::min());
        wait(reduce);
    });
    mins
}

/// `bytes` from rank `root` on every rank of `comm` (collective; other
/// ranks pass anything, their argument is ignored). Beyond the first
/// [`HEADER`] bytes the copy blocks: call it with more only where every
/// rank is on its way here.
pub(crate) fn broadcast<C: Communicator>(comm: &C, root: i32, mut bytes: Vec<u8>) -> Vec<u8> {
    let process = comm.process_at_rank(root);
    let is_root = comm.rank() == root;
    let mut header = [0u8; HEADER];
    if is_root {
        let inline = bytes.len().min(HEADER - 8);
        header[..8].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
        header[8..8 + inline].copy_from_slice(&bytes[..inline]);
    }
    request::scope(|scope| wait(process.immediate_broadcast_into(scope, &mut header[..])));
    let len = u64::from_le_bytes(header[..8].try_into().expect("8 bytes of length")) as usize;
    let inline = len.min(HEADER - 8);
    if !is_root {
        bytes = vec![0u8; len];
        bytes[..inline].copy_from_slice(&header[8..8 + inline]);
    }
    if len > inline {
        // Every rank has the header, or is about to.
        request::scope(|scope| wait_moving(process.immediate_broadcast_into(scope, &mut bytes[inline..])));
    }
    bytes
}

/// Wait for `request` to complete, testing it as a [`Backoff`] says.
pub(crate) fn wait<'a, D: ?Sized, S: Scope<'a>>(mut request: Request<'a, D, S>) {
    let mut backoff = Backoff::new();
    loop {
        match request.test() {
            Ok(_) => return,
            Err(pending) => request = pending,
        }
        backoff.pause();
    }
}

/// Wait for `request`, a transfer whose partners are all there, testing it
/// without pause (yielding the core between tests): Open MPI moves a large
/// message's fragments only inside MPI calls on both sides, and MPI's
/// blocking calls poll without yielding, which on a loaded or
/// oversubscribed machine leaves the partner without a core.
pub(crate) fn wait_moving<'a, D: ?Sized, S: Scope<'a>>(mut request: Request<'a, D, S>) {
    loop {
        match request.test() {
            Ok(_) => return,
            Err(pending) => request = pending,
        }
        std::thread::yield_now();
    }
}

/// How long to wait before looking again for something another rank does:
/// at once for a short while after something happened (a partner that is
/// there answers within microseconds), then sleeps that grow, so that a
/// waiting rank costs next to no CPU and the workers on its cores keep them.
pub(crate) struct Backoff {
    /// When something last happened.
    since: Instant,
    /// The next sleep, once looking at once has gone on for [`SPIN_FOR`].
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff {
            since: Instant::now(),
            next: FIRST_POLL,
        }
    }

    /// Something happened: look again at once for a while.
    pub(crate) fn reset(&mut self) {
        *self = Backoff::new();
    }

    /// `None`: look again at once (after yielding the core); else how long
    /// to wait before looking again (and wait longer next time).
    pub(crate) fn next_wait(&mut self) -> Option<Duration> {
        if self.since.elapsed() < SPIN_FOR {
            return None;
        }
        Some(self.next_sleep())
    }

    /// The next sleep, skipping the looks at once (and sleep longer next
    /// time).
    pub(crate) fn next_sleep(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(LAST_POLL);
        wait
    }

    /// Wait as [`next_wait`](Self::next_wait) says.
    pub(crate) fn pause(&mut self) {
        match self.next_wait() {
            None => std::thread::yield_now(),
            Some(wait) => std::thread::sleep(wait),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_looks_at_once_then_sleeps_up_to_its_cap_and_resets() {
        let mut backoff = Backoff::new();
        assert_eq!(backoff.next_wait(), None, "a partner that is there answers at once");
        std::thread::sleep(SPIN_FOR);
        let waits: Vec<_> = (0..10).map(|_| backoff.next_wait().unwrap()).collect();
        assert_eq!(waits[0], FIRST_POLL);
        assert!(waits.windows(2).all(|pair| pair[0] <= pair[1]));
        assert_eq!(*waits.last().unwrap(), LAST_POLL);
        backoff.reset();
        assert_eq!(backoff.next_wait(), None);
    }
}
