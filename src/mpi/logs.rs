//! PyPhi's LogThread across machines: ranks other than 0 capture their log
//! records instead of printing them; runs carry them to rank 0, whose logger
//! prints them with the rank that logged them.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use log::{Level, Log, Metadata, Record};
use parking_lot::Mutex;

use super::wire::WireRecord;

/// Records kept while no run carries them away; older ones are dropped
/// (and counted) beyond this, so a chatty rank cannot exhaust memory.
const KEEP_AT_MOST: usize = 10_000;

static CAPTURED: Mutex<VecDeque<WireRecord>> = Mutex::new(VecDeque::new());
/// Records dropped since the last [`take`]. `Relaxed`: a count for a note.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Whether rank 0 runs this crate's own line format, which prints a
/// forwarded record's origin where it prints the thread. `Relaxed`: set
/// once at setup, before any run.
static ORIGIN_IN_FORMAT: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Where the record being logged on this thread came from, while rank 0
    /// replays a forwarded one (`rank 2 mapreduce-1`).
    static ORIGIN: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Rank 0: install [`crate::init_logging`]. Other ranks: capture records
/// that pass the same `RUST_LOG` filter, for [`take`].
pub(crate) fn install(rank: i32) {
    let builder = crate::logging::default_builder();
    if rank == 0 {
        if crate::logging::init_logging_with(builder) {
            ORIGIN_IN_FORMAT.store(true, Ordering::Relaxed);
        }
        return;
    }
    let filter = { builder }.build();
    let max_level = filter.filter();
    if log::set_boxed_logger(Box::new(Capture { filter })).is_ok() {
        log::set_max_level(max_level);
    }
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
        if !self.filter.matches(record) {
            return;
        }
        let thread = std::thread::current();
        let captured = WireRecord {
            level: record.level() as u8,
            target: record.target().to_owned(),
            module_path: record.module_path().map(str::to_owned),
            file: record.file().map(str::to_owned),
            line: record.line(),
            thread: thread.name().unwrap_or("unnamed").to_owned(),
            message: record.args().to_string(),
        };
        let mut captured_records = CAPTURED.lock();
        if captured_records.len() == KEEP_AT_MOST {
            captured_records.pop_front();
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        captured_records.push_back(captured);
    }

    fn flush(&self) {}
}

/// The records captured since the last call, oldest first, with a note of
/// how many were dropped to stay within bounds.
pub(crate) fn take() -> Vec<WireRecord> {
    let mut records: Vec<WireRecord> = CAPTURED.lock().drain(..).collect();
    let dropped = DROPPED.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        records.insert(
            0,
            WireRecord {
                level: Level::Warn as u8,
                target: module_path!().to_owned(),
                module_path: Some(module_path!().to_owned()),
                file: None,
                line: None,
                thread: "mapreduce".to_owned(),
                message: format!("{dropped} older log records were dropped (at most {KEEP_AT_MOST} wait for a run)"),
            },
        );
    }
    records
}

/// Rank 0: log `records` from rank `rank` through this process's logger,
/// with the rank in the line.
pub(crate) fn replay(rank: i32, records: Vec<WireRecord>) {
    let logger = log::logger();
    for record in records {
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
        logger.log(&built);
        ORIGIN.with(|slot| *slot.borrow_mut() = None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_what_passes_the_filter_within_bounds() {
        let mut builder = env_logger::Builder::new();
        builder.filter_level(log::LevelFilter::Info);
        let capture = Capture {
            filter: builder.build(),
        };
        let _ = take();
        for i in 0..KEEP_AT_MOST + 5 {
            capture.log(
                &Record::builder()
                    .level(Level::Info)
                    .target("t")
                    .args(format_args!("record {i}"))
                    .build(),
            );
        }
        capture.log(
            &Record::builder()
                .level(Level::Debug)
                .args(format_args!("filtered"))
                .build(),
        );
        let records = take();
        assert_eq!(records.len(), KEEP_AT_MOST + 1);
        assert!(records[0].message.contains("5 older log records were dropped"));
        assert_eq!(records[1].message, "record 5");
        assert_eq!(records.last().unwrap().message, format!("record {}", KEEP_AT_MOST + 4));
        assert!(take().is_empty());
    }
}
