"""Drift benchmark: Keel vs Evidently's data-drift report on the same tables, in one run.

For each size, reference and current tables of N rows x 20 columns (12 numeric, 8 categorical;
6 columns drifted) are generated from one seed, and each tool runs in its own fresh subprocess
(so peak memory is each tool's own), after an untimed warm-up call on small tables:

    keel check     drift_report(profile, current) against a profile built beforehand (what a
                   monitor does on every check: the reference rows are never read again)
    keel full      build_reference(reference) + drift_report(profile, current)
    keel logged    the current table written to a prediction log as segments of 10,000 rows, each
                   summarized as written (keel.monitoring.windowsummary); the check merges the
                   stored summaries (what a monitor does since issue 17): goal 0.2 s at 1M rows
    evidently      Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)

Memory is measured in one more fresh subprocess per tool and size, untimed: the peak resident set
size during one call minus the resident size just before it (the kernel's high-water mark is reset
through /proc/self/clear_refs), so it counts everything the call allocates, Python or not. That
process runs with glibc's MALLOC_MMAP_THRESHOLD_=65536, so every large array is mapped when
allocated and unmapped when freed; otherwise a call reuses heap pages freed while the tables were
generated and its peak reads near zero. (Fresh mappings cost page faults, hence a separate run.)
Ratios are Evidently / Keel from the same run.

    make bench-drift                                      # creates .venv-bench-drift, full sizes
    .venv-bench-drift/bin/python bench/drift.py --quick   # smoke test: 20,000 rows, 1 repeat
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, machine_info  # noqa: E402

NUMERIC = [f"num{i}" for i in range(12)]
CATEGORICAL = [f"cat{i}" for i in range(8)]
# What the current table changes, and whether that is drift by both tools' rules.
DRIFTED = {
    "num0": "mean +0.5 std",
    "num1": "std x1.5",
    "num2": "mean +0.15 std",
    "num3": "lognormal: scale x1.3",
    "cat0": "frequencies 0.6/0.3/0.1 -> 0.3/0.3/0.4",
    "cat1": "a new category in 15% of rows",
}
NOT_DRIFTED = {"num4": "mean +0.03 std (below both thresholds)"}
PACKAGES = ("keelml", "evidently", "pandas", "numpy", "scipy", "scikit-learn")


def make_tables(rows: int, seed: int = 0) -> tuple[Any, Any]:
    """(reference, current): the same generator for both tools, so the tables are identical."""
    import numpy as np
    import pandas as pd

    def table(rng: np.random.Generator, drifted: bool) -> pd.DataFrame:
        shift = 1.0 if drifted else 0.0
        cols: dict[str, Any] = {
            "num0": rng.normal(0.5 * shift, 1.0, rows),
            "num1": rng.normal(0.0, 1.5 if drifted else 1.0, rows),
            "num2": rng.normal(10.0 + 0.15 * 2.0 * shift, 2.0, rows),
            "num3": rng.lognormal(0.0, 1.0, rows) * (1.3 if drifted else 1.0),
            "num4": rng.normal(0.03 * shift, 1.0, rows),
            "num5": rng.exponential(3.0, rows),
            "num6": rng.uniform(0.0, 100.0, rows),
            "num7": rng.gamma(2.0, 2.0, rows),
            "num8": rng.integers(18, 91, rows).astype(np.int64),
            "num9": rng.poisson(4.0, rows).astype(np.int64),
            "num10": rng.beta(2.0, 5.0, rows),
            "num11": rng.standard_t(6, rows),
        }
        p0 = [0.3, 0.3, 0.4] if drifted else [0.6, 0.3, 0.1]
        cols["cat0"] = rng.choice(np.array(["a", "b", "c"], dtype=object), rows, p=p0)
        cat1 = rng.choice(np.array(["red", "green", "blue", "black"], dtype=object), rows, p=[0.4, 0.3, 0.2, 0.1])
        if drifted:
            cat1[rng.random(rows) < 0.15] = "purple"
        cols["cat1"] = cat1
        labels = np.array([f"city{i:02d}" for i in range(30)], dtype=object)
        cols["cat2"] = rng.choice(labels, rows)
        cols["cat3"] = rng.choice(np.array(["basic", "plus", "pro"], dtype=object), rows, p=[0.5, 0.35, 0.15])
        cols["cat4"] = rng.choice(np.array(["web", "ios", "android"], dtype=object), rows, p=[0.5, 0.25, 0.25])
        cols["cat5"] = rng.choice(np.array([f"seg{i}" for i in range(8)], dtype=object), rows)
        cols["cat6"] = rng.choice(np.array(["yes", "no"], dtype=object), rows, p=[0.2, 0.8])
        cols["cat7"] = rng.choice(np.array(list("ABCDEFGHIJKL"), dtype=object), rows)
        return pd.DataFrame(cols)

    rng = np.random.default_rng(seed)
    return table(rng, False), table(rng, True)


# -- child process: one tool, one size ------------------------------------------------------------
def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
        return True
    except OSError:
        return False


def _measured(fn: Any) -> tuple[float, float, Any]:
    """(seconds, peak extra resident MiB, result) of one call; the collector is off during it."""
    import gc

    gc.collect()
    _reset_peak()
    before = _rss_kb("VmRSS")
    gc.disable()
    start = time.perf_counter()
    try:
        result = fn()
    finally:
        elapsed = time.perf_counter() - start
        gc.enable()
    return elapsed, max(_rss_kb("VmHWM") - before, 0) / 1024, result


def _evidently_drifted(snapshot: Any) -> tuple[list[str], dict[str, Any]]:
    """Drifted columns from the ValueDrift metrics: distances drift at value >= threshold,
    statistical tests (p-values) at value < threshold."""
    tests = ("K-S", "chi-square", "Z-test", "Anderson", "Cramer", "Epps", "Fisher", "T-Test", "Mann", "Empirical")
    drifted, values = [], {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if not config.get("type", "").endswith("ValueDrift"):
            continue
        column, method, threshold, value = config["column"], config["method"], config["threshold"], metric["value"]
        is_test = any(name.lower() in method.lower() for name in tests)
        hit = value < threshold if is_test else value >= threshold
        values[column] = {"method": method, "threshold": threshold, "value": value, "drifted": bool(hit)}
        if hit:
            drifted.append(column)
    return sorted(drifted), values


def child(tool: str, rows: int, repeats: int, memory: bool) -> dict[str, Any]:
    import warnings

    warnings.filterwarnings("ignore")
    reference, current = make_tables(rows)
    small_ref, small_cur = make_tables(2000, seed=1)
    out: dict[str, Any] = {"tool": tool, "rows": rows, "peak_reset": _reset_peak(), "memory_run": memory}
    repeats = 1 if memory else repeats
    if tool == "keel":
        from keel.monitoring.stats import build_reference, drift_report

        if not memory:  # Keel's calls are cheap: a median of more of them steadies the ratio
            repeats = max(repeats, 5)

        drift_report(build_reference(small_ref), small_cur)  # warm-up: lazy imports (scipy)
        profile = build_reference(reference)
        out["profile_json_bytes"] = len(json.dumps(profile))
        check, full, check_mem, full_mem = [], [], [], []
        report = None
        for _ in range(repeats):
            s, mem, report = _measured(lambda: drift_report(profile, current))
            check.append(s)
            check_mem.append(mem)
            s, mem, _ = _measured(lambda: drift_report(build_reference(reference), current))
            full.append(s)
            full_mem.append(mem)
        assert report is not None
        out.update(check_s=check, full_s=full, check_mib=max(check_mem), full_mib=max(full_mem))
        out["drifted"] = sorted(report.drifted_features)
        out["columns"] = {
            fd.feature: {
                "psi": fd.psi,
                "js_distance": fd.js_distance,
                "wasserstein_norm": fd.wasserstein_norm,
                "ks_stat": fd.ks_stat,
                "drifted": fd.drifted,
                "reasons": list(fd.reasons),
            }
            for fd in report.features
        }
    else:
        from evidently import Report
        from evidently.presets import DataDriftPreset

        Report([DataDriftPreset()]).run(current_data=small_cur, reference_data=small_ref)  # warm-up
        times, mems = [], []
        snapshot = None
        for _ in range(repeats):
            s, mem, snapshot = _measured(
                lambda: Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
            )
            times.append(s)
            mems.append(mem)
        out.update(run_s=times, run_mib=max(mems))
        out["drifted"], out["columns"] = _evidently_drifted(snapshot)
    if tool == "keel" and not memory:
        out["logged"] = _logged_check(reference, current, repeats)
    out["process_peak_mib"] = _rss_kb("VmHWM") / 1024
    return out


SEGMENT_ROWS = 10_000  # a server's segment: a few seconds of traffic


def _logged_check(reference: Any, current: Any, repeats: int) -> dict[str, Any]:
    """Issue 17: `current` logged into a workspace's prediction log as segments of SEGMENT_ROWS
    rows, each summarized against the stored profile as it is written; the check then merges the
    segments' summaries (read from the store) instead of reading the window's rows. Timed: the
    summary's cost per segment write, the write itself, and the check (window_summary +
    drift_report_from); its statistics are compared with drift_report on the rows."""
    import tempfile
    from datetime import UTC, datetime, timedelta

    import keel
    from keel.monitoring.stats import build_profile, drift_report, drift_report_from
    from keel.monitoring.windowsummary import SummaryPlan, side_stats

    profile = build_profile(reference)
    plan = SummaryPlan.of(list(current.columns), profile, None, "bench")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp, keel.Workspace(home=tmp) as ws:
        log = ws.predictions
        plain, summarized = [], []
        for i, lo in enumerate(range(0, len(current), SEGMENT_ROWS)):
            part = current.iloc[lo : lo + SEGMENT_ROWS].copy()
            part["__at"] = start + timedelta(seconds=i)
            log.summary_plan = None if i % 2 else (lambda model, version: plan)  # alternate: with and without
            begin = time.perf_counter()
            log.write("bench", 1 if i % 2 == 0 else 2, part)
            (plain if i % 2 else summarized).append(time.perf_counter() - begin)
        log.summary_plan = lambda model, version: plan
        # The version-2 segments were written without summaries: summarize them once (what the
        # first check after a monitor is set up does), then time checks of the whole window.
        for version in (1, 2):
            log.window_summary("bench", plan, since=start, until=start + timedelta(days=1), version=version)

        def check() -> Any:
            parts = [
                log.window_summary("bench", plan, since=start, until=start + timedelta(days=1), version=v)
                for v in (1, 2)
            ]
            from keel.monitoring.windowsummary import merge

            merged = merge([p.summary for p in parts if p is not None], plan)
            return drift_report_from(plan.profile, side_stats(plan.profile, merged.features), merged.served)

        times, report = [], None
        for _ in range(max(repeats, 5)):
            seconds, _, report = _measured(check)
            times.append(seconds)
    rows = drift_report(profile, current)
    gaps = [
        abs(getattr(a, k) - getattr(b, k))
        for a, b in zip(report.features, rows.features, strict=True)
        for k in ("psi", "js_distance", "ks_stat", "wasserstein_norm")
        if getattr(a, k) is not None and getattr(b, k) is not None
    ]
    return {
        "segments": len(plain) + len(summarized),
        "check_s": times,
        "write_s": statistics.median(plain),
        "write_with_summary_s": statistics.median(summarized),
        "same_drifted": report.drifted_features == rows.drifted_features,
        "max_abs_diff": max(gaps),
    }


# -- parent ----------------------------------------------------------------------------------------
def run_child(tool: str, rows: int, repeats: int, *, memory: bool = False) -> dict[str, Any]:
    env = dict(os.environ)
    if memory:
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    env.setdefault("DO_NOT_TRACK", "1")  # Evidently's telemetry: nothing leaves the machine
    cmd = [sys.executable, __file__, "--child", tool, "--rows", str(rows), "--repeats", str(repeats)]
    cmd += ["--memory"] if memory else []
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{tool} at {rows:,} rows failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1e3:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 rows, 1 repeat (about a minute)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="rows per table (default 100000 1000000)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed Evidently calls per size (default 3; Keel: at least 5)"
    )
    parser.add_argument("--no-json", action="store_true", help="print the table only")
    parser.add_argument("--child", choices=["keel", "evidently"], help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.rows, args.repeats, args.memory)))
        return
    sizes = args.sizes or ([20_000] if args.quick else [100_000, 1_000_000])
    repeats = args.repeats or (1 if args.quick else 3)
    machine = machine_info()
    from importlib import metadata

    machine["packages"] = {p: _version(metadata, p) for p in PACKAGES}
    started = time.perf_counter()
    results = []
    for i, rows in enumerate(sizes):
        order = ["keel", "evidently"] if i % 2 == 0 else ["evidently", "keel"]  # load bursts hit both
        got = {}
        mem = {}
        for tool in order:
            print(f"{tool} at {rows:,} rows x 20 columns, {repeats} timed repeat(s) + 1 memory run ...", flush=True)
            got[tool] = run_child(tool, rows, repeats)
            mem[tool] = run_child(tool, rows, 1, memory=True)
        keel, ev = got["keel"], got["evidently"]
        check, full, ev_s = (
            statistics.median(keel["check_s"]),
            statistics.median(keel["full_s"]),
            statistics.median(ev["run_s"]),
        )
        results.append(
            {
                "rows": rows,
                "keel_check_s": check,
                "keel_full_s": full,
                "keel_logged_check_s": statistics.median(keel["logged"]["check_s"]),
                "keel_logged": keel["logged"],
                "evidently_s": ev_s,
                "ratio_check": ev_s / check,
                "ratio_full": ev_s / full,
                "keel_check_mib": mem["keel"]["check_mib"],
                "keel_full_mib": mem["keel"]["full_mib"],
                "evidently_mib": mem["evidently"]["run_mib"],
                "keel_process_peak_mib": mem["keel"]["process_peak_mib"],
                "evidently_process_peak_mib": mem["evidently"]["process_peak_mib"],
                "profile_json_bytes": keel["profile_json_bytes"],
                "keel_drifted": keel["drifted"],
                "evidently_drifted": ev["drifted"],
                "expected_drifted": sorted(DRIFTED),
                "same_decisions": keel["drifted"] == ev["drifted"],
                "wasserstein_max_abs_diff": _wasserstein_gap(keel["columns"], ev["columns"]),
                "keel": keel,
                "evidently": ev,
                "memory_runs": mem,
            }
        )
    print_table(results, machine, repeats, args.quick)
    if not args.no_json:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / "drift.json"
        payload = {
            "benchmark": "drift",
            "quick": args.quick,
            "repeats": repeats,
            "machine": machine,
            "load_avg_at_end": list(os.getloadavg()),
            "wall_s": time.perf_counter() - started,
            "drift_injected": DRIFTED,
            "not_drift": NOT_DRIFTED,
            "results": results,
        }
        path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"results written to {path}")


def _wasserstein_gap(keel: dict[str, Any], evidently: dict[str, Any]) -> float | None:
    """Largest |Keel - Evidently| normed Wasserstein distance over the columns both measure so
    (Keel from its stored profile, Evidently from the raw rows)."""
    gaps = [
        abs(keel[c]["wasserstein_norm"] - e["value"])
        for c, e in evidently.items()
        if "Wasserstein" in e["method"] and keel.get(c, {}).get("wasserstein_norm") is not None
    ]
    return max(gaps) if gaps else None


def _version(metadata: Any, package: str) -> str | None:
    try:
        return str(metadata.version(package))
    except metadata.PackageNotFoundError:
        return None


def print_table(results: list[dict[str, Any]], machine: dict[str, Any], repeats: int, quick: bool) -> None:
    pk = machine["packages"]
    src = machine["keel_source"]
    print()
    print(
        f"drift: {machine['date']}, {machine['cpus_usable']} usable CPUs ({machine['cpu_model']}), Python {machine['python']}, "
        f"keel {pk['keelml']} at {src['commit']}{' + uncommitted src changes' if src['src_dirty'] else ''}, "
        f"Evidently {pk['evidently']}, pandas {pk['pandas']}, numpy {pk['numpy']}, "
        f"threads {machine['threads']}, medians of {repeats} Evidently and {max(repeats, 5)} Keel calls"
        f"{' (quick)' if quick else ''}"
    )
    head = (
        f"{'rows x 20 cols':>14}  {'Keel check':>10}  {'Keel full':>10}  {'Evidently':>10}  {'Ev/check':>9}  {'Ev/full':>8}  "
        f"{'MiB check':>9}  {'MiB full':>8}  {'MiB Ev':>7}  same drifted set"
    )
    print(head)
    from _common import fmt_ratio, fmt_seconds, verdict

    for r in results:
        # Goals: issue 4's ratios (check >= 50x, full >= 10x Evidently) and issue 17's 0.2 s check at 1M rows.
        goals = [
            f"Ev/check {verdict(r['ratio_check'], 50, lower_is_better=False, fmt=fmt_ratio)}",
            f"Ev/full {verdict(r['ratio_full'], 10, lower_is_better=False, fmt=fmt_ratio)}",
        ]

        print(
            f"{r['rows']:>14,}  {fmt_s(r['keel_check_s']):>10}  {fmt_s(r['keel_full_s']):>10}  {fmt_s(r['evidently_s']):>10}  "
            f"{r['ratio_check']:>8.0f}x  {r['ratio_full']:>7.0f}x  {r['keel_check_mib']:>9.1f}  "
            f"{r['keel_full_mib']:>8.1f}  {r['evidently_mib']:>7.0f}  {r['same_decisions']}  {'; '.join(goals)}"
        )
    for r in results:
        # Issue 17's goal: a monitor's check of 1M rows x 20 columns in 0.2 s. A monitor checks its
        # log, whose segments were summarized as they were written: that check has the goal.
        lg = r["keel_logged"]
        goal = f"  {verdict(r['keel_logged_check_s'], 0.2, fmt=fmt_seconds)}" if r["rows"] >= 1_000_000 else ""
        print(
            f"  {r['rows']:,} rows logged as {lg['segments']} segments: Keel check from their summaries "
            f"{fmt_s(r['keel_logged_check_s'])}{goal} (from rows: {fmt_s(r['keel_check_s'])}); same drifted set "
            f"{lg['same_drifted']}, largest |difference| {lg['max_abs_diff']:.1e}; a segment write "
            f"{fmt_s(lg['write_with_summary_s'])} with its summary, {fmt_s(lg['write_s'])} without"
        )
    for r in results:
        print(
            f"  {r['rows']:,} rows: Keel drifted {r['keel_drifted']}; Evidently drifted {r['evidently_drifted']}; "
            f"injected {r['expected_drifted']}; normed Wasserstein, largest |Keel - Evidently| "
            f"{r['wasserstein_max_abs_diff']:.1e}"
        )


if __name__ == "__main__":
    main()
