//! What is drawn: an indicatif bar on stderr, among all live bars of the
//! process, so that log lines can be printed above them.
//!
//! # Locking, and why nothing here can hang or poison
//!
//! indicatif keeps the live bars behind a `std::sync::RwLock` of its own,
//! which a panic poisons for good (every later call then panics) and which
//! one thread cannot take twice (it would wait for itself). So every call
//! that can take that lock goes through [`with_screen`], which first takes
//! [`SCREEN`], a `parking_lot` mutex (never poisoned):
//!
//! - Only the holder of `SCREEN` ever takes indicatif's lock, so whoever
//!   holds `SCREEN` can always finish: the lock order is `SCREEN`, then
//!   indicatif's lock, on every path.
//! - A thread that already holds `SCREEN` (a panic, or a log record, while
//!   it draws or prints: the thread-local [`HOLDING`] says so) never locks
//!   again: it prints directly and skips drawing.
//! - What a log line prints (the inner logger, a user's `Display`) runs
//!   under `catch_unwind` inside the suspended section, so its panic never
//!   unwinds through indicatif's lock; it is resumed once the lock is
//!   released (`resume_unwind` does not run the panic hook again, which
//!   already ran, printing directly).
//! - A panic inside indicatif itself is caught under `SCREEN`; its lock may
//!   then be poisoned, so the bars are given up for the rest of the process
//!   ([`BROKEN`]) and lines print as they are.
//! - The wrapped panic hook waits at most [`HOOK_PATIENCE`] for `SCREEN`
//!   and then prints anyway: a hook must never wait on a thread that waits
//!   on the panicking one.
//! - Errors writing to stderr (a full disk, a terminal that went away) are
//!   ignored when drawing ([`IgnoreErrors`]): indicatif unwraps them while it
//!   holds its lock.

use std::cell::Cell;
use std::io::{self, IsTerminal, Write};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Once};
use std::time::Duration;

use indicatif::{HumanCount, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle, TermLike};
use parking_lot::Mutex;

/// Every live bar of the process, drawn together on stderr. Hidden until
/// the first bar shows, which picks where to draw (see [`draw_target`]).
static BARS: LazyLock<MultiProgress> = LazyLock::new(|| MultiProgress::with_draw_target(ProgressDrawTarget::hidden()));

/// Held around every call that can take indicatif's lock on [`BARS`].
static SCREEN: Mutex<()> = Mutex::new(());

/// Set (under [`SCREEN`]) once a call into indicatif panicked: its lock may
/// be poisoned, so it is never touched again. Written and read only by the
/// holder of `SCREEN`, which orders them: `Relaxed` suffices.
static BROKEN: AtomicBool = AtomicBool::new(false);

/// How long the panic hook waits for [`SCREEN`] before printing anyway.
const HOOK_PATIENCE: Duration = Duration::from_secs(1);

