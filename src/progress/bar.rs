//! What is drawn: an indicatif bar on stderr, among all live bars of the
//! process, so that log lines can be printed above them.

use std::cell::Cell;
use std::io::{self, IsTerminal, Write};
use std::sync::{LazyLock, Once};
use std::time::Duration;

use indicatif::{HumanCount, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle, TermLike};

/// Every live bar of the process, drawn together on stderr.
static BARS: LazyLock<MultiProgress> = LazyLock::new(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));

thread_local! {
    /// Whether this thread is printing above the bars right now.
    static PRINTING: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` (which prints) with the live bars cleared, then redraw them.
pub(crate) fn above_bars<R>(f: impl FnOnce() -> R) -> R {
    if PRINTING.get() {
        // Reentered (a panic or a log record while printing): the bars are
        // already cleared, and their lock is held by this thread.
        return f();
    }
    struct Printing;
    impl Drop for Printing {
        fn drop(&mut self) {
            PRINTING.set(false);
        }
    }
    PRINTING.set(true);
    let _printing = Printing;
    BARS.suspend(f)
}

/// Print panic messages above the bars too: wrap the panic hook in force
/// (the application's or the default one), once, when the first bar shows.
fn print_panics_above_bars() {
    static WRAPPED: Once = Once::new();
    WRAPPED.call_once(|| {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| above_bars(|| hook(info))));
    });
}

/// Draw on stderr even when it is not a terminal (bars were asked for
/// `always`): with ANSI escapes, which whoever copies it (`mpirun`) passes on.
fn draw_on_stderr_anyway() {
    static SWITCHED: Once = Once::new();
    if !std::io::stderr().is_terminal() {
        SWITCHED.call_once(|| BARS.set_draw_target(ProgressDrawTarget::term_like_with_hz(Box::new(AnsiStderr), 10)));
    }
}

/// A new bar, already drawn, for a run that has lasted `elapsed` so far.
pub(crate) fn show(description: &str, total: Option<u64>, done: u64, elapsed: Duration) -> ProgressBar {
    print_panics_above_bars();
    draw_on_stderr_anyway();
    let label = if description.is_empty() {
        "Processing"
    } else {
        description
    };
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
    let bar = BARS.add(
        bar.with_message(label.to_owned())
            .with_elapsed(elapsed)
            .with_position(done),
    );
    bar.tick();
    bar
}

/// Items per second since the run started. (indicatif's own estimate
/// starts from the bar's creation, which comes late and mid-run.)
fn average_rate(state: &ProgressState) -> f64 {
    let seconds = state.elapsed().as_secs_f64();
    if seconds > 0.0 {
        state.pos() as f64 / seconds
    } else {
        0.0
    }
}

/// The average rate, without indicatif's four decimals.
fn rate(state: &ProgressState, out: &mut dyn std::fmt::Write) {
    let per_sec = average_rate(state);
    let _ = if per_sec >= 10.0 {
        write!(out, "{}/s", HumanCount(per_sec as u64))
    } else {
        write!(out, "{per_sec:.2}/s")
    };
}

/// The time left at the average rate, as `hh:mm:ss`.
fn eta(state: &ProgressState, out: &mut dyn std::fmt::Write) {
    let per_sec = average_rate(state);
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

/// Remove a bar from the screen: nothing of it is left.
pub(crate) fn clear(bar: ProgressBar) {
    bar.finish_and_clear();
    BARS.remove(&bar);
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
