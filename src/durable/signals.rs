//! SIGINT, SIGTERM and SIGUSR1 stop the durable runs that asked for it
//! ([`Checkpoint::stop_on_signals`](super::Checkpoint::stop_on_signals)).
//!
//! The handlers are installed the first time a run asks (signal-hook cannot
//! remove them) and stay: for each signal, first a handler that takes the
//! signal's default action (the process ends) when `DEFAULT_NEXT` is set,
//! then one that sets it. `DEFAULT_NEXT` is clear only while some run
//! listens and no signal has come since it started, so a signal outside
//! such runs, or a second one, has its usual effect; the first during a run
//! wakes a thread of ours (signal-hook's self-pipe), which stops the runs
//! listening.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};

use crate::StopHandle;

const SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGUSR1];

/// The stop handles of the runs listening now.
static LISTENING: Mutex<Vec<StopHandle>> = Mutex::new(Vec::new());

/// Set: the next signal takes its default action. `SeqCst`, as signal-hook's
/// handlers read it; written under `LISTENING`'s lock (or by a handler).
fn default_next() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(true)))
}

/// Install the handlers and the thread that stops runs, once.
fn install() -> Result<(), String> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let flag = default_next();
            for signal in SIGNALS {
                signal_hook::flag::register_conditional_default(signal, Arc::clone(flag))
                    .and_then(|_| signal_hook::flag::register(signal, Arc::clone(flag)))
                    .map_err(|err| format!("cannot install a handler for signal {signal}: {err}"))?;
            }
            let mut signals = signal_hook::iterator::Signals::new(SIGNALS)
                .map_err(|err| format!("cannot listen for signals: {err}"))?;
            std::thread::Builder::new()
                .name("mapreduce-signals".into())
                .spawn(move || {
                    for signal in signals.forever() {
                        let listening = LISTENING.lock().clone();
                        if !listening.is_empty() {
                            let name = signal_hook::low_level::signal_name(signal).unwrap_or("a signal");
                            log::info!("{name}: stopping after saving the checkpoint (a second {name} ends the process at once)");
                        }
                        for handle in listening {
                            handle.stop();
                        }
                    }
                })
                .map(drop)
                .map_err(|err| format!("cannot start the thread that hears signals: {err}"))
        })
        .clone()
}

/// A run listening for signals, until dropped.
pub(crate) struct Listening {
    handle: StopHandle,
}

/// Have SIGINT, SIGTERM and SIGUSR1 pull `handle` while the result lives.
pub(crate) fn listen(handle: &StopHandle) -> Result<Listening, String> {
    install()?;
    let mut listening = LISTENING.lock();
    listening.push(handle.clone());
    default_next().store(false, Ordering::SeqCst);
    Ok(Listening { handle: handle.clone() })
}

impl Drop for Listening {
    fn drop(&mut self) {
        let mut listening = LISTENING.lock();
        if let Some(at) = listening.iter().position(|handle| *handle == self.handle) {
            listening.swap_remove(at);
        }
        if listening.is_empty() {
            // No run listens: signals have their usual effect again.
            default_next().store(true, Ordering::SeqCst);
        }
    }
}