thread_local! {
    /// Whether this thread holds [`SCREEN`] right now.
    static HOLDING: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread holds [`SCREEN`]. (`HOLDING` has no destructor, so
/// it is always there; `try_with` keeps even a thread-local destructor safe.)
fn holding() -> bool {
    HOLDING.try_with(Cell::get).unwrap_or(false)
}

fn set_holding(on: bool) {
    let _ = HOLDING.try_with(|holding| holding.set(on));
}

/// Run `op` (which calls into indicatif) holding [`SCREEN`], waiting for it
/// at most `patience` (`None`: as long as it takes). `None` when `op` did
/// not run or did not finish: this thread already holds the screen (taking
/// indicatif's lock again would wait for itself), the screen stayed busy,
/// the bars were given up, or `op` panicked (which gives them up).
fn with_screen<R>(patience: Option<Duration>, op: impl FnOnce() -> R) -> Option<R> {
    if holding() {
        return None;
    }
    let _screen = match patience {
        None => SCREEN.lock(),
        Some(patience) => SCREEN.try_lock_for(patience)?,
    };
    struct Release;
    impl Drop for Release {
        fn drop(&mut self) {
            set_holding(false);
        }
    }
    set_holding(true);
    let _release = Release;
    if BROKEN.load(Ordering::Relaxed) {
        return None;
    }
    match catch_unwind(AssertUnwindSafe(op)) {
        Ok(value) => Some(value),
        Err(_) => {
            BROKEN.store(true, Ordering::Relaxed);
            None
        }
    }
}

/// Run `f` (which prints) with the live bars cleared, then redraw them.
/// A panic of `f` propagates once the bars' lock is released.
pub(crate) fn above_bars<R>(f: impl FnOnce() -> R) -> R {
    print_above_bars(None, f)
}

/// [`above_bars`], waiting for the screen at most `patience`: past it, `f`
/// prints as it would without bars.
fn print_above_bars<R>(patience: Option<Duration>, f: impl FnOnce() -> R) -> R {
    let mut f = Some(f);
    let mut printed = None;
    with_screen(patience, || {
        if std::thread::panicking() {
            // A panic hook: `f` prints here (it names this thread), the
            // bars are cleared before and redrawn after by a helper.
            if draw_while_panicking(|| drop(BARS.clear())) {
                let f = f.take().expect("printed once");
                printed = Some(catch_unwind(AssertUnwindSafe(f)));
                draw_while_panicking(|| BARS.suspend(|| ()));
            }
        } else {
            BARS.suspend(|| {
                let f = f.take().expect("printed once");
                printed = Some(catch_unwind(AssertUnwindSafe(f)));
            })
        }
    });
    match printed {
        Some(Ok(value)) => value,
        Some(Err(payload)) => resume_unwind(payload),
        // The screen was not ours to clear: print as is.
        None => (f.take().expect("printed once"))(),
    }
}

/// Run `op`, a call into indicatif, on a helper thread, waiting for it:
/// indicatif draws nothing on a thread that is panicking, not even to clear
/// a bar, so a panic message printed while a bar is live (from the panic
/// hook), or a bar dropped while unwinding, would leave a stale bar line.
/// Called only by the holder of [`SCREEN`], for which the helper acts.
/// Whether `op` ran to its end: not when no thread could be started, nor
/// when `op` panicked (which gives the bars up, see [`BROKEN`]; the helper
/// must not unwind into this thread, which may be in a panic hook already).
fn draw_while_panicking(op: impl FnOnce() + Send) -> bool {
    std::thread::scope(|scope| {
        let helper = std::thread::Builder::new()
            .name("mapreduce-bars".into())
            .spawn_scoped(scope, op);
        match helper.map(|helper| helper.join()) {
            Ok(Ok(())) => true,
            Ok(Err(_)) => {
                BROKEN.store(true, Ordering::Relaxed);
                false
            }
            Err(_) => false,
        }
    })
}

/// Print panic messages above the bars too: wrap the panic hook in force
/// (the application's or the default one), once, when a bar shows. Never
/// while this thread panics (a `Drop` starting a run during unwinding): the
/// hook cannot be changed then, so a later bar tries again.
fn print_panics_above_bars() {
    static WRAPPED: Once = Once::new();
    if std::thread::panicking() {
        return;
    }
    WRAPPED.call_once(|| {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            print_above_bars(Some(HOOK_PATIENCE), || hook(info))
        }));
    });
}

/// Where the bars are drawn: stderr, through [`IgnoreErrors`]. A terminal
/// at indicatif's usual rate; anything else (bars were asked for `always`)
/// with ANSI escapes, which whoever copies it (`mpirun`) passes on.
fn draw_target() -> ProgressDrawTarget {
    if io::stderr().is_terminal() {
        ProgressDrawTarget::term_like_with_hz(Box::new(IgnoreErrors(console::Term::buffered_stderr())), 20)
    } else {
        ProgressDrawTarget::term_like_with_hz(Box::new(IgnoreErrors(AnsiStderr)), 10)
    }
}

/// The width bars get where [`draw_target`] draws: the terminal's, or for
/// the `always` target `COLUMNS` (80 without it), less the columns they
/// leave free (see `IgnoreErrors::width`).
fn target_width() -> u16 {
    if io::stderr().is_terminal() {
        IgnoreErrors(console::Term::buffered_stderr()).width()
    } else {
        IgnoreErrors(AnsiStderr).width()
    }
}

