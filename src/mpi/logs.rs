//! PyPhi's LogThread across machines: ranks other than 0 (of the
//! communicator given to [`init_logging`](super::init_logging)) capture
//! their log records instead of printing them and send them to rank 0 over
//! a private duplicate of that communicator, whatever communicator the
//! runs use; rank 0 prints them with the sender's rank in the line.
//!
//! When records move:
//! - a rank sends what waits at every turn of its runs' loops (any run, on
//!   any communicator) and in [`flush`];
//! - rank 0 (of the logging communicator) takes what arrived at every turn
//!   of its runs' loops, prints it while it coordinates a run and as each
//!   of its runs ends, and in [`flush`], which waits for every rank's last
//!   record;
//! - records still waiting when MPI finalizes (no [`flush`] after them)
//!   are printed by their own rank, on its stderr, with a line that says so.
//!
//! Batches are small messages (at most [`BATCH_AT_MOST`] bytes), which MPI
//! delivers without the receiver taking part, so a sender never waits for
//! a rank 0 that is busy elsewhere. What waits is bounded in bytes
//! ([`KEEP_BYTES`]); beyond that the oldest records are dropped and
//! counted, and rank 0 prints the count in one line.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use ::mpi::attribute::CommAttribute;
use ::mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use ::mpi::request::{Request, StaticScope};
use ::mpi::topology::{AnyCommunicator, Communicator, SimpleCommunicator};
use log::{Level, Log, Metadata, Record};
use parking_lot::Mutex;

use super::link::{self, Backoff};
use super::wire::{self, WireLogs, WireRecord};
use crate::error::{Error, Panic};

/// Records waiting to be sent, in bytes of text, at most; beyond this the
/// oldest are dropped (and counted), so a chatty rank cannot exhaust
/// memory, and no message grows past what MPI can count.
pub(crate) const KEEP_BYTES: usize = 4 << 20;

/// One batch of records, encoded, at most: under Open MPI's shared-memory
/// eager limit (4 KiB), so that its send completes without rank 0.
const BATCH_AT_MOST: usize = 3 * 1024;

/// A record's text beyond this is cut (with a note), so that it fits in a
/// batch.
const TEXT_AT_MOST: usize = 2 * 1024;

/// Batches rank 0 holds unprinted, at most (12 MiB).
const RECEIVED_AT_MOST: usize = 4096;

/// The tag of batches on the logging communicator.
const LOG_TAG: i32 = 0x6d6c;

/// Batches sent in one turn, at most: a rank whose workers log without
/// pause still gets back to its run.
const BATCHES_PER_TURN: usize = 256;

static WAITING: Mutex<Waiting> = Mutex::new(Waiting {
    records: VecDeque::new(),
    bytes: 0,
    dropped: 0,
});

/// The line to rank 0 of the logging communicator, once [`install`]ed.
static CHANNEL: Mutex<Option<Channel>> = Mutex::new(None);

/// Whether rank 0 runs this crate's own line format, which prints a
/// forwarded record's origin where it prints the thread. `Relaxed`: set
/// once at setup, before any record is forwarded, by the thread that later
/// reads it.
static ORIGIN_IN_FORMAT: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Where the record being logged on this thread came from, while rank 0
    /// replays a forwarded one (`rank 2 mapreduce-1`).
    static ORIGIN: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records captured here and not sent yet.
#[derive(Default)]
struct Waiting {
    records: VecDeque<WireRecord>,
    /// Their size, as [`size_of_record`] counts it.
    bytes: usize,
    /// Records dropped since the last batch left.
    dropped: u64,
}

struct Channel {
    /// A duplicate of the communicator given to `init_logging`.
    comm: SimpleCommunicator,
    rank: i32,
    /// Rank 0: batches arrived and not printed yet, with their sender.
    received: Vec<(i32, WireLogs)>,
    /// Rank 0: last batches of a flush arrived and not waited for yet, by
    /// sender.
    lasts: Vec<u32>,
    /// Other ranks: the batch on its way, if its send has not completed.
    sending: Option<Sending>,
    /// Other ranks: the batch on its way is the last of a [`flush`].
    last_sent: bool,
}

