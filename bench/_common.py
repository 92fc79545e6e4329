"""Shared helpers for the Keel-vs-MLflow benchmarks: arguments, timing, machine info, output.

Each benchmark runs both tools in one process, on fresh SQLite stores in temporary folders,
alternating which tool goes first from one repeat to the next so that a burst of load on the
shared machine hits both sides alike. Figures are medians over repeats; a ratio is
MLflow time / Keel time, computed from the medians of the same run.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RATIO_GOAL = 10.0  # Keel >= 10x faster than MLflow on each row of tracking.py and registry.py (issue 1)
PACKAGES = ("keelml", "mlflow", "sqlalchemy", "alembic", "pandas", "numpy", "scikit-learn", "skops", "pyarrow")


def quiet_mlflow() -> None:
    """Keep MLflow offline and quiet; call before `import mlflow`.

    Telemetry is off so MLflow spends no time on a background upload that cannot reach the
    network here; INFO lines ("Created version '3' of model ...") are hidden, not skipped.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    for name in ("mlflow", "alembic", "sqlalchemy", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="mlflow")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    if "mlflow" in sys.modules:  # MLflow's own switch for its event lines (eprint, "Created version ...")
        from mlflow.utils.logging_utils import disable_logging

        disable_logging()


def verdict(
    value: float | None, goal: float | None, *, lower_is_better: bool = True, fmt: Callable[[float], str] | None = None
) -> str:
    """The goal beside a figure and whether the figure meets it: "goal <= 50.0 ms: met", "goal >= 10x: missed".

    Every benchmark prints this next to each figure that has a goal (issue 17), so a miss reads as
    "missed" on the line itself rather than being left to the reader's arithmetic on a ratio.
    `fmt` formats the goal as the figure is printed (`fmt_seconds`, `fmt_ratio`, `fmt_percent`, ...;
    default: `{:g}`). No goal gives "", so a caller can pass `GOALS.get(size)` as it is; a figure
    that was not measured (None or NaN) gives "...: not measured", never "met".
    """
    if goal is None:
        return ""
    shown = (fmt or _fmt_plain)(goal)
    head = f"goal {'<=' if lower_is_better else '>='} {shown}"
    if value is None or math.isnan(value):
        return f"{head}: not measured"
    met = value <= goal if lower_is_better else value >= goal
    return f"{head}: {'met' if met else 'missed'}"


def is_missed(text: str) -> bool:
    """Whether a line built with `verdict` reports a missed goal (for a script's closing "goals missed: ...")."""
    return ": missed" in text


def fmt_seconds(seconds: float) -> str:
    """A duration in three significant digits and the unit a person reads it in: 10 s, 1.23 s, 50 ms, 4.8 ms, 80 us."""
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} us"


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:g}x"


def fmt_percent(share: float) -> str:
    """A share in [0, 1] as a percentage: 0.995 -> 99.5 %."""
    return f"{share * 100:g} %"


