"""`keel models`: list, show, alias, history and predict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from keel.cli._common import (
    JSON_OPTION,
    err,
    fitting,
    number,
    open_workspace,
    out,
    print_json,
    size,
    table,
    to_jsonable,
    when,
)
from keel.entities import ModelVersion, Signature
from keel.errors import InvalidInputError, UnsafeLoadError

if TYPE_CHECKING:
    import pandas as pd

    from keel.workspace import Workspace

app = typer.Typer(help="The model registry: list, show, alias, history, predict.", no_args_is_help=True)

_SHOWN_METRICS = 3
_SHOWN_PREDICTIONS = 20  # rows printed without --output; the rest are counted
DROP_EXTRA_OPTION = typer.Option(
    True,
    "--drop-extra/--no-drop-extra",
    help="Drop the file's columns the model does not take, with a note (default), or refuse the file.",
)


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Every registered model with its newest version and aliases."""
    registered = open_workspace(ctx).models.list()
    if as_json:
        print_json(registered)
        return
    if not registered:
        out().print("No models yet: register one with ws.models.register(...) or run keel demo")
        return
    t = table("name", "latest>", "versions>", "aliases", "updated", "description")
    for m in registered:
        aliases = ", ".join(f"{a} -> @{v}" for a, v in m.aliases.items())
        t.add_row(
            m.name, f"@{m.latest_version}", str(m.num_versions), aliases, when(m.updated_at, short=True), m.description
        )
    out().print(t)


