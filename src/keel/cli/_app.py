"""The root `keel` command: the global --workspace option, one-line errors, init, gc and demo."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from keel.cli import (
    alerts,
    causal,
    causal_targeting,
    data,
    edge,
    explain,
    genai,
    jobs,
    migrate,
    models,
    monitor,
    retrain,
    rl,
    runs,
    serve,
)
from keel.cli._common import JSON_OPTION, State, err, escape, open_workspace, out, print_json, size, state, to_jsonable
from keel.errors import KeelError

__all__ = ["app", "main"]

EXIT_ERROR = 1  # a KeelError: the request was understood but cannot be done
EXIT_USAGE = 2  # the command line itself is wrong (click's convention)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _fail(message: str, code: int) -> int:
    err().print(f"[bold red]error:[/] {escape(_one_line(message))}", highlight=False, soft_wrap=True)
    return code


class KeelGroup(TyperGroup):
    """The root command group: turns every user mistake into one line on stderr and an exit code.

    Both `main()` and test runners (`CliRunner.invoke(app, ...)`) go through `main` here, so
    they see the same errors and exit codes.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        root_option = next((p for p in self.params if p.name == "workspace"), None)
        if root_option is not None:
            _accept_workspace(self, root_option)

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        code = _run(self, args, prog_name or "keel", complete_var, windows_expand_args, extra)
        if standalone_mode:
            sys.exit(code)
        return code


def _run(group: TyperGroup, args: Any, prog_name: str, complete_var: str | None, expand: bool, extra: Any) -> int:
    try:
        result = TyperGroup.main(
            group, args, prog_name, complete_var, standalone_mode=False, windows_expand_args=expand, **extra
        )
    except typer.TyperException as exc:  # typer's (vendored click's) usage and parameter errors
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError":  # `keel data`: the help is the answer
            text = exc.format_message()
            if text.strip():
                typer.echo(text)
            return exc.exit_code
        usage = exc.exit_code == EXIT_USAGE
        hint = f" (see '{ctx.command_path} --help')" if usage and ctx is not None else ""
        return _fail(exc.format_message() + hint, exc.exit_code)
    except typer.Abort:
        return _fail("aborted", EXIT_ERROR)
    except KeelError as exc:
        return _fail(str(exc), EXIT_ERROR)
    except BrokenPipeError:  # `keel runs list | head`: the reader left; nothing to say
        _silence_stdout()
        return EXIT_ERROR
    except OSError as exc:  # a file the user named cannot be read or written
        where = f": {exc.filename}" if exc.filename else ""
        return _fail(f"{exc.strerror or exc}{where}", EXIT_ERROR)
    # Without standalone mode, click returns the exit code of ctx.exit(n) / --help, or the
    # command's return value (our commands return None).
    return result if isinstance(result, int) else 0


def _accept_workspace(group: Any, root_option: Any) -> None:
    """`keel serve --workspace W` as well as `keel --workspace W serve`: every command and group
    below the root takes the root's option too. Its copy sets the State the root made (the value
    nearest the command wins) instead of reaching the command's function."""

    def nearer(ctx: Any, param: Any, value: Any) -> Any:
        if value is not None:
            ctx.ensure_object(State).workspace = value
        return value

    for command in group.commands.values():
        if not any("--workspace" in p.opts for p in command.params):  # demo has its own
            option = copy.copy(root_option)
            option.expose_value, option.callback = False, nearer
            command.params.append(option)
        if hasattr(command, "commands"):
            _accept_workspace(command, root_option)


def _silence_stdout() -> None:
    # Python flushes stdout at exit and would report the broken pipe a second time.
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (a test runner)
        pass