// SAFETY: the channel holds MPI handles, which only the thread that talks
// MPI for the process uses: every use is inside `par_map_reduce`,
// `flush_logs` or MPI's own finalization, which MPI's threading level
// (`Funneled` or more) confines to that thread; the mutex orders them.
unsafe impl Send for Channel {}

/// A batch's send in flight, and the buffer it reads from.
struct Sending {
    request: Request<'static, [u8], StaticScope>,
    buffer: *mut [u8],
}

/// Rank 0 of `comm`: [`crate::init_logging`]. Other ranks: capture records
/// that pass the same `RUST_LOG` filter. Collective (every rank duplicates
/// `comm`); later calls change nothing.
pub(crate) fn install<C: Communicator>(comm: &C) {
    if CHANNEL.lock().is_some() {
        return;
    }
    // Every rank is there (waited for without a busy core); duplicating
    // blocks.
    link::all_min(comm, &[0]);
    let comm = comm.duplicate();
    let (rank, size) = (comm.rank(), comm.size() as usize);
    let builder = crate::logging::default_builder();
    if rank == 0 {
        if crate::logging::init_logging_with(builder) {
            ORIGIN_IN_FORMAT.store(true, Ordering::Relaxed);
        }
    } else {
        let filter = { builder }.build();
        let max_level = filter.filter();
        if log::set_boxed_logger(Box::new(Capture { filter })).is_ok() {
            log::set_max_level(max_level);
        }
    }
    *CHANNEL.lock() = Some(Channel {
        comm,
        rank,
        received: Vec::new(),
        lasts: vec![0; size],
        sending: None,
        last_sent: false,
    });
    // MPI deletes the attributes of `MPI_COMM_SELF` first thing when it
    // finalizes: what still waits is printed then.
    SimpleCommunicator::self_comm().set_attr(AtFinalize);
}

/// Send what waits (ranks other than 0) or take what arrived (rank 0),
/// without waiting: a turn of a run's loop.
pub(crate) fn pump() {
    if let Some(channel) = CHANNEL.lock().as_mut() {
        channel.pump();
    }
}

/// Rank 0 of the logging communicator: print what arrived, through this
/// process's logger; its panic (the logger is the application's) is
/// returned. Other ranks: send what waits, as [`pump`].
pub(crate) fn print_arrived() -> Option<Panic> {
    print(take_arrived())
}

/// Rank 0 of the logging communicator: the batches that have arrived.
/// Other ranks: none, after sending what waits.
fn take_arrived() -> Vec<(i32, WireLogs)> {
    match CHANNEL.lock().as_mut() {
        Some(channel) if channel.rank == 0 => {
            channel.receive();
            std::mem::take(&mut channel.received)
        }
        Some(channel) => {
            channel.send_waiting(false);
            Vec::new()
        }
        None => Vec::new(),
    }
}

/// Print `arrived` through this process's logger, catching its panic.
fn print(arrived: Vec<(i32, WireLogs)>) -> Option<Panic> {
    if arrived.is_empty() {
        return None;
    }
    catch_unwind(AssertUnwindSafe(|| {
        for (rank, batch) in arrived {
            replay(rank, batch);
        }
    }))
    .err()
    .map(|payload| Panic::new(None, payload))
}

/// Collective over the logging communicator: every rank sends what waits,
/// rank 0 prints all of it; a panic of rank 0's logger is every rank's
/// error. Without [`install`], nothing.
pub(crate) fn flush() -> Result<(), Error> {
    let Some(rank) = CHANNEL.lock().as_ref().map(|channel| channel.rank) else {
        return Ok(());
    };
    let mut backoff = Backoff::new();
    let failure = if rank == 0 {
        // Print batches as they come until every other rank's last one is
        // in (one may have come before, while a run of rank 0 ended).
        let mut failure = None;
        loop {
            let arrived = take_arrived();
            let all_in = CHANNEL.lock().as_mut().is_some_and(|channel| channel.take_lasts());
            if arrived.is_empty() && !all_in {
                backoff.pause();
                continue;
            }
            failure = failure.or(print(arrived));
            backoff.reset();
            if all_in {
                break failure;
            }
        }
    } else {
        while !CHANNEL
            .lock()
            .as_mut()
            .is_some_and(|channel| channel.send_waiting(true))
        {
            backoff.pause();
        }
        None
    };
    // Every rank has sent its last batch and is here: rank 0 says how it
    // went.
    let own = failure
        .as_ref()
        .map(|panic| crate::error::panic_message(panic.payload.as_ref()));
    let told = match CHANNEL.lock().as_ref() {
        Some(channel) => link::broadcast(&channel.comm, 0, wire::encode(&own)),
        None => unreachable!("the channel, once installed, stays"),
    };
    match (failure, wire::decode::<Option<String>>(&told, 0)) {
        (Some(panic), _) => Err(panic.into()),
        (None, Some(message)) => Err(wire::WirePanic::without_item(message).into_panic().into()),
        (None, None) => Ok(()),
    }
}