@app.command("show")
def show(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ..., metavar="NAME", help="A model name (all versions), or NAME@VERSION / NAME@ALIAS (one version)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """A model's versions, aliases and lineage; with @VERSION or @ALIAS, one version in detail."""
    ws = open_workspace(ctx)
    if "@" in ref:
        _show_version(ws, ws.models.get(ref), as_json=as_json)
        return
    versions = ws.models.versions(ref)  # NotFoundError with a did-you-mean for an unknown name
    registered = next((m for m in ws.models.list() if m.name == ref), None)
    lineages = {v.version: ws.models.lineage(v) for v in versions}
    if as_json:
        summary = to_jsonable(registered) if registered is not None else {"name": ref}
        summary["versions"] = [{**to_jsonable(v), "lineage": to_jsonable(lineages[v.version])} for v in versions]
        print_json(summary)
        return
    console = out()
    aliases = registered.aliases if registered is not None else {}
    console.print(f"[bold]{ref}[/]  {len(versions)} version{'s' if len(versions) != 1 else ''}")
    if registered is not None and registered.description:
        console.print(f"  {registered.description}", markup=False)
    if aliases:
        console.print("  aliases  " + ", ".join(f"{a} -> {ref}@{v}" for a, v in aliases.items()))
    trained_on = {v.version: ", ".join(lineages[v.version].datasets) or "-" for v in versions}
    fixed = [4, max(len(", ".join(v.aliases)) for v in versions), 11, 7, 8, max(map(len, trained_on.values()))]
    keys = fitting(_metric_keys(versions), fixed)
    t = table("version>", "aliases", "created", "flavor", "run", "trained on", *(f"{k}>" for k in keys))
    for v in versions:
        run_id = lineages[v.version].run_id
        t.add_row(
            f"@{v.version}",
            ", ".join(v.aliases),
            when(v.created_at, short=True),
            v.flavor,
            "-" if run_id is None else run_id[:8],
            trained_on[v.version],
            *(number(v.metrics.get(k)) for k in keys),
        )
    console.print(t)


def _metric_keys(versions: list[ModelVersion]) -> list[str]:
    seen: dict[str, int] = {}
    for v in versions:
        for k in v.metrics:
            seen[k] = seen.get(k, 0) + 1
    return sorted(seen, key=lambda k: (-seen[k], k))[:_SHOWN_METRICS]


def _show_version(ws: Workspace, version: ModelVersion, *, as_json: bool) -> None:
    lineage = ws.models.lineage(version)
    if as_json:
        print_json({**to_jsonable(version), "lineage": to_jsonable(lineage)})
        return
    console = out()
    console.print(f"[bold]{version.ref}[/]  {version.flavor}, {size(version.size_bytes)}")
    run = "" if lineage.run_id is None else f"{lineage.run_id} (experiment {lineage.experiment})"
    trained_on = ", ".join(
        f"{d} ({digest[:19]})" for d, digest in zip(lineage.datasets, lineage.dataset_digests, strict=False)
    )
    lines = [
        ("digest", version.digest),
        ("aliases", ", ".join(version.aliases)),
        ("created", f"{when(version.created_at)} by {version.author}"),
        ("description", version.description),
        ("run", run),
        ("trained on", trained_on),
        ("metrics", "  ".join(f"{k} {number(v)}" for k, v in sorted(version.metrics.items()))),
        ("tags", ", ".join(f"{k}={v}" for k, v in version.tags.items())),
        ("edge builds", ", ".join(f"#{b.id} {b.target} {b.quantize} {b.mcu}" for b in ws.edge.list(version.ref))),
    ]
    for label, value in lines:
        if value:
            console.print(f"  {label:<12}{value}", markup=False)
    if version.signature is not None:
        _print_signature(version.signature)
    else:
        console.print("  no signature: predict input is not checked")


def _print_signature(signature: Signature) -> None:
    classes = "" if not signature.classes else f", classes {', '.join(map(str, signature.classes))}"
    out().print(f"  {'signature':<12}{len(signature.inputs)} inputs -> {signature.output}{classes}", markup=False)
    t = table("input", "type", "categories")
    for c in signature.inputs:
        cats = "" if not c.categories else ", ".join(c.categories[:6]) + (", ..." if len(c.categories) > 6 else "")
        t.add_row(c.name, c.type, cats)
    out().print(t)


@app.command("alias")
def alias(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The model name."),
    alias_name: str = typer.Argument(..., metavar="ALIAS", help="e.g. champion."),
    version: int = typer.Argument(..., min=1, help="The version the alias should point at."),
    reason: str = typer.Option("", "--reason", "-r", help="Why; kept in the alias history."),
) -> None:
    """Point ALIAS at VERSION (moving it if it pointed elsewhere); the move is recorded."""
    event = open_workspace(ctx).models.set_alias(name, alias_name, version=version, reason=reason)
    if event.from_version is None:
        out().print(f"{alias_name} -> [bold]{name}@{version}[/] (new alias)")
    elif event.from_version == version:
        out().print(f"{alias_name} already pointed at [bold]{name}@{version}[/]")
    else:
        out().print(f"{alias_name}: {name}@{event.from_version} -> [bold]{name}@{version}[/]")


@app.command("history")
def history(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The model name."),
    alias_name: str | None = typer.Option(None, "--alias", "-a", help="Only the moves of this alias."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Every move of the model's aliases, oldest first: who, when, from, to, why."""
    events = open_workspace(ctx).models.alias_history(name, alias_name)
    if as_json:
        print_json(events)
        return
    if not events:
        out().print(f"No alias moves for {name}" + (f" alias {alias_name!r}" if alias_name else ""), markup=False)
        return
    t = table("at", "alias", "from>", "to>", "author", "reason")
    for e in events:
        t.add_row(
            when(e.at),
            e.alias,
            "-" if e.from_version is None else f"@{e.from_version}",
            "removed" if e.to_version is None else f"@{e.to_version}",
            e.author,
            e.reason,
        )
    out().print(t)


@app.command("predict")
def predict(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="NAME@ALIAS", help="The model: NAME@ALIAS, NAME@VERSION or NAME (newest)."),
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="Input rows: .csv, .tsv, .parquet, .json (records) or .jsonl."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", dir_okay=False, help="Write every prediction here (.csv, .parquet, .json or .jsonl)."
    ),
    trusted: bool = typer.Option(
        False, "--trusted", help="Allow loading a pickled model (only if you trust its source)."
    ),
    drop_extra: bool = DROP_EXTRA_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Predict (with class probabilities, for classifiers) for every row of FILE.

    Columns the model does not take (the target of the file it was trained on, an id) are dropped
    with a note on stderr; --no-drop-extra refuses them instead.
    """
    if output is not None:
        _writer(output)  # refuse an unknown format before the work, not after
    ws = open_workspace(ctx)
    with err().status(f"Loading {ref}..."):
        try:
            model = ws.models.load(ref, trusted=trusted)
        except UnsafeLoadError as exc:
            raise UnsafeLoadError(f"{exc} On the command line: --trusted.") from exc
        frame = read_rows(file, model.signature)
    if drop_extra:
        frame = without_extra_columns(frame, model.signature, model.ref)
    with err().status(f"Predicting {len(frame):,} rows with {model.ref}..."):
        result = model.predictions_frame(frame)
    if output is not None:
        _writer(output)(result, output)
        out().print(f"Wrote {len(result):,} predictions of {model.ref} to {output}", markup=False)
        return
    if as_json:
        records = json.loads(result.to_json(orient="records"))
        print_json({"model": model.ref, "predictions": records})
        return
    t = table(
        "row>",
        "prediction",
        *(f"{c.removeprefix('proba_')}>" for c in result.columns if c.startswith("proba_")),
        title=f"{model.ref}" + ("" if ref == model.ref else f" ({ref})"),
    )
    for i, row in enumerate(result.head(_SHOWN_PREDICTIONS).itertuples(index=False)):
        values = list(row)
        t.add_row(str(i + 1), str(values[0]), *(f"{v:.4f}" for v in values[1:]))
    out().print(t)
    if len(result) > _SHOWN_PREDICTIONS:
        out().print(f"... {len(result) - _SHOWN_PREDICTIONS:,} more rows: use --output FILE or --json for all")


def without_extra_columns(frame: pd.DataFrame, signature: Signature | None, ref: str) -> pd.DataFrame:
    """The frame without the columns the signature does not name, saying on stderr which were dropped:
    scoring the very file a model was trained on (target included) works at the first try."""
    if signature is None:
        return frame
    names = set(signature.column_names)
    extra = [str(c) for c in frame.columns if c not in names]
    if not extra:
        return frame
    err().print(
        f"note: dropped {len(extra)} column{'s' if len(extra) > 1 else ''} {ref} does not take: {', '.join(extra)} "
        "(--no-drop-extra refuses them)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return frame.drop(columns=extra)


def read_rows(path: Path, signature: Signature | None) -> pd.DataFrame:
    """The rows of a CSV/TSV/Parquet/JSON file; raises InvalidInputError for anything unreadable."""
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            # Columns the model takes as text are read as text: an id '007' must not become 7.
            text = {c.name: str for c in (signature.inputs if signature else ()) if c.type in ("string", "category")}
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=text)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".jsonl", ".ndjson"):
            return pd.read_json(path, lines=True, orient="records")
        if suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                data = data.get("records", data.get("inputs", [data]))
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise InvalidInputError(
                    f'{str(path)!r} is not JSON records: expected a list of objects, or {{"records": [...]}}'
                )
            return pd.DataFrame.from_records(data)
    except (ValueError, UnicodeDecodeError) as exc:  # pandas, pyarrow and json parse errors are ValueErrors
        if isinstance(exc, InvalidInputError):
            raise
        raise InvalidInputError(f"Cannot read {str(path)!r} as {suffix[1:]}: {exc}") from exc
    raise InvalidInputError(f"{str(path)!r}: expected a .csv, .tsv, .parquet, .json or .jsonl file")


def _writer(path: Path) -> Any:
    suffix = path.suffix.lower()
    writers = {
        ".csv": lambda df, p: df.to_csv(p, index=False),
        ".tsv": lambda df, p: df.to_csv(p, index=False, sep="\t"),
        ".parquet": lambda df, p: df.to_parquet(p, index=False),
        ".json": lambda df, p: df.to_json(p, orient="records", indent=2),
        ".jsonl": lambda df, p: df.to_json(p, orient="records", lines=True),
    }
    if suffix not in writers:
        raise typer.BadParameter(f"{str(path)!r}: write .csv, .tsv, .parquet, .json or .jsonl", param_hint="'--output'")
    return writers[suffix]
