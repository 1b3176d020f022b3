//! Every example runs small and gives the right answer; parallel runs print
//! what sequential runs print; `--help` documents every flag; and every
//! example compiles as the `main.rs` of a new edition-2024 crate.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::run_example;

/// Every example and its flags (besides `--help`). README, the tests and
/// `tests/mpi.rs` use these names: keep them.
const FLAGS: &[(&str, &[&str])] = &[
    (
        "min_cut",
        &[
            "--nodes",
            "--seed",
            "--workers",
            "--sequential",
            "--any-order",
            "--no-progress",
            "--disconnected",
        ],
    ),
    ("concepts", &["--elements", "--sequential"]),
    ("counterexample", &["--steps", "--sequential"]),
    ("fallible", &["--clean", "--sequential"]),
    ("nested", &["--networks", "--nodes", "--sequential"]),
    (
        "live_progress",
        &["--mode", "--items", "--millis", "--unknown-length", "--nested"],
    ),
];

/// The flags of example `name`, with `--mpi` for `min_cut` when built with
/// the `mpi` feature, and `--checkpoint`, `--checkpoint-every` with the
/// `durable` feature.
fn flags_of(name: &str) -> Vec<&'static str> {
    let (_, flags) = FLAGS.iter().find(|(example, _)| *example == name).unwrap();
    let mut flags = flags.to_vec();
    if name == "min_cut" && cfg!(feature = "mpi") {
        flags.push("--mpi");
    }
    if name == "min_cut" && cfg!(feature = "durable") {
        flags.extend(["--checkpoint", "--checkpoint-every"]);
    }
    flags
}

/// The lines of an output that do not depend on timing.
fn answer(output: &str) -> Vec<&str> {
    output.lines().filter(|line| !line.starts_with("time:")).collect()
}

#[test]
fn min_cut_parallel_equals_sequential() {
    for extra in [&[][..], &["--disconnected"][..], &["--seed", "7"][..]] {
        let mut args = vec!["--nodes", "14", "--no-progress"];
        args.extend_from_slice(extra);
        let parallel = run_example("min_cut", &args);
        args.push("--sequential");
        let sequential = run_example("min_cut", &args);
        let (parallel, sequential) = (answer(&parallel), answer(&sequential));
        let pick = |lines: &[&str], key: &str| lines.iter().find(|l| l.starts_with(key)).map(|l| l.to_string());
        // How many cuts were evaluated differs: parallel workers also start
        // cuts right of the answer before it is known.
        for key in ["best cut:", "cost:", "shortcircuit:"] {
            assert_eq!(
                pick(&parallel, key),
                pick(&sequential, key),
                "{key} differs for {extra:?}"
            );
        }
        assert!(pick(&parallel, "best cut:").is_some(), "{parallel:?}");
    }
}

#[test]
fn min_cut_disconnected_shortcircuits_at_a_free_cut() {
    let output = run_example("min_cut", &["--nodes", "12", "--disconnected", "--no-progress"]);
    assert!(output.contains("cost:        0"), "{output}");
    assert!(output.contains("shortcircuit: yes"), "{output}");
    // The free cut separates even from odd nodes; the last node (11) is
    // always on side B, so side A holds the even ones: 0b010101010101.
    assert!(
        output.contains("best cut:    1365 (side A: nodes [0, 2, 4, 6, 8, 10])"),
        "{output}"
    );
    let any_order = run_example(
        "min_cut",
        &["--nodes", "12", "--disconnected", "--any-order", "--no-progress"],
    );
    assert!(any_order.contains("cost:        0"), "{any_order}");
}