impl Channel {
    fn pump(&mut self) {
        if self.rank == 0 {
            self.receive();
        } else {
            self.send_waiting(false);
        }
    }

    /// Rank 0: take the batches that have arrived, up to a bound (while
    /// rank 0 serves in other ranks' runs, it prints only as they end; the
    /// rest wait in MPI, and then on their senders, bounded there).
    fn receive(&mut self) {
        while self.received.len() < RECEIVED_AT_MOST {
            let Some(probed) = self.comm.any_process().immediate_matched_probe_with_tag(LOG_TAG) else {
                break;
            };
            let (bytes, status) = probed.matched_receive_vec::<u8>();
            let from = status.source_rank();
            let batch: WireLogs = wire::decode(&bytes, from);
            if batch.last {
                self.lasts[from as usize] += 1;
            }
            self.received.push((from, batch));
        }
    }

    /// Rank 0: whether every other rank's last batch of a flush is in; if
    /// so, they are taken (the next flush waits for the next ones).
    fn take_lasts(&mut self) -> bool {
        let all_in = self.lasts.iter().skip(1).all(|&count| count > 0);
        if all_in {
            self.lasts.iter_mut().skip(1).for_each(|count| *count -= 1);
        }
        all_in
    }

    /// Other ranks: send what waits, a batch at a time, while sends complete
    /// at once; with `last`, end with a batch that says so. Whether
    /// everything (the last batch too, if asked) has left.
    fn send_waiting(&mut self, last: bool) -> bool {
        for _ in 0..BATCHES_PER_TURN {
            if !self.complete_sending() {
                return false;
            }
            if std::mem::take(&mut self.last_sent) {
                return true;
            }
            let batch = take_batch();
            let empty = batch.records.is_empty() && batch.dropped == 0;
            if empty && !last {
                return true;
            }
            self.last_sent = empty;
            self.start_sending(&WireLogs { last: empty, ..batch });
        }
        false
    }

    /// Whether no send is in flight (after testing the one that was).
    fn complete_sending(&mut self) -> bool {
        let Some(Sending { request, buffer }) = self.sending.take() else {
            return true;
        };
        match request.test() {
            Ok(_) => {
                // SAFETY: the buffer was leaked from a box for this send,
                // which has completed: nothing reads it any more.
                drop(unsafe { Box::from_raw(buffer) });
                true
            }
            Err(request) => {
                self.sending = Some(Sending { request, buffer });
                false
            }
        }
    }

    /// Start sending `batch` to rank 0 (no send may be in flight).
    fn start_sending(&mut self, batch: &WireLogs) {
        let buffer: *mut [u8] = Box::leak(wire::encode(batch).into_boxed_slice());
        // SAFETY: `buffer` comes from the box leaked just above; the send
        // reads it until it completes, and it is freed only then
        // (`complete_sending`).
        let bytes: &'static [u8] = unsafe { &*buffer };
        let request = self
            .comm
            .process_at_rank(0)
            .immediate_send_with_tag(StaticScope, bytes, LOG_TAG);
        self.sending = Some(Sending { request, buffer });
    }
}

