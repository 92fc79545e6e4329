"""`keel explain NAME@ALIAS FILE`: attributions and reason codes for the rows of a file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from keel.cli._common import JSON_OPTION, err, escape, open_workspace, out, print_json, table
from keel.cli.models import DROP_EXTRA_OPTION, read_rows, without_extra_columns
from keel.errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

    from keel.entities import ModelVersion
    from keel.workspace.facade import Workspace


def explain(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ..., metavar="NAME@ALIAS", help="The model version: credit-risk@champion, credit-risk@3."
    ),
    path: Path = typer.Argument(
        ..., metavar="FILE", help="Rows to explain: CSV, TSV, Parquet or JSON records.", exists=True, dir_okay=False
    ),
    top: int = typer.Option(3, "--top", min=1, max=50, help="Reason codes per row."),
    target: str | None = typer.Option(
        None, "--target", help="The class to explain (default: the positive / last class)."
    ),
    method: str = typer.Option("auto", "--method", help="auto, tree, linear or permutation."),
    limit: int = typer.Option(20, "--limit", min=1, help="Rows shown (all are explained with --json)."),
    lime: bool = typer.Option(
        False, "--lime", help="LIME instead of SHAP: local weights and a stability score over 5 seeds."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="LIME's seed."),
    text_column: str | None = typer.Option(
        None, "--text-column", help="With --lime: explain the words of this text column."
    ),
    drop_extra: bool = DROP_EXTRA_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Why a model predicts what it does: per-row attributions (SHAP) and reason codes, or LIME."""
    ws = open_workspace(ctx)
    info = ws.models.get(ref)
    rows = read_rows(path, info.signature)
    if drop_extra:
        rows = without_extra_columns(rows, info.signature, info.ref)
    if text_column is not None and not lime:
        raise InvalidInputError("--text-column goes with --lime (SHAP explains text columns per word already)")
    if lime:
        _lime(
            ws,
            info,
            rows,
            target=_typed(target, info),
            top=top,
            seed=seed,
            limit=limit,
            as_json=as_json,
            text_column=text_column,
        )
        return
    with err().status(f"Explaining {len(rows):,} rows with {info.ref}..."):
        result = ws.explain(info.ref, rows, method=method, target=_typed(target, info), top=top)
    if as_json:
        print_json(result.to_dict())
        return
    e = result.explanation
    console = out()
    console.print(
        f"[bold]{escape(result.model)}[/]: {escape(e.method)}, attributions in {e.space}"
        + (f" toward {escape(str(e.target))}" if e.target is not None else "")
    )
    for i, prediction in enumerate(result.predictions[:limit]):
        console.print(
            f"row {i + 1}: predicted [bold]{escape(str(prediction))}[/] (output {e.outputs[i]:.3f} = base {e.base_values[i]:.3f} + attributions)"
        )
        for reason in result.reasons[i]:
            console.print(f"  - {escape(reason['text'])}")
    t = table("feature", "mean |attribution|>")
    for feature, value in list(e.importance().items())[:10]:
        t.add_row(escape(feature), f"{value:.4f}")
    console.print(t)


def _lime(
    ws: Workspace,
    info: ModelVersion,
    rows: pd.DataFrame,
    *,
    target: Any,
    top: int,
    seed: int,
    limit: int,
    as_json: bool,
    text_column: str | None,
) -> None:
    import dataclasses

    results = [
        ws.explain_lime(info.ref, rows.iloc[[i]], target=target, top=top, seed=seed, text_column=text_column)
        for i in range(min(len(rows), limit))
    ]
    if as_json:
        print_json([dataclasses.asdict(r) for r in results])
        return
    for i, r in enumerate(results):
        shown = ", ".join(f"{escape(f)} {w:+.3f}" for f, w in list(r.weights.items())[:top])
        out().print(
            f"row {i + 1}: LIME toward {escape(str(r.target))} (stability {r.stability:.2f}, fit R2 {r.score:.2f}): {shown}"
        )


def _typed(target: str | None, info: object) -> object:
    """'1' means the class 1 when the classes are numbers."""
    classes = getattr(getattr(info, "signature", None), "classes", None) or ()
    for c in classes:
        if str(c) == target:
            return c
    return target


def explain_dataset(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="NAME@ALIAS"),
    dataset: str = typer.Argument(..., metavar="DATASET", help="The dataset version whose rows to explain."),
    output: str | None = typer.Option(
        None, "--output", help="Dataset name for the attributions (default: DATASET-explained)."
    ),
    chunk_rows: int = typer.Option(
        2_000, "--chunk-rows", min=1, help="Rows per chunk (per Ray task with KEEL_EXECUTOR=ray)."
    ),
    background: bool = typer.Option(False, "--background", help="Queue the job for keel worker / keel serve instead."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Explain every row of a dataset version as a job; the attributions become a dataset version."""
    from keel.cli.jobs import dataset_job
    from keel.workspace.payloads import BatchExplainPayload

    ws = open_workspace(ctx)
    ws.models.get(ref)
    ws.datasets.get(dataset)
    payload = BatchExplainPayload(ref, dataset=dataset, output=output, chunk_rows=chunk_rows)
    dataset_job(ws, payload, background=background, as_json=as_json, verb="Explained", what="batch explanation")