app = typer.Typer(
    cls=KeelGroup,
    name="keel",
    help="Keel: versioned data, tracked runs and a model registry, local first.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(data.app, name="data")
app.add_typer(runs.app, name="runs")
app.add_typer(models.app, name="models")
app.add_typer(serve.token_app, name="token")
app.add_typer(monitor.app, name="monitor")
app.add_typer(alerts.app, name="alerts")
app.command("serve")(serve.serve_command)
app.command("train")(retrain.train)
app.command("retrain")(retrain.retrain)
app.command("tune")(retrain.tune)
app.command("explain")(explain.explain)
models.app.command("explain")(explain.explain_dataset)
app.command("worker")(jobs.worker)
app.command("migrate")(migrate.migrate)
models.app.command("score")(jobs.score)
app.add_typer(jobs.app, name="jobs")
causal.app.command("cate")(causal_targeting.cate)
causal.app.command("compare")(causal_targeting.compare)
causal.app.command("policy")(causal_targeting.policy)
app.add_typer(causal.app, name="causal")
app.add_typer(edge.app, name="edge")
app.add_typer(rl.app, name="rl")
app.add_typer(genai.app, name="genai")
models.app.command("approve")(retrain.approve)
models.app.command("rollback")(retrain.rollback)
models.app.command("timeline")(retrain.timeline)


def _version(value: bool) -> None:
    if value:
        from keel import __version__

        typer.echo(f"keel {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    workspace: Path | None = typer.Option(
        None,
        "--workspace",
        "-w",
        help="The workspace folder (default: KEEL_HOME, else ./.keel). KEEL_STORE_URL / KEEL_ARTIFACTS_URL still apply.",
        file_okay=False,
    ),
    version: bool = typer.Option(
        False, "--version", help="Print keel's version and exit.", callback=_version, is_eager=True
    ),
) -> None:
    ctx.obj = State(workspace=workspace)


@app.command()
def init(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Create the workspace (or upgrade its metadata schema) and say where it keeps things."""
    with err().status("Opening the workspace..."):
        ws = open_workspace(ctx, create=True)
    if as_json:
        print_json(
            {
                "home": ws.settings.home.absolute(),
                "store": ws.store_url,
                "artifacts": ws.artifacts_url,
                "schema_revision": ws.schema_revision,
            }
        )
        return
    console = out()
    console.print(f"Workspace ready at [bold]{escape(str(ws.settings.home.absolute()))}[/]")
    console.print(f"  metadata   {ws.store_url}  (schema {ws.schema_revision})", markup=False)
    console.print(f"  artifacts  {ws.artifacts_url}", markup=False)


@app.command()
def gc(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Only report what would be deleted."),
    grace_s: int | None = typer.Option(
        None,
        "--grace-s",
        min=0,
        help="Keep unreferenced artifacts younger than this many seconds (default: KEEL_GC_GRACE_S, 3600).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Delete artifacts that no metadata points at (left by failed or interrupted writes)."""
    ws = open_workspace(ctx)
    # Runs left running by a process that died are marked killed (opening the workspace checked
    # already; gc checks again, and says which it found).
    ws.runs.mark_lost()
    killed = ws.runs.marked_killed
    with err().status("Collecting unreferenced artifacts..."):
        report = ws.gc(dry_run=dry_run, grace_s=grace_s)
    if as_json:
        print_json({**to_jsonable(report), "killed_runs": list(killed)})
        return
    verb = "Would delete" if dry_run else "Deleted"
    out().print(
        f"{verb} {len(report.deleted)} unreferenced artifact{'s' if len(report.deleted) != 1 else ''} "
        f"({size(report.freed_bytes)}); kept {report.kept_young} younger than the grace period; "
        f"{report.referenced} referenced."
    )
    if killed:
        out().print(
            f"Marked {len(killed)} run{'s' if len(killed) != 1 else ''} killed (their process is gone): "
            f"{', '.join(k[:8] for k in killed)}",
            markup=False,
        )


@app.command()
def demo(
    ctx: typer.Context,
    workspace: Path | None = typer.Option(
        None, "--workspace", "-w", file_okay=False, help="Run in this folder instead of a new temporary one."
    ),
    no_serve: bool = typer.Option(
        False, "--no-serve", help="Stop after the story instead of serving the champion (for scripts)."
    ),
    port: int = typer.Option(
        8080, "--port", min=0, max=65535, help="Port of the demo's server: the story's traffic, then the dashboard."
    ),
    through: int | None = typer.Option(
        None,
        "--through",
        min=1,
        help="Stop after this act: 11 ends the credit-scoring story (12-16: causal, targeting, edge, decide, GenAI).",
    ),
) -> None:
    """Run the lifecycle on real credit-scoring data, then serve the champion and the dashboard.

    Data, two tracked runs, registry, champion, predictions, then live traffic, monitoring, alerts
    and a retraining through a server on 127.0.0.1:PORT, which goes on serving (as `keel serve`)
    until Ctrl-C (--no-serve stops after the story). Uses the embedded default (SQLite + local files) in a new temporary folder unless
    --workspace is given (here or before the command); the folder is kept so you can explore it.
    """
    from keel.demo import run_demo

    home = workspace if workspace is not None else state(ctx).workspace
    # With serving, the story's server is the one left running: one port, announced once it listens.
    run_demo(home, console=out(), serve_port=None if no_serve else port, through=through)


def main() -> None:
    """The `keel` console script."""
    app()