/// The oldest waiting records that fit in a batch, with the count of
/// records dropped.
fn take_batch() -> WireLogs {
    let mut waiting = WAITING.lock();
    let mut records = Vec::new();
    // Room for the batch's own fields.
    let mut size = 16;
    while let Some(record) = waiting.records.front() {
        let record_size = size_of_record(record);
        if size + record_size > BATCH_AT_MOST && !records.is_empty() {
            break;
        }
        size += record_size;
        waiting.bytes -= record_size;
        records.extend(waiting.records.pop_front());
    }
    let dropped = std::mem::take(&mut waiting.dropped);
    WireLogs {
        records,
        dropped,
        last: false,
    }
}

/// A record's encoded size, at most (postcard: a varint of at most 2 bytes
/// before each string shorter than 16 KiB).
fn size_of_record(record: &WireRecord) -> usize {
    let strings = [
        Some(&record.target),
        record.module_path.as_ref(),
        record.file.as_ref(),
        Some(&record.thread),
        Some(&record.message),
    ];
    strings.iter().flatten().map(|text| text.len() + 3).sum::<usize>() + 8
}

/// `text`, cut to `at_most` bytes (on a character boundary) with a note.
fn cut(mut text: String, at_most: usize) -> String {
    if text.len() <= at_most {
        return text;
    }
    let total = text.len();
    let mut end = at_most - 40;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&format!(" [… cut, {total} bytes in all]"));
    text
}

/// The origin of the record being printed, when it came from another rank:
/// this crate's line format prints it in place of the thread's name.
pub(crate) fn origin() -> Option<String> {
    // `try_with`: a record logged from a thread-local destructor has none.
    ORIGIN.try_with(|origin| origin.borrow().clone()).unwrap_or(None)
}

/// A logger that keeps what passes its filter instead of printing it.
struct Capture {
    filter: env_logger::Logger,
}

impl Log for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if self.filter.matches(record) {
            capture(record);
        }
    }

    fn flush(&self) {}
}

/// Keep `record` for rank 0, within bounds.
fn capture(record: &Record<'_>) {
    let short = |text: &str| cut(text.to_owned(), 256);
    let thread = std::thread::current();
    let captured = WireRecord {
        level: record.level() as u8,
        target: short(record.target()),
        module_path: record.module_path().map(short),
        file: record.file().map(short),
        line: record.line(),
        thread: short(thread.name().unwrap_or("unnamed")),
        message: cut(record.args().to_string(), TEXT_AT_MOST),
    };
    let size = size_of_record(&captured);
    let mut waiting = WAITING.lock();
    while waiting.bytes + size > KEEP_BYTES {
        let Some(oldest) = waiting.records.pop_front() else {
            break;
        };
        waiting.bytes -= size_of_record(&oldest);
        waiting.dropped += 1;
    }
    waiting.bytes += size;
    waiting.records.push_back(captured);
}

/// Rank 0: log the batch `batch` from rank `rank` through this process's
/// logger, with the rank in the line, after a line that counts the records
/// the sender dropped, if any.
fn replay(rank: i32, batch: WireLogs) {
    if batch.dropped > 0 {
        let note = WireRecord {
            level: Level::Warn as u8,
            target: module_path!().to_owned(),
            module_path: Some(module_path!().to_owned()),
            file: None,
            line: None,
            thread: "mapreduce".to_owned(),
            message: format!(
                "{} log records of rank {rank} were dropped there: more than {} MiB of records waited to be sent",
                batch.dropped,
                KEEP_BYTES >> 20
            ),
        };
        replay_record(rank, note);
    }
    for record in batch.records {
        replay_record(rank, record);
    }
}

fn replay_record(rank: i32, record: WireRecord) {
    let level = match record.level {
        1 => Level::Error,
        2 => Level::Warn,
        3 => Level::Info,
        4 => Level::Debug,
        _ => Level::Trace,
    };
    let origin = format!("rank {rank} {}", record.thread);
    let in_format = ORIGIN_IN_FORMAT.load(Ordering::Relaxed);
    let message = &record.message;
    let prefixed = format_args!("[{origin}] {message}");
    let plain = format_args!("{message}");
    let built = Record::builder()
        .level(level)
        .target(&record.target)
        .module_path(record.module_path.as_deref())
        .file(record.file.as_deref())
        .line(record.line)
        .args(if in_format { plain } else { prefixed })
        .build();
    ORIGIN.with(|slot| *slot.borrow_mut() = Some(origin.clone()));
    // The slot is cleared even if the logger panics.
    let _clear = ClearOrigin;
    log::logger().log(&built);
}