#[test]
fn min_cut_rejects_bad_arguments() {
    let output = std::process::Command::new(common::example("min_cut"))
        .args(["--workers", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("0 workers"));
    for bad in [&["--nodes", "41"][..], &["--nodes", "x"], &["--seed"], &["--cuts", "3"]] {
        let output = Command::new(common::example("min_cut")).args(bad).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("For more information, try '--help'"),
            "{bad:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Flags of a fuller build: a message that says which feature they need.
    let missing: &[(&[&str], &str)] = &[
        (&["--mpi"], "--mpi needs the example built with --features mpi"),
        (
            &["--checkpoint", "min_cut.ckpt"],
            "--checkpoint needs the example built with --features durable",
        ),
        (
            &["--checkpoint=min_cut.ckpt"],
            "--checkpoint needs the example built with --features durable",
        ),
        (
            &["--checkpoint-every", "5"],
            "--checkpoint-every needs the example built with --features durable",
        ),
    ];
    for (args, message) in missing {
        let feature = message.rsplit(' ').next().unwrap();
        if (feature == "mpi" && cfg!(feature = "mpi")) || (feature == "durable" && cfg!(feature = "durable")) {
            continue;
        }
        let output = Command::new(common::example("min_cut")).args(*args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    if cfg!(feature = "durable") {
        for bad in [
            &["--checkpoint-every", "5"][..],
            &["--checkpoint", "x", "--checkpoint-every", "0"],
        ] {
            let output = Command::new(common::example("min_cut")).args(bad).output().unwrap();
            assert_eq!(output.status.code(), Some(2), "{bad:?}");
        }
    }
}

/// `--checkpoint` (feature `durable`): the answer of a plain run, saved;
/// the same command then prints it at once; a file saved for another
/// network is refused, saying how to start over. (Stopping and resuming:
/// `tests/terminal.rs`, under tmux.)
#[cfg(feature = "durable")]
#[test]
fn min_cut_with_a_checkpoint_remembers_its_answer() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("min-cut-checkpoint-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("min_cut.ckpt");
    let path = path.to_str().unwrap();
    let pick = |output: &str, key: &str| output.lines().find(|l| l.starts_with(key)).map(str::to_owned);
    for extra in [&[][..], &["--disconnected"][..]] {
        let _ = std::fs::remove_file(path);
        let mut args = vec!["--nodes", "12", "--no-progress"];
        args.extend_from_slice(extra);
        let plain = run_example("min_cut", &args);
        args.extend(["--checkpoint", path]);
        let first = run_example("min_cut", &args);
        let again = run_example("min_cut", &args);
        for key in ["best cut:", "cost:", "shortcircuit:"] {
            assert!(pick(&plain, key).is_some(), "{plain}");
            assert_eq!(pick(&first, key), pick(&plain, key), "{extra:?}: {first}");
            assert_eq!(pick(&again, key), pick(&plain, key), "{extra:?}: {again}");
        }
        assert!(
            pick(&first, "evaluated:").unwrap().ends_with("cuts in this run"),
            "{first}"
        );
        assert_eq!(
            pick(&again, "evaluated:").unwrap(),
            format!("evaluated:   0 of 2047 cuts (the answer saved in {path})")
        );
    }
    // The file holds the disconnected network's answer: another seed is
    // another search.
    let output = Command::new(common::example("min_cut"))
        .args([
            "--nodes",
            "12",
            "--seed",
            "2",
            "--disconnected",
            "--no-progress",
            "--checkpoint",
            path,
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("saved for another search") && stderr.contains("seed 1") && stderr.contains("seed 2"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "(to start over, delete {path} or give --checkpoint another path)"
        )),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn min_cut_takes_negative_worker_counts() {
    // PyPhi's rule: -1 is all cores (as in README: `--workers -1`).
    for workers in [&["--workers", "-1"][..], &["--workers=-1"]] {
        let mut args = vec!["--nodes", "6", "--no-progress"];
        args.extend_from_slice(workers);
        let output = run_example("min_cut", &args);
        assert!(output.contains("best cut:"), "{output}");
    }
}

#[test]
fn every_example_documents_every_flag_in_help() {
    let mut names: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut listed: Vec<&str> = FLAGS.iter().map(|(name, _)| *name).collect();
    listed.sort();
    assert_eq!(names, listed, "examples/ and the FLAGS table differ");
    for name in names {
        let output = Command::new(common::example(&name)).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{name} --help failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(help.contains(&format!("Usage: {name}")), "{name} --help:\n{help}");
        // The flag column: `-h, --help`, `--nodes <N>`, then what it does on
        // the same line, or on the next one in clap's long format (flags
        // whose values have their own docs, as `live_progress --mode`).
        let lines: Vec<&str> = help.lines().collect();
        let shown: Vec<(&str, usize)> = lines
            .iter()
            .enumerate()
            .flat_map(|(at, line)| {
                line.split_whitespace()
                    .take_while(|word| word.starts_with('-') || word.starts_with('<'))
                    .map(|word| word.trim_end_matches(','))
                    .filter(|word| word.starts_with("--"))
                    .map(move |flag| (flag, at))
            })
            .collect();
        // The words that say what the line's flag does, without `[default:
        // ..]` and `[possible values: ..]`.
        let described = |line: &str| {
            let text = line.split(" [").next().unwrap();
            text.split_whitespace()
                .filter(|word| !word.starts_with(['-', '<']))
                .count()
                >= 2
        };
        let flags = flags_of(&name);
        for flag in &flags {
            let (_, at) = shown
                .iter()
                .find(|(shown, _)| shown == flag)
                .unwrap_or_else(|| panic!("{name} --help lacks {flag}:\n{help}"));
            let next = lines.get(at + 1).filter(|next| !next.trim_start().starts_with('-'));
            assert!(
                described(lines[*at]) || next.is_some_and(|next| described(next)),
                "{name} --help: {flag} is not documented:\n{help}"
            );
        }
        // And no flag the table does not know (README and tests use these).
        for (flag, _) in &shown {
            assert!(
                *flag == "--help" || flags.contains(flag),
                "{name} --help shows {flag}, not in FLAGS:\n{help}"
            );
        }
    }
}

/// Each `examples/<name>.rs`, copied as `src/bin/<name>.rs` of a new
/// edition-2024 crate that depends on this one by path (and on clap, rayon,
/// log and env_logger, as the examples do), passes `cargo check` with
/// warnings denied: a user who copies an example into `cargo new` gets a
/// program that builds (no `std::env::set_var`, E0133 there). The mpi and
/// durable parts of `min_cut` stay off (its crate's features are off). The
/// program in README's "Long runs" joins them as `readme_long_runs.rs`
/// (with this crate's `durable` feature: README doctests run without it).
/// The crate and its target directory live in `target/tmp/edition-2024`, so
/// only the first run builds the dependencies.
#[test]
fn examples_compile_as_edition_2024_crates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("edition-2024");
    let krate = dir.join("crate");
    let bins = krate.join("src").join("bin");
    std::fs::create_dir_all(&bins).unwrap();
    // Only what changed is written: an untouched file is not checked again.
    let write = |path: &Path, text: &str| {
        if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
            std::fs::write(path, text).unwrap();
        }
    };
    let manifest = format!(
        r#"[package]
name = "mapreduce-examples-2024"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
# `durable` for the README's "Long runs" program.
mapreduce = {{ path = {root:?}, features = ["durable"] }}
clap = {{ version = "4", features = ["derive"] }}
rayon = "1.12"
log = "0.4"
env_logger = "0.11"

[features]
# min_cut's `--mpi` and `--checkpoint` parts are behind these features, left
# off here.
mpi = []
durable = []

[lints.rust]
warnings = "deny"

[workspace]
"#,
        root = root.display().to_string(),
    );
    write(&krate.join("Cargo.toml"), &manifest);
    // This crate's lock file: the same versions, no fresh resolution.
    if !krate.join("Cargo.lock").exists() {
        std::fs::copy(root.join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    }
    let mut examples = Vec::new();
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "rs") {
            let name = path.file_name().unwrap().to_owned();
            write(&bins.join(&name), &std::fs::read_to_string(&path).unwrap());
            examples.push(name);
        }
    }
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    write(&bins.join("readme_long_runs.rs"), &long_runs_program(&readme));
    examples.push("readme_long_runs.rs".into());
    for entry in std::fs::read_dir(&bins).unwrap() {
        let path = entry.unwrap().path();
        if !examples.contains(&path.file_name().unwrap().to_owned()) {
            std::fs::remove_file(path).unwrap();
        }
    }
    eprintln!(
        "edition 2024: cargo check of {} examples as a new crate in {} (the first run builds its dependencies)",
        examples.len(),
        krate.display()
    );
    let started = Instant::now();
    let output = Command::new(env!("CARGO"))
        .args(["check", "--bins", "--message-format", "short"])
        .current_dir(&krate)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .output()
        .unwrap();
    eprintln!("edition 2024: cargo check took {:.1?}", started.elapsed());
    assert!(
        output.status.success(),
        "an example does not compile as an edition-2024 crate (`cargo check` in {}):\n{}",
        krate.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The program in README's "Long runs" section: its first `rust` block
/// (marked `ignore` there, as README doctests run without the `durable`
/// feature).
fn long_runs_program(readme: &str) -> String {
    let section = readme
        .split("\n## Long runs\n")
        .nth(1)
        .expect("README has a \"Long runs\" section");
    let section = section.split("\n## ").next().unwrap();
    let block = section
        .split("\n```rust")
        .nth(1)
        .expect("a rust block in README's \"Long runs\"");
    let (_, code) = block.split_once('\n').unwrap();
    let (code, _) = code.split_once("\n```").expect("the block ends");
    format!("{code}\n")
}

#[test]
fn concepts_collects_the_same_concepts_in_parallel_and_sequentially() {
    let parallel = run_example("concepts", &["--elements", "12"]);
    let sequential = run_example("concepts", &["--elements", "12", "--sequential"]);
    assert_eq!(parallel, sequential);
    assert!(parallel.contains("concepts: "), "{parallel}");
}

#[test]
fn counterexample_finds_the_first_one() {
    // The first n whose Collatz trajectory takes at least 100 steps is 27.
    let output = run_example("counterexample", &["--steps", "100"]);
    assert_eq!(output.trim(), "first counterexample: 27 takes 111 steps (limit 100)");
    let output = run_example("counterexample", &["--steps", "300"]);
    assert_eq!(
        output,
        run_example("counterexample", &["--steps", "300", "--sequential"])
    );
}

#[test]
fn fallible_reports_the_leftmost_bad_line() {
    assert_eq!(
        run_example("fallible", &[]).trim(),
        "line 123456 does not parse: \"12.x\""
    );
    let clean = run_example("fallible", &["--clean"]);
    assert!(clean.starts_with("parsed 200000 values"), "{clean}");
    assert_eq!(clean, run_example("fallible", &["--clean", "--sequential"]));
}

#[test]
fn nested_searches_agree_with_sequential() {
    let parallel = run_example("nested", &["--networks", "4", "--nodes", "10"]);
    let sequential = run_example("nested", &["--networks", "4", "--nodes", "10", "--sequential"]);
    assert_eq!(parallel, sequential);
    assert!(parallel.starts_with("most robust network:"), "{parallel}");
}

#[test]
fn live_progress_runs_without_a_terminal() {
    assert_eq!(
        run_example("live_progress", &["--items", "100", "--millis", "0"]).trim(),
        "result: 100 items folded"
    );
    let out = run_example(
        "live_progress",
        &["--items", "100", "--millis", "0", "--mode", "shortcircuit"],
    );
    assert_eq!(out.trim(), "result: 76 items folded");
    let out = run_example("live_progress", &["--items", "100", "--millis", "0", "--mode", "panic"]);
    assert!(out.contains("task panicked at item 75: item 75 is corrupt"), "{out}");
}
