"""Act 14, Edge: two digit recognisers built for a microcontroller. scikit-learn's digits (8x8 pixel
images with intensities 0-16, as a small camera or sensor would give them) train a random forest
and a small neural network; each is registered, compiled to self-contained C (the forest with int16
tables, the network with int8 weights), sized on a Cortex-M4, checked against the Python model, and
run on an emulated Cortex-M4 when QEMU is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keel.demo._shared import INDENT, SEED, step

if TYPE_CHECKING:
    from rich.console import Console

    from keel.workspace import Workspace

__all__ = ["EdgeResult", "build_for_the_edge"]

MCU = "cortex-m4"


@dataclass(frozen=True)
class EdgeResult:
    """What the act built, for callers and tests: per model, its build id and report."""

    builds: dict[str, dict[str, Any]]  # 'digits-forest@1' -> {'id', 'quantize', 'report'}


def _models() -> tuple[Any, Any, Any]:
    """The digits as a frame, and a forest and a network trained on them (seeded)."""
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    digits = load_digits(as_frame=True)
    frame = digits.frame.rename(columns={"target": "digit"})
    X, y = frame.drop(columns=["digit"]), frame["digit"]
    forest = RandomForestClassifier(n_estimators=10, max_depth=8, random_state=SEED).fit(X, y)
    network = make_pipeline(MinMaxScaler(), MLPClassifier((32,), max_iter=600, random_state=SEED)).fit(X, y)
    return frame, forest, network


def _size(report: dict[str, Any]) -> str:
    size = report.get("size") or {}
    if size.get("flash_bytes") is None:
        return f"size not measured ({report.get('size_skipped') or 'no Arm toolchain'})"
    return (
        f"{size['flash_bytes']:,} B flash of {size.get('flash_limit_bytes', 0) // 1024:,} KB, "
        f"{size.get('ram_bytes', 0):,} B RAM, {size.get('stack_bytes', 0):,} B stack"
    )


def _emulated(report: dict[str, Any]) -> str:
    if report.get("qemu_class_agreement") is None:
        return "not emulated (QEMU not installed)"
    return f"QEMU {100 * report['qemu_class_agreement']:.1f}% on {report.get('qemu_rows', 0):,} rows"


def build_for_the_edge(ws: Workspace, console: Console, number: int = 14) -> EdgeResult:
    """Register the forest and the network, build each to C for a Cortex-M4 and print its report."""
    frame, forest, network = _models()
    X = frame.drop(columns=["digit"])
    with console.status("Building digit recognisers for a Cortex-M4..."):
        dataset = ws.datasets.add("digits", frame, description="scikit-learn's digits: 8x8 images, 0-16")
        made: dict[str, dict[str, Any]] = {}
        for name, model, quantize in (("digits-forest", forest, "int16"), ("digits-mlp", network, "int8")):
            version = ws.models.register(name, model, trained_on=dataset, X=X)
            build = ws.edge.build(version.ref, target="c", quantize=quantize, mcu=MCU)
            made[version.ref] = {"id": build.id, "quantize": quantize, "report": build.report}
    console.print(
        f"{step(number, 'Edge')}digit recognisers from {dataset.ref} ({len(frame):,} 8x8 images) as C for a {MCU}:"
    )
    for ref, info in made.items():
        report = info["report"]
        agreement = report.get("class_agreement")
        agrees = f"{100 * agreement:.1f}% agree with Python" if agreement is not None else "agreement unknown"
        console.print(
            f"{INDENT}{ref} {info['quantize']}: {_size(report)}; {agrees}; {_emulated(report)} (build #{info['id']})"
        )
    return EdgeResult(builds=made)