struct ClearOrigin;

impl Drop for ClearOrigin {
    fn drop(&mut self) {
        let _ = ORIGIN.try_with(|slot| *slot.borrow_mut() = None);
    }
}

/// Deleted by MPI as it finalizes: records no [`flush`] carried are
/// printed then (rank 0: what arrived, through its logger; other ranks:
/// what waits, on their own stderr).
#[derive(Clone)]
struct AtFinalize;

impl CommAttribute for AtFinalize {}

impl Drop for AtFinalize {
    fn drop(&mut self) {
        // Nothing may unwind into MPI.
        let _ = catch_unwind(|| {
            let rank = CHANNEL.lock().as_ref().map_or(0, |channel| channel.rank);
            if rank == 0 {
                let _ = print_arrived();
                return;
            }
            let mut waiting = WAITING.lock();
            let records: Vec<_> = waiting.records.drain(..).collect();
            let dropped = std::mem::take(&mut waiting.dropped);
            waiting.bytes = 0;
            drop(waiting);
            if records.is_empty() && dropped == 0 {
                return;
            }
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(
                stderr,
                "[mapreduce rank {rank}] MPI finalized with {} log record(s) not sent to rank 0 \
                 (call mapreduce::mpi::flush_logs before the end); here they are{}:",
                records.len(),
                if dropped > 0 {
                    format!(", after {dropped} dropped")
                } else {
                    String::new()
                }
            );
            for record in records {
                let _ = writeln!(stderr, "[rank {rank} {}] {}", record.thread, record.message);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(message: String) -> WireRecord {
        WireRecord {
            level: Level::Info as u8,
            target: "t".to_owned(),
            module_path: None,
            file: None,
            line: None,
            thread: "main".to_owned(),
            message,
        }
    }

    #[test]
    fn capture_is_bounded_in_bytes_counts_what_it_drops_and_batches_fit_a_small_message() {
        let _ = std::mem::take(&mut *WAITING.lock());
        let mut builder = env_logger::Builder::new();
        builder.filter_level(log::LevelFilter::Info);
        let capture = Capture {
            filter: builder.build(),
        };
        let lines = 100_000;
        for i in 0..lines {
            capture.log(
                &Record::builder()
                    .level(Level::Info)
                    .target("t")
                    .args(format_args!("record {i} {}", "x".repeat(60)))
                    .build(),
            );
        }
        capture.log(
            &Record::builder()
                .level(Level::Debug)
                .args(format_args!("filtered"))
                .build(),
        );
        let (kept, bytes, dropped) = {
            let waiting = WAITING.lock();
            (waiting.records.len(), waiting.bytes, waiting.dropped)
        };
        assert!(bytes <= KEEP_BYTES, "{bytes} bytes wait");
        assert_eq!(kept as u64 + dropped, lines, "every record is kept or counted");
        assert!(dropped > 0);
        let first = take_batch();
        assert_eq!(first.dropped, dropped, "the first batch carries the count");
        assert!(first.records[0].message.starts_with(&format!("record {dropped} ")));
        assert!(wire::encode(&first).len() <= BATCH_AT_MOST);
        let mut seen = first.records.len();
        loop {
            let batch = take_batch();
            if batch.records.is_empty() {
                break;
            }
            assert_eq!(batch.dropped, 0);
            assert!(wire::encode(&batch).len() <= BATCH_AT_MOST);
            seen += batch.records.len();
        }
        assert_eq!(seen, kept);
        assert_eq!(WAITING.lock().bytes, 0);
    }

    #[test]
    fn a_long_record_is_cut_to_fit_a_batch() {
        let long = record(cut("é".repeat(10_000), TEXT_AT_MOST));
        assert!(long.message.len() <= TEXT_AT_MOST);
        assert!(
            long.message.ends_with("[… cut, 20000 bytes in all]"),
            "{}",
            long.message
        );
        let batch = WireLogs {
            records: vec![long],
            dropped: 0,
            last: false,
        };
        assert!(wire::encode(&batch).len() <= BATCH_AT_MOST);
    }
}
