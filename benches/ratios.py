#!/usr/bin/env python3
"""Ratios of the `engine` benches to each group's baseline.

Reads criterion's estimates, <target>/criterion/<group>/<bench>/new/estimates.json,
and prints per group each bench's median and its ratio to the group's baseline,
with the target ratio where the brief sets one.

    python3 benches/ratios.py [TARGET_DIR] [--log FILE]

TARGET_DIR defaults to $CARGO_TARGET_DIR, else the crate's `target`. With
--log, this run's medians are appended to FILE (one JSON object a line) and
the ratios' median and min-max over every run logged there are printed too,
and the "best-of" ratio: of each bench's fastest median over those runs
(noise on a shared machine only ever slows a bench down).
"""

import json
import os
import sys
from pathlib import Path

# Group -> (baseline bench, {bench: target ratio}), in the order printed.
GROUPS = {
    "tiny_2e7": ("rayon", {"engine": 1.05}),
    "shortcircuit": ("rayon_first_third", {"engine_deterministic": 1.25, "engine_in_order_deterministic": 1.25}),
    "shortcircuit_middle": ("rayon_try_fold_break", {"engine_any_order": 1.10}),
    "small_jobs": ("rayon", {"engine": 1.5}),
    "stream": ("engine_range", {"engine_iter": 1.2}),
    # Issue #13: streams against par_map_reduce_in_order over the same items.
    "stream_in_order_tiny": ("engine_in_order", {"engine_iter": 1.25}),
    "stream_in_order_16_rounds": ("engine_in_order", {"engine_iter": 1.03}),
    "one_worker": ("sequential", {"engine": 1.05}),
    "medium_5us": ("rayon", {"engine": 1.02}),
    # Speedup >= 1.95 over sequential: engine / sequential <= 1 / 1.95.
    "coarse_1ms": ("sequential", {"engine": 1 / 1.95}),
    # jobs::exact_sum against jobs::sum of f64s, both on the engine.
    "exact_sum_2e7": ("sum", {"exact_sum": 3.0}),
    # Reproducible in-order runs (par_map_reduce_in_order) against rayon over
    # the same indexed items, and a sequential loop for the coarse speedup.
    "in_order_tiny_2e7": ("rayon", {"engine_in_order": 1.05}),
    "in_order_medium_5us": ("rayon", {"engine_in_order": 1.01}),
    # Speedup >= 1.95 over sequential: in order / sequential <= 1 / 1.95.
    "in_order_coarse_1ms": ("sequential", {"engine_in_order": 1 / 1.95}),
    # benches/progress.rs: the same run with bars off, on, and watched by a sink.
    "bars_tiny_2e7": ("bars_off", {"bars_on": 1.03, "sink": 1.03}),
    "bars_tiny_2e9": ("bars_off", {"bars_on": 1.02, "sink": 1.03}),
    "bars_medium_5us": ("bars_off", {"bars_on": 1.03, "sink": 1.03}),
    "bars_small_jobs": ("bars_off", {"bars_on": 1.5, "sink": 1.5}),
    # benches/durable.rs (feature durable): durable runs against the same
    # in-order run without a checkpoint.
    "durable_tiny_2e7": ("in_order", {"durable_10s": 1.01, "durable_1s": 1.03}),
    "durable_long_2e9": ("in_order", {"durable_1s": 1.03}),
    # Issue #13: in-order searches (break at a third), one too short for a
    # bar (on a terminal: bars on / off is terminal / not a terminal) and
    # one that draws a live bar.
    "bars_in_order_search_5e7": ("bars_off", {"bars_on": 1.03, "sink": 1.03}),
    "bars_in_order_search_3e9": ("bars_off", {"bars_on": 1.03, "sink": 1.03}),
}


def medians(root):
    """{group: {bench: median ns}} for every bench criterion measured."""
    found = {}
    for estimates in sorted(root.glob("*/*/new/estimates.json")):
        bench_dir = estimates.parent.parent
        group, bench = bench_dir.parent.name, bench_dir.name
        # Prefer the names criterion recorded over the sanitized directory names.
        meta = bench_dir / "new" / "benchmark.json"
        if meta.exists():
            info = json.loads(meta.read_text())
            group = info.get("group_id", group)
            bench = info.get("function_id") or bench
        with open(estimates) as f:
            found.setdefault(group, {})[bench] = json.load(f)["median"]["point_estimate"]
    return found


def human(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3f} {unit}"
    return f"{ns:.1f} ns"


def ratios(found):
    """{group: {bench: ratio to the baseline}}."""
    out = {}
    for group, benches in found.items():
        baseline = GROUPS.get(group, (None, {}))[0]
        if baseline not in benches:
            baseline = "baseline" if "baseline" in benches else sorted(benches)[0]
        out[group] = {bench: ns / benches[baseline] for bench, ns in benches.items()}
    return out


def main(argv):
    args, log = [], None
    it = iter(argv)
    for arg in it:
        if arg == "--log":
            log = Path(next(it))
        elif arg in ("-h", "--help"):
            print(__doc__.strip())
            return 0
        else:
            args.append(arg)
    target = Path(args[0] if args else os.environ.get("CARGO_TARGET_DIR") or Path(__file__).resolve().parent.parent / "target")
    root = target / "criterion"
    found = medians(root)
    if not found:
        print(f"no criterion estimates under {root}", file=sys.stderr)
        return 1
    current = ratios(found)

    history, best = [], {}
    if log:
        with open(log, "a") as f:
            f.write(json.dumps(found) + "\n")
        logged = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        history = [ratios(run) for run in logged]
        # Noise on a shared machine only slows things down: the fastest
        # median of each bench over the runs, as a ratio, is the steadiest.
        fastest = {}
        for run in logged:
            for group, benches in run.items():
                for bench, ns in benches.items():
                    fastest.setdefault(group, {})[bench] = min(ns, fastest.get(group, {}).get(bench, ns))
        best = ratios(fastest)

    order = [g for g in GROUPS if g in found] + sorted(g for g in found if g not in GROUPS)
    for group in order:
        benches = found[group]
        baseline, targets = GROUPS.get(group, (None, {}))
        print(f"{group}  (baseline: {baseline if baseline in benches else '?'})")
        for bench in sorted(benches, key=lambda b: (b != baseline, list(benches).index(b))):
            ratio = current[group][bench]
            line = f"  {bench:<28} {human(benches[bench]):>12}  x{ratio:6.3f}"
            if len(history) > 1:
                seen = sorted(h[group][bench] for h in history if bench in h.get(group, {}))
                mid = seen[len(seen) // 2] if len(seen) % 2 else (seen[len(seen) // 2 - 1] + seen[len(seen) // 2]) / 2
                line += f"   runs: median x{mid:.3f} [{seen[0]:.3f} - {seen[-1]:.3f}] n={len(seen)}"
                if group in best and bench in best[group]:
                    line += f"  best-of x{best[group][bench]:.3f}"
            if bench in targets:
                line += f"   target <= {targets[bench]:.2f} {'ok' if ratio <= targets[bench] else 'OVER'}"
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