/// The least a bar keeps of the line, in cells: a long description is
/// shortened first.
const MIN_BAR_CELLS: usize = 20;
/// What the templates of [`show`] print besides the description, the bar
/// and the counts, in cells: with a total, the spaces around the bar, the
/// `/` between the counts, ` [`, the elapsed time (`hh:mm:ss`), ` < `, the
/// ETA (`hh:mm:ss`), `, ` and `]`; without one, the spinner and its space,
/// the space before the count, ` items [`, the elapsed time, `, ` and `]`.
const WITH_TOTAL_FIXED: usize = 2 + 1 + 2 + 8 + 3 + 8 + 2 + 1;
const SPINNER_FIXED: usize = 2 + 1 + 8 + 8 + 2 + 1;
/// What a count or a rate of unknown size is given: `999,999,999,999`.
const UNKNOWN_COUNT_CELLS: usize = 15;

/// What the bar of a run shows before its bar: its description, drawable
/// (see [`printable`]; `Processing` when there is none), shortened with `…`
/// to fit a line of `width` cells along with everything else the bar
/// prints once the run is near its end, and (with a `total`) at least
/// [`MIN_BAR_CELLS`] cells of bar. The counts grow as the run goes, so both
/// are budgeted at the total's width; the rate at that of 2.5 totals a
/// second (a bar shows after 0.4 s, so the average rate stays below that),
/// and at least `99.99/s`.
pub(crate) fn label(width: usize, description: &str, total: Option<u64>) -> String {
    let label = printable(description);
    let label = if label.trim().is_empty() {
        "Processing".to_owned()
    } else {
        label
    };
    let cells = |n: u64| HumanCount(n).to_string().len();
    let others = match total {
        Some(total) => {
            let rate = (cells(total.saturating_mul(5) / 2) + "/s".len()).max("99.99/s".len());
            WITH_TOTAL_FIXED + MIN_BAR_CELLS + 2 * cells(total) + rate
        }
        None => SPINNER_FIXED + 2 * UNKNOWN_COUNT_CELLS + "/s".len(),
    };
    let room = width.saturating_sub(others);
    if console::measure_text_width(&label) <= room {
        label
    } else if room == 0 {
        String::new()
    } else {
        console::truncate_str(&label, room, "…").into_owned()
    }
}

/// A bar among the live ones; removed from the screen when dropped.
pub(crate) struct Bar(ProgressBar);

impl Bar {
    /// Show `done` items.
    pub(crate) fn set_position(&self, done: u64) {
        with_screen(None, || self.0.set_position(done));
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        let clear = || {
            self.0.finish_and_clear();
            BARS.remove(&self.0);
        };
        let cleared = with_screen(None, || {
            if std::thread::panicking() {
                // Dropped while unwinding: indicatif would not clear it here.
                draw_while_panicking(clear).then_some(())
            } else {
                clear();
                Some(())
            }
        })
        .flatten();
        if cleared.is_none() {
            // Still attached to indicatif's lock, which may be poisoned or
            // held by this thread: its last drop would take it. Leak it.
            std::mem::forget(self.0.clone());
        }
    }
}

/// A new bar, already drawn, for a run that has lasted `elapsed` so far;
/// `None` when it cannot be drawn now (see [`with_screen`]).
pub(crate) fn show(description: &str, total: Option<u64>, done: u64, elapsed: Duration, before: u64) -> Option<Bar> {
    print_panics_above_bars();
    let label = label(usize::from(target_width()), description, total);
    // A resumed run's rate and time left count its own items only.
    let rate = move |state: &ProgressState, out: &mut dyn std::fmt::Write| rate(state, before, out);
    let eta = move |state: &ProgressState, out: &mut dyn std::fmt::Write| eta(state, before, out);
    let bar = match total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{msg} {wide_bar} {human_pos}/{human_len} [{elapsed_precise} < {eta}, {rate}]",
            )
            .expect("a valid template")
            .with_key("rate", rate)
            .with_key("eta", eta),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} {human_pos} items [{elapsed_precise}, {rate}]")
                .expect("a valid template")
                .with_key("rate", rate),
        ),
    };
    let bar = bar.with_message(label).with_elapsed(elapsed).with_position(done);
    with_screen(None, || {
        static TARGET: Once = Once::new();
        TARGET.call_once(|| BARS.set_draw_target(draw_target()));
        let bar = BARS.add(bar);
        bar.tick();
        Bar(bar)
    })
}

