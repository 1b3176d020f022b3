//! `Config::set_default` sets what every thread starts from; scopes still
//! override it. One test in this binary: the default is process-wide.

use mapreduce::prelude::*;

#[test]
fn the_default_reaches_threads_spawned_afterwards_and_scopes_override_it() {
    let before = Config::current();
    assert_eq!(before.workers(), Config::from_env().workers());
    Config::current()
        .with_workers(1)
        .with_progress_bars(false)
        .set_default();

    // Threads the application spawns afterwards, of every kind.
    assert_eq!(std::thread::spawn(|| Config::current().workers()).join().unwrap(), 1);
    let mut in_scope = 0;
    rayon::scope(|_| in_scope = Config::current().workers());
    assert_eq!(in_scope, 1);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    assert_eq!(pool.install(|| Config::current().workers()), 1);

    // Runs use it: one worker.
    let threads = par_map_reduce(
        0..200u64,
        &(),
        jobs::collect(|_: u64, _: &()| rayon::current_num_threads()),
    );
    assert!(threads.unwrap().iter().all(|&n| n == 1));

    // A scope overrides it, and the default is back after the scope.
    let inner = Config::current().with_workers(-1).scope(|| {
        std::thread::spawn(|| Config::current().workers()).join().unwrap();
        Config::current().workers()
    });
    assert_eq!(inner, -1);
    assert_eq!(Config::current().workers(), 1);

    // A later default replaces it.
    Config::current().with_deterministic(false).set_default();
    assert!(!std::thread::spawn(|| Config::current().deterministic()).join().unwrap());
    before.clone().set_default();
    assert_eq!(Config::current(), before);
}
