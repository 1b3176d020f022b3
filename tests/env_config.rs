//! A bad environment value is an `Error::Config` naming the variable when a
//! run starts, never a panic. Each case runs in a child process, because the
//! process default is read from the environment once.

use std::process::Command;

use mapreduce::prelude::*;
use mapreduce::ConfigError;

const CHILD: &str = "MAPREDUCE_TEST_EXPECT_BAD";

/// In a child process (when `CHILD` is set): every kind of run reports the
/// bad variable; `Config::current` itself does not panic.
#[test]
fn child_reports_bad_variable() {
    let Ok(variable) = std::env::var(CHILD) else { return };
    let config = Config::current();
    let job = jobs::sum(|x: u64, _: &()| x);
    let errors = [
        par_map_reduce(0..10u64, &(), &job).unwrap_err(),
        par_map_reduce_iter(0..10u64, &(), &job).unwrap_err(),
        seq_map_reduce(0..10u64, &(), &job).unwrap_err(),
    ];
    for err in errors {
        match &err {
            Error::Config(ConfigError::InvalidEnv { variable: v, .. }) => assert_eq!(*v, variable),
            other => panic!("expected a config error naming {variable}, got {other:?}"),
        }
        assert!(err.to_string().contains(&variable), "{err}");
    }
    assert!(config.check().is_err());
}

#[test]
fn bad_env_values_give_config_errors_naming_the_variable() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    for (variable, value) in [
        ("MAPREDUCE_WORKERS", "lots"),
        ("MAPREDUCE_WORKERS", "0"),
        ("MAPREDUCE_WORKERS", "2.5"),
        ("MAPREDUCE_PROGRESS", "perhaps"),
        ("MAPREDUCE_PARALLEL", "2"),
        ("MAPREDUCE_DETERMINISTIC", "nope"),
        ("MAPREDUCE_STREAM_BUFFER", "big"),
        ("MAPREDUCE_STREAM_BUFFER", "-8"),
    ] {
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_reports_bad_variable", "--nocapture"])
            .env(CHILD, variable)
            .env(variable, value)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{variable}={value:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("1 passed"));
    }
}

#[test]
fn good_env_values_set_the_defaults() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_sees_env_defaults", "--nocapture"])
        .env("MAPREDUCE_TEST_GOOD_ENV", "1")
        .env("MAPREDUCE_WORKERS", "1")
        .env("MAPREDUCE_PROGRESS", "off")
        .env("MAPREDUCE_PARALLEL", "yes")
        .env("MAPREDUCE_DETERMINISTIC", "FALSE")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("1 passed"));
}

#[test]
fn child_sees_env_defaults() {
    if std::env::var("MAPREDUCE_TEST_GOOD_ENV").is_err() {
        return;
    }
    let config = Config::current();
    assert_eq!(config.workers(), 1);
    assert!(!config.progress_bars() && config.parallel() && !config.deterministic());
    let threads = par_map_reduce(
        0..8u64,
        &(),
        jobs::collect(|_: u64, _: &()| rayon::current_num_threads()),
    )
    .unwrap();
    assert!(threads.iter().all(|n| *n == 1));
}