/// Items per second since the run started, not counting the `before`
/// items done before it (a resumed run's). (indicatif's own estimate
/// starts from the bar's creation, which comes late and mid-run.)
fn average_rate(state: &ProgressState, before: u64) -> f64 {
    let seconds = state.elapsed().as_secs_f64();
    if seconds > 0.0 {
        state.pos().saturating_sub(before) as f64 / seconds
    } else {
        0.0
    }
}

/// The average rate, without indicatif's four decimals.
fn rate(state: &ProgressState, before: u64, out: &mut dyn std::fmt::Write) {
    let per_sec = average_rate(state, before);
    let _ = if per_sec >= 10.0 {
        write!(out, "{}/s", HumanCount(per_sec as u64))
    } else {
        write!(out, "{per_sec:.2}/s")
    };
}

/// The time left at the average rate, as `hh:mm:ss`.
fn eta(state: &ProgressState, before: u64, out: &mut dyn std::fmt::Write) {
    let per_sec = average_rate(state, before);
    let left = state.len().unwrap_or(0).saturating_sub(state.pos()) as f64;
    let _ = if per_sec > 0.0 {
        let seconds = (left / per_sec).ceil() as u64;
        write!(
            out,
            "{:02}:{:02}:{:02}",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        )
    } else {
        write!(out, "--:--:--")
    };
}

/// Stderr driven with ANSI escapes whether or not it is a terminal.
#[derive(Debug)]
struct AnsiStderr;

impl AnsiStderr {
    fn escape(&self, n: usize, code: char) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        write!(io::stderr(), "\x1b[{n}{code}")
    }
}

impl TermLike for AnsiStderr {
    fn width(&self) -> u16 {
        std::env::var("COLUMNS")
            .ok()
            .and_then(|columns| columns.parse().ok())
            .unwrap_or(80)
    }
    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        self.escape(n, 'A')
    }
    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        self.escape(n, 'B')
    }
    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        self.escape(n, 'C')
    }
    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        self.escape(n, 'D')
    }
    fn write_line(&self, line: &str) -> io::Result<()> {
        writeln!(io::stderr(), "{line}")
    }
    fn write_str(&self, text: &str) -> io::Result<()> {
        io::stderr().write_all(text.as_bytes())
    }
    fn clear_line(&self) -> io::Result<()> {
        io::stderr().write_all(b"\r\x1b[2K")
    }
    fn flush(&self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// A terminal whose write errors are dropped: a bar that cannot be drawn
/// (a full disk, a terminal that went away) is not drawn, and nothing else
/// happens. indicatif unwraps these errors while it holds its lock, which
/// would poison it and stop every later log line.
#[derive(Debug)]
struct IgnoreErrors<T>(T);

/// Columns at the end of the line that bars leave free (see `width`).
const RESERVED_COLUMNS: u16 = 2;

impl<T: TermLike> TermLike for IgnoreErrors<T> {
    fn width(&self) -> u16 {
        // The last two columns stay free: a terminal that echoes `^C` when
        // Ctrl-C stops a run would otherwise wrap the full line, and the
        // bar would be cleared on the wrong line, leaving it on screen.
        self.0.width().saturating_sub(RESERVED_COLUMNS).max(1)
    }
    fn height(&self) -> u16 {
        self.0.height()
    }
    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        let _ = self.0.move_cursor_up(n);
        Ok(())
    }
    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        let _ = self.0.move_cursor_down(n);
        Ok(())
    }
    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        let _ = self.0.move_cursor_right(n);
        Ok(())
    }
    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        let _ = self.0.move_cursor_left(n);
        Ok(())
    }
    fn write_line(&self, line: &str) -> io::Result<()> {
        let _ = self.0.write_line(line);
        Ok(())
    }
    fn write_str(&self, text: &str) -> io::Result<()> {
        let _ = self.0.write_str(text);
        Ok(())
    }
    fn clear_line(&self) -> io::Result<()> {
        let _ = self.0.clear_line();
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

/// `text` as it can be drawn on a terminal: escape sequences (CSI, OSC,
/// DCS and the like, 7- and 8-bit) removed whole, other control characters
/// removed, except that tabs and line breaks become spaces.
pub(crate) fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                Some('[') => skip_csi(&mut chars),
                Some(']' | 'P' | 'X' | '^' | '_') => skip_string(&mut chars),
                // Other escapes: intermediates (0x20..=0x2F), then one final.
                Some(' '..='/') => {
                    while chars.next_if(|c| matches!(c, ' '..='/')).is_some() {}
                    chars.next();
                }
                _ => {}
            },
            '\u{9b}' => skip_csi(&mut chars),
            '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            '\t' | '\n' | '\r' | '\x0b' | '\x0c' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Skip the rest of a control sequence: parameters and intermediates
