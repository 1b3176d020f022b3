//! Every example runs small and gives the right answer; parallel runs print
//! what sequential runs print.

mod common;

use common::run_example;

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
