"""`keel edge`: registered model versions compiled to small, verified C or int8 ONNX: build, list, show,
download (the zip) and run (score a CSV through the compiled library)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from keel.cli._common import JSON_OPTION, open_workspace, out, print_json, queue_job, size, table, when
from keel.entities_edge import EdgeBuild
from keel.errors import InvalidInputError

app = typer.Typer(
    help="Edge builds: model versions compiled to C99 or ONNX, verified against the Python model.", no_args_is_help=True
)


@app.command("build")
def build(
    ctx: typer.Context,
    model: str = typer.Argument(..., metavar="NAME@ALIAS", help="The model version, e.g. digits@champion or digits@3."),
    target: str = typer.Option("c", "--target", help="c (a C99 library) or onnx."),
    quantize: str = typer.Option("float32", "--quantize", help="float32, int16 (trees, C) or int8 (MLPs, ONNX)."),
    mcu: str = typer.Option("cortex-m4", "--mcu", help="The part to size it for: cortex-m4, cortex-m0 or host."),
    qemu: bool = typer.Option(True, "--qemu/--no-qemu", help="Run the build on an emulated microcontroller."),
    queue: bool = typer.Option(False, "--queue", help="Queue it as a job for keel worker / keel serve instead."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Compile a model version, verify it against the Python model on its held-out rows, and store the build."""
    ws = open_workspace(ctx)
    if queue:
        from keel.workspace.payloads import EdgeBuildPayload

        version = ws.models.get(model)  # an unknown model fails here, not in the worker
        payload = EdgeBuildPayload(version.ref, target=target, quantize=quantize, mcu=mcu, qemu=qemu)
        queue_job(ws, payload, as_json)
        return
    made = ws.edge.build(model, target=target, quantize=quantize, mcu=mcu, qemu=qemu)
    if as_json:
        print_json(made)
        return
    _print_build(made)


@app.command("list")
def list_(
    ctx: typer.Context,
    model: str | None = typer.Argument(None, metavar="[MODEL]", help="A model (digits) or a version (digits@3)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Edge builds, newest first."""
    builds = open_workspace(ctx).edge.list(model)
    if as_json:
        print_json(builds)
        return
    if not builds:
        out().print("No edge builds yet: make one with keel edge build NAME@ALIAS")
        return
    t = table("id>", "model", "target", "quantize", "mcu", "agreement>", "flash>", "created")
    for b in builds:
        flash = (b.report.get("size") or {}).get("flash_bytes")
        t.add_row(
            str(b.id),
            b.model,
            b.target,
            b.quantize,
            b.mcu,
            _share(b.report.get("class_agreement")),
            "-" if flash is None else f"{flash:,} B",
            when(b.created_at, short=True),
        )
    out().print(t)


@app.command("show")
def show(
    ctx: typer.Context,
    build_id: str = typer.Argument(..., metavar="ID", help="The build's id (keel edge list)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """One build: its model version, files and build report."""
    made = open_workspace(ctx).edge.get(build_id)
    if as_json:
        print_json(made)
        return
    _print_build(made)
    out().print(f"  {'files':<13}{', '.join(made.files)}", markup=False)
    for note in made.report.get("notes", ()):
        out().print(f"  - {note}", markup=False)


@app.command("download")
def download(
    ctx: typer.Context,
    build_id: str = typer.Argument(..., metavar="ID", help="The build's id (keel edge list)."),
    output: Path | None = typer.Option(None, "--output", "-o", dir_okay=False, help="Where to write the zip."),
) -> None:
    """Write a build's zip: the .c/.h files (or model.onnx), README.md and report.json."""
    ws = open_workspace(ctx)
    made = ws.edge.get(build_id)
    path = output or Path(f"{made.model.replace('@', '-')}-edge-{made.id}.zip")
    path.write_bytes(ws.edge.archive(made.id))
    out().print(f"wrote {path} ({size(made.size_bytes)}: {', '.join(made.files)})", markup=False)


@app.command("run")
def run(
    ctx: typer.Context,
    build_id: str = typer.Argument(..., metavar="ID", help="The build's id (keel edge list)."),
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Rows to score: a .csv with the features."),
    output: Path | None = typer.Option(None, "--output", "-o", dir_okay=False, help="Write the scores here (.csv)."),
) -> None:
    """Score a CSV through the compiled library (the build's C compiled on this host, or its ONNX)."""
    import pandas as pd

    if file.suffix.lower() != ".csv":
        raise InvalidInputError(f"{str(file)!r}: keel edge run reads a .csv file")
    scored = open_workspace(ctx).edge.run(build_id, pd.read_csv(file))
    if output is not None:
        scored.to_csv(output, index=False)
        out().print(f"wrote {len(scored):,} rows to {output}", markup=False)
        return
    out().print(scored.head(20).to_string(index=False), markup=False)
    if len(scored) > 20:
        out().print(f"... {len(scored) - 20:,} more rows (write them all with -o FILE.csv)", markup=False)


def _share(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def _kb(value: Any) -> str:
    return "-" if value is None else f"{value / 1024:,.0f} KB" if value >= 10240 else f"{value:,} B"


def _print_build(made: EdgeBuild) -> None:
    """One line each: agreement, flash/RAM against the MCU's, stack, host latency, the emulated run."""
    r = made.report
    part = f" for {made.mcu}" if made.target == "c" else ""
    lines = [f"edge build {made.id} of {made.model}: {made.target} {made.quantize}{part}, {size(made.size_bytes)}"]
    accuracy = ""
    if r.get("accuracy_python") is not None:
        accuracy = f"; accuracy Python {_share(r['accuracy_python'])}, build {_share(r.get('accuracy_c'))}"
    diff = r.get("max_abs_score_diff")
    lines.append(
        f"  agreement    {_share(r.get('class_agreement'))} of classes on {r.get('n_rows', 0):,} rows, "
        f"max |score diff| {'-' if diff is None else f'{diff:.3g}'}{accuracy}"
    )
    sz = r.get("size")
    if sz:
        lines.append(
            f"  flash        {sz['flash_bytes']:,} B (image {_kb(sz['image_flash_bytes'])} of {_kb(sz['flash_limit_bytes'])})"
            f"  RAM {sz['ram_bytes']:,} B (image {_kb(sz['image_ram_bytes'])} of {_kb(sz['ram_limit_bytes'])})"
        )
        lines.append(f"  stack        {sz['stack_bytes']:,} B")
    else:
        model_bytes = r.get("model_bytes")
        what = f"model {model_bytes:,} B; " if model_bytes else ""
        lines.append(f"  size         {what}not measured: {r.get('size_skipped')}")
    lines.append(f"  latency      {r.get('host_latency_us', 0):.2f} µs per inference on this host")
    if r.get("qemu_skipped"):
        lines.append(f"  qemu         skipped: {r['qemu_skipped']}")
    else:
        exact = "bit-exact with the host" if r.get("qemu_bit_exact_vs_host") else "NOT bit-exact with the host"
        lines.append(
            f"  qemu         {r.get('qemu_rows', 0):,} rows on {made.mcu}: {_share(r.get('qemu_class_agreement'))} "
            f"agreement, {exact}"
        )
    lines.append(f"  created      {when(made.created_at)} by {made.author}")
    for line in lines:
        out().print(line, markup=False)