/// (0x20..=0x3F), then its final byte (0x40..=0x7E). A stray control
/// character ends it early, and is dropped too.
fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while chars.next_if(|c| matches!(c, ' '..='?')).is_some() {}
    chars.next();
}

/// Skip the rest of a control string (OSC, DCS, SOS, PM, APC): up to BEL,
/// ST (`ESC \` or U+009C), or the end of the text.
fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(c) = chars.next() {
        match c {
            '\x07' | '\u{9c}' => return,
            '\x1b' => {
                chars.next_if_eq(&'\\');
                return;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_keeps_plain_text() {
        assert_eq!(printable("Evaluating cuts"), "Evaluating cuts");
        assert_eq!(printable("Φ-structure: ∑ cuts ✓"), "Φ-structure: ∑ cuts ✓");
        assert_eq!(printable(""), "");
    }

    #[test]
    fn printable_turns_tabs_and_line_breaks_into_spaces() {
        assert_eq!(printable("a\tb\r\nc\x0bd\x0ce"), "a b  c d e");
    }

    #[test]
    fn printable_drops_other_control_characters() {
        assert_eq!(
            printable("bell\x07 null\0 del\x7f back\x08 c1\u{85}"),
            "bell null del back c1"
        );
    }

    #[test]
    fn printable_drops_whole_escape_sequences() {
        // Clear the screen, home the cursor, colours, a private mode.
        assert_eq!(printable("\x1b[2J\x1b[H\x1b[1;31mred\x1b[0m\x1b[?25l"), "red");
        // Window titles (OSC ended by BEL or by ST), hyperlinks.
        assert_eq!(printable("\x1b]0;pwned\x07a\x1b]2;title\x1b\\b"), "ab");
        assert_eq!(printable("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"), "link");
        // DCS, APC, character sets, keypad modes, a reset.
        assert_eq!(printable("\x1bPq#0;2\x1b\\x\x1b_apc\x07y\x1b(0z\x1b=\x1bc!"), "xyz!");
        // 8-bit CSI and OSC.
        assert_eq!(printable("\u{9b}2Jok\u{9d}0;t\u{9c}!"), "ok!");
    }

    #[test]
    fn printable_survives_truncated_sequences() {
        assert_eq!(printable("text\x1b"), "text");
        assert_eq!(printable("text\x1b["), "text");
        assert_eq!(printable("text\x1b[12;3"), "text");
        assert_eq!(printable("text\x1b]0;never ended"), "text");
        assert_eq!(printable("\x1b[31\nred"), "red");
    }

    #[test]
    fn the_hostile_description_prints_as_words() {
        let evil = "\x1b[2J\x1b[H\x1b]0;pwned\x07Evil\r\n\tcuts\x1b[31m!\x07";
        assert_eq!(printable(evil), "Evil   cuts!");
    }

    /// The cells the bar gets in a line of `width` cells whose description
    /// is `label`, at the widest the counts and the rate get.
    fn bar_cells(width: usize, label: &str, total: u64) -> usize {
        let counts = format!("{}/{}", HumanCount(total), HumanCount(total));
        let rate = format!("{}/s", HumanCount(total * 5 / 2));
        let rest = format!(" [00:00:05 < 00:00:00, {rate}]");
        width - console::measure_text_width(label) - 2 - counts.len() - rest.len()
    }

    #[test]
    fn long_descriptions_are_shortened_to_leave_the_bar_twenty_cells() {
        let description = "Evaluating every bipartition of the mechanism's purview cuts"; // 60
        assert_eq!(description.chars().count(), 60);
        // Up to eight digits of total, 80 columns keep 20 cells of bar.
        for total in [1, 999, 2000, 65_536, 1_081_344, 4_194_303, 99_999_999] {
            let label = label(80, description, Some(total));
            assert!(label.is_empty() || label.ends_with('…'), "{label:?}");
            assert!(description.starts_with(label.trim_end_matches('…')));
            assert!(
                bar_cells(80, &label, total) >= MIN_BAR_CELLS,
                "total {total}: {label:?}"
            );
        }
        assert_eq!(label(80, description, Some(4_194_303)), "Ev…");
        // With 2,000 items, 16 cells are left for the description.
        assert_eq!(label(80, description, Some(2000)), "Evaluating ever…");
        // Short descriptions stay whole.
        assert_eq!(label(80, "Evaluating cuts", Some(2000)), "Evaluating cuts");
        assert_eq!(label(200, description, Some(4_194_303)), description);
        // A terminal too narrow for any of it: the bar keeps what it can.
        assert_eq!(label(40, description, Some(4_194_303)), "");
    }

    #[test]
    fn shortened_labels_count_cells_not_bytes() {
        let wide = "評価".repeat(20); // 40 characters, 80 cells
        let label = label(80, &wide, Some(2000));
        let cells = console::measure_text_width(&label);
        assert!((15..=16).contains(&cells), "{label:?}: {cells} cells");
        assert!(label.ends_with('…'));
    }

    #[test]
    fn spinner_labels_fit_the_line_too() {
        let description = "x".repeat(100);
        let label = label(80, &description, None);
        let line = SPINNER_FIXED + 2 * UNKNOWN_COUNT_CELLS + 2 + console::measure_text_width(&label);
        assert!(line <= 80 && label.ends_with('…'), "{label:?}");
        assert_eq!(super::label(80, "\x1b[2Jcuts", None), "cuts");
        assert_eq!(super::label(80, "  ", None), "Processing");
    }

    #[test]
    fn ignored_errors_do_not_reach_the_caller() {
        #[derive(Debug)]
        struct Broken;
        impl TermLike for Broken {
            fn width(&self) -> u16 {
                80
            }
            fn move_cursor_up(&self, _: usize) -> io::Result<()> {
                Err(io::ErrorKind::StorageFull.into())
            }
            fn move_cursor_down(&self, _: usize) -> io::Result<()> {
                Err(io::ErrorKind::StorageFull.into())
            }
            fn move_cursor_right(&self, _: usize) -> io::Result<()> {
                Err(io::ErrorKind::StorageFull.into())
            }
            fn move_cursor_left(&self, _: usize) -> io::Result<()> {
                Err(io::ErrorKind::StorageFull.into())
            }
            fn write_line(&self, _: &str) -> io::Result<()> {
                Err(io::ErrorKind::StorageFull.into())
            }
            fn write_str(&self, _: &str) -> io::Result<()> {
                Err(io::ErrorKind::StorageFull.into())
            }
            fn clear_line(&self) -> io::Result<()> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&self) -> io::Result<()> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
        }
        let term = IgnoreErrors(Broken);
        assert!(term.write_line("x").is_ok() && term.write_str("x").is_ok() && term.flush().is_ok());
        assert!(term.move_cursor_up(1).is_ok() && term.clear_line().is_ok());
        // Drawn through indicatif, the errors would have been unwrapped
        // inside its lock; here a whole suspend-and-redraw goes through.
        let bars = MultiProgress::with_draw_target(ProgressDrawTarget::term_like(Box::new(term)));
        let bar = bars.add(ProgressBar::new(10));
        bar.set_position(3);
        assert_eq!(bars.suspend(|| 7), 7);
        bar.finish_and_clear();
    }
}
