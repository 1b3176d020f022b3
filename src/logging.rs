//! Logging setup for applications and examples.

/// Install `env_logger` (filter from `RUST_LOG`, default `warn`) as the
/// process logger, so that records logged with the `log` crate inside tasks,
/// on any worker thread, are printed. Idempotent; if the application already
/// installed its own logger, that one is left alone and keeps receiving the
/// records.
///
/// ```
/// mapreduce::init_logging();
/// mapreduce::init_logging(); // a second call changes nothing
/// log::warn!("visible with the default filter");
/// ```
pub fn init_logging() {
    let env = env_logger::Env::default().default_filter_or("warn");
    // Fails only when a logger is already installed: then keep that one.
    let _ = env_logger::Builder::from_env(env).try_init();
}