def _fmt_plain(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1000 and float(x).is_integer() else f"{x:g}"


def parse_args(description: str, sizes: dict[str, tuple[int, int]], repeats: tuple[int, int]) -> argparse.Namespace:
    """--quick picks the first of each (quick, full) pair; every size can be set by hand."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small counts for a smoke test (seconds, not minutes)")
    parser.add_argument(
        "--repeats", type=int, default=None, help=f"repeats per benchmark (default {repeats[1]}, quick {repeats[0]})"
    )
    for name, (quick, full) in sizes.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=int, default=None, help=f"default {full}, quick {quick}"
        )
    parser.add_argument("--no-json", action="store_true", help="print the table only")
    args = parser.parse_args()
    pick = 0 if args.quick else 1
    if args.repeats is None:
        args.repeats = repeats[pick]
    for name, pair in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, pair[pick])
    return args


@contextmanager
def stopwatch(into: list[float]) -> Iterator[None]:
    """Append the wall time of the block (seconds) to `into`; garbage collected before, not during."""
    gc.collect()
    gc.disable()
    start = time.perf_counter()
    try:
        yield
    finally:
        into.append(time.perf_counter() - start)
        gc.enable()


def time_calls(fn: Callable[[], Any], n: int) -> list[float]:
    """Seconds per call of `fn`, called `n` times in a row: garbage collected once before the
    series and the collector off during it, as `timeit` does. (A full collection before every
    call would also evict the CPU caches each time, which taxes a 1 ms call far more than a
    10 ms one.)"""
    out: list[float] = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(n):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    finally:
        gc.enable()
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def machine_info() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "keel_source": _keel_source(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "cpu_model": cpu_model,
        "load_avg_at_start": load,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "packages": versions,
        "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
    }


def _keel_source() -> dict[str, Any]:
    """The commit of the keel checkout measured, and whether src/ had uncommitted changes."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=repo, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "src_dirty": None}
    if head.returncode != 0:
        return {"commit": None, "src_dirty": None}
    return {"commit": head.stdout.strip(), "src_dirty": bool(dirty.stdout.strip())}


class Report:
    """Rows of (benchmark, keel seconds, MLflow seconds) and their ratio; prints and saves them."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        self.name = name
        self.args = args
        self.rows: list[dict[str, Any]] = []
        self.checks: dict[str, Any] = {}
        self.machine = machine_info()
        self.started = time.perf_counter()

    def add(self, label: str, keel: list[float], mlflow: list[float], *, unit: str, note: str = "") -> dict[str, Any]:
        k, m = median(keel), median(mlflow)
        row: dict[str, Any] = {
            "benchmark": label,
            "unit": unit,
            "keel_s": k,
            "mlflow_s": m,
            "ratio": m / k if k > 0 else float("inf"),
            "keel_all_s": keel,
            "mlflow_all_s": mlflow,
            "note": note,
        }
        self.rows.append(row)
        print(
            f"  {label}: keel {_fmt(k)}  mlflow {_fmt(m)}  ratio {row['ratio']:.1f}x "
            f"({verdict(row['ratio'], RATIO_GOAL, lower_is_better=False, fmt=fmt_ratio)})",
            flush=True,
        )
        return row

    def print_table(self) -> None:
        info = self.machine
        print()
        src = info["keel_source"]
        print(
            f"{self.name}: {info['date']}, {info['cpus_usable']} usable CPUs ({info['cpu_model']}), "
            f"Python {info['python']}, keel {info['packages']['keelml']} at {src['commit']}"
            f"{' + uncommitted src changes' if src['src_dirty'] else ''}, MLflow {info['packages']['mlflow']}, "
            f"repeats={self.args.repeats}{' (quick)' if self.args.quick else ''}"
        )
        width = max(len(r["benchmark"]) for r in self.rows)
        print(f"{'benchmark':<{width}}  {'unit':<10} {'Keel':>10} {'MLflow':>10} {'MLflow/Keel':>12}")
        for r in self.rows:
            flag = verdict(r["ratio"], RATIO_GOAL, lower_is_better=False, fmt=fmt_ratio)
            print(
                f"{r['benchmark']:<{width}}  {r['unit']:<10} {_fmt(r['keel_s']):>10} {_fmt(r['mlflow_s']):>10} "
                f"{r['ratio']:>11.1f}x  {flag}"
            )
        for key, value in self.checks.items():
            print(f"check {key}: {value}")

    def save(self) -> Path | None:
        if self.args.no_json:
            return None
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.name}.json"
        payload = {
            "benchmark": self.name,
            "quick": self.args.quick,
            "config": {k: v for k, v in vars(self.args).items() if k not in ("no_json",)},
            "machine": self.machine,
            "load_avg_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "wall_s": time.perf_counter() - self.started,
            "rows": self.rows,
            "checks": self.checks,
            "argv": sys.argv,
        }
        path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"results written to {path}")
        return path


def _fmt(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} us"
