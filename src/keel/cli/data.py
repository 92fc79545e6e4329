"""`keel data`: add, list, show and diff dataset versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from keel.cli._common import (
    JSON_OPTION,
    err,
    number,
    open_workspace,
    out,
    parse_tags,
    print_json,
    size,
    styled,
    table,
    to_jsonable,
    when,
)
from keel.entities import DatasetVersion
from keel.errors import NotFoundError

app = typer.Typer(help="Versioned datasets: add, list, show, diff.", no_args_is_help=True)

# diff: a column whose distribution moved more than this is flagged (PSI > 0.2 is the usual
# "significant shift"; a Jensen-Shannon distance above 0.1 is a clearly visible change)
_SHIFT = {"psi": 0.2, "js_distance": 0.1}


@app.command("add")
def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Dataset name, e.g. credit."),
    path: Path = typer.Argument(..., exists=True, help="A .csv, .tsv or .parquet file, or a folder of files."),
    description: str = typer.Option("", "--description", "-d", help="What this version holds."),
    tag: list[str] | None = typer.Option(None, "--tag", "-t", help="KEY=VALUE, repeatable."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Store a file or folder as a new immutable version (identical content gives the stored version back)."""
    tags = parse_tags(tag)
    ws = open_workspace(ctx, create=True)
    try:
        known = {v.digest for v in ws.datasets.versions(name)}
    except NotFoundError:
        known = set()
    with err().status(f"Adding {path} as {name}..."):
        version = ws.datasets.add(name, path, description=description, tags=tags)
    if as_json:
        print_json(version)
        return
    what = "files" if version.kind == "files" else "rows"
    if version.digest in known:
        head = f"Unchanged: {version.ref} already holds this content"
    else:
        head = f"Added [bold]{version.ref}[/]"  # refs are names and numbers: no markup inside
    out().print(
        f"{head}  {version.digest[:19]}  {version.num_rows:,} {what}, {len(version.columns)} columns, "
        f"{size(version.size_bytes)}"
    )


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Every dataset with its newest version."""
    summaries = open_workspace(ctx).datasets.list()
    if as_json:
        print_json(summaries)
        return
    if not summaries:
        out().print("No datasets yet: keel data add NAME PATH")
        return
    t = table("name", "latest>", "versions>", "updated", "description")
    for s in summaries:
        t.add_row(s.name, f"@{s.latest_version}", str(s.num_versions), when(s.updated_at, short=True), s.description)
    out().print(t)


@app.command("show")
def show(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME (newest), NAME@VERSION or NAME@HASH-PREFIX."),
    as_json: bool = JSON_OPTION,
) -> None:
    """A version's metadata, schema and column profile."""
    ws = open_workspace(ctx)
    version = ws.datasets.get(ref)
    models = [m.ref for m in ws.models.trained_on(version)]
    if as_json:
        print_json({**to_jsonable(version), "models": models})
        return
    console = out()
    console.print(f"[bold]{version.ref}[/]")
    lines = [
        ("digest", version.digest),
        (
            "kind",
            f"{version.kind}, {version.num_rows:,} {'files' if version.kind == 'files' else 'rows'}, {size(version.size_bytes)}",
        ),
        ("created", f"{when(version.created_at)} by {version.author}"),
        ("description", version.description),
        ("tags", ", ".join(f"{k}={v}" for k, v in version.tags.items())),
        ("parent", f"{version.name}@{version.parent_version}" if version.parent_version else ""),
        ("models", ", ".join(models)),
    ]
    for label, value in lines:
        if value:
            console.print(f"  {label:<12}{value}", markup=False)
    if version.kind == "files":
        _show_files(version)
        return
    profile = version.profile.get("columns", {})
    t = table("column", "type", "missing>", "summary", title="Schema and profile")
    for col in version.columns:
        entry = profile.get(col.name, {})
        t.add_row(col.name, _short_type(col.type), number(entry.get("missing")), _summary(entry))
    console.print(t)


def _short_type(arrow_type: str) -> str:
    if arrow_type.startswith("dictionary"):
        return "category"
    return {"large_string": "string", "large_utf8": "string", "utf8": "string"}.get(arrow_type, arrow_type)


def _summary(entry: dict[str, Any]) -> str:
    kind = entry.get("kind")
    if kind == "numeric" and "mean" in entry:
        return f"mean {number(entry['mean'])}  range {number(entry['min'])} .. {number(entry['max'])}"
    if kind == "categorical":
        top = ", ".join(f"{t['value']} ({t['count']:,})" for t in entry.get("top", [])[:3])
        more = entry.get("distinct", 0) - 3
        return f"{entry.get('distinct', 0)} values: {top}" + (", ..." if more > 0 else "")
    if kind == "boolean":
        return f"true {entry.get('true', 0):,}  false {entry.get('false', 0):,}"
    if kind == "datetime" and "min" in entry:
        return f"{entry['min']} .. {entry['max']}"
    return ""


def _show_files(version: DatasetVersion) -> None:
    profile = version.profile
    console = out()
    console.print(
        f"  {'files':<12}{profile.get('num_files', version.num_rows):,}, {size(profile.get('total_bytes', 0))}"
    )
    exts = ", ".join(f"{k} ({v})" for k, v in profile.get("extensions", {}).items())
    if exts:
        console.print(f"  {'extensions':<12}{exts}", markup=False)
    folders = ", ".join(f"{k} ({v})" for k, v in list(profile.get("folders", {}).items())[:10])
    if folders:
        console.print(f"  {'folders':<12}{folders}", markup=False)


@app.command("diff")
def diff(
    ctx: typer.Context,
    a: str = typer.Argument(..., help="The earlier version, e.g. credit@1."),
    b: str = typer.Argument(..., help="The later version, e.g. credit@2."),
    as_json: bool = JSON_OPTION,
) -> None:
    """How version B differs from version A: schema, rows, and each column's distribution."""
    ws = open_workspace(ctx)
    with err().status(f"Comparing {a} and {b}..."):
        result = ws.datasets.diff(a, b)
    if as_json:
        print_json(result)
        return
    console = out()
    console.print(
        f"[bold]{result.a} -> {result.b}[/]  rows {result.rows_a:,} -> {result.rows_b:,} ({result.rows_delta:+,})"
    )
    if result.added_columns:
        console.print(f"  added columns    {', '.join(result.added_columns)}", markup=False)
    if result.removed_columns:
        console.print(f"  removed columns  {', '.join(result.removed_columns)}", markup=False)
    for column, type_a, type_b in result.type_changes:
        console.print(f"  type changed     {column}: {_short_type(type_a)} -> {_short_type(type_b)}", markup=False)
    if not result.schema_changed:
        console.print("  schema unchanged")
    t = table("column", "kind", "statistic", "value>", "shift", "details")
    for change in result.columns:
        flagged = change.value == change.value and change.value > _SHIFT.get(change.statistic, float("inf"))
        t.add_row(
            change.name,
            change.kind,
            change.statistic,
            number(change.value),
            styled("yes", "bold yellow") if flagged else "",
            _change_details(change.kind, change.details),
        )
    if result.columns:
        console.print(t)


def _change_details(kind: str, details: dict[str, Any]) -> str:
    if kind == "numeric" and "mean_a" in details:
        return f"mean {number(details['mean_a'])} -> {number(details['mean_b'])}"
    parts = []
    if details.get("new_categories"):
        parts.append("new: " + ", ".join(map(str, details["new_categories"][:3])))
    if details.get("missing_categories"):
        parts.append("gone: " + ", ".join(map(str, details["missing_categories"][:3])))
    return "; ".join(parts) or str(details.get("note", ""))
