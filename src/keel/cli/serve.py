"""`keel serve` and `keel token`: the HTTP server and its API tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from keel.cli._common import JSON_OPTION, err, escape, open_workspace, out, print_json

if TYPE_CHECKING:
    from keel.workspace.facade import Workspace

token_app = typer.Typer(
    help="Create, list and revoke API tokens (roles: reader, predictor, writer, admin).", no_args_is_help=True
)


def serve_workspace(
    ws: Workspace,
    *,
    host: str,
    port: int,
    log_format: str,
    announce: bool = True,
    allowed_hosts: str | None = None,
    workers: int = 1,
) -> None:
    """Serve `ws` until Ctrl-C, printing the dashboard address once the server listens."""
    from keel.server import serve

    def ready(h: str, p: int) -> None:
        if announce:
            shown = "127.0.0.1" if h in ("0.0.0.0", "::") else h
            out().print(f"Dashboard: [bold]http://{shown}:{p}/[/]   API docs: http://{shown}:{p}/docs   (Ctrl-C stops)")

    try:
        serve(
            ws,
            host=host,
            port=port,
            log_format=log_format,
            on_ready=ready,
            allowed_hosts=allowed_hosts,
            workers=workers,
        )
    except KeyboardInterrupt:
        pass


def serve_command(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind. Any non-loopback address needs API tokens."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="Port to listen on."),
    log_format: str = typer.Option(
        "text", "--log-format", help="text or json (one JSON object per line, with request ids)."
    ),
    allowed_hosts: str | None = typer.Option(
        None,
        "--allowed-hosts",
        show_default=False,
        help="Names clients reach the server by (Host header), comma-separated; "
        "loopback names and --host are always allowed, '*' allows any. "
        "Default: KEEL_SERVER_ALLOWED_HOSTS.",
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        min=1,
        max=256,
        help="Serving processes sharing the port and the store (aliases, predictions, schedules agree across them).",
    ),
) -> None:
    """Serve the workspace over HTTP: REST API, predictions, dashboard, /metrics, /healthz, /readyz.

    The address is printed once the champions are loaded and warm (/readyz then says ready)."""
    if log_format not in ("text", "json"):
        raise typer.BadParameter(f"must be text or json, got {log_format!r}", param_hint="--log-format")
    ws = open_workspace(ctx, create=True)
    serve_workspace(ws, host=host, port=port, log_format=log_format, allowed_hosts=allowed_hosts, workers=workers)


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A name for the token (who or what uses it)."),
    role: str = typer.Option("reader", "--role", "-r", help="reader, predictor, writer or admin."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a token. It is printed once and stored only as a hash: keep it somewhere safe."""
    ws = open_workspace(ctx, create=True)
    token, record = ws.tokens.create(name, role)
    if as_json:
        print_json({"token": token, **_token_dict(record)})
        return
    out().print(token, markup=False, highlight=False)
    err().print(
        f"Created {record.role.value} token '{escape(record.name)}' (prefix {record.prefix}). It is shown only now."
    )


@token_app.command("list")
def token_list(
    ctx: typer.Context,
    all_tokens: bool = typer.Option(False, "--all", help="Include revoked tokens."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List tokens (names, roles, prefixes; never the tokens themselves)."""
    from rich.table import Table

    ws = open_workspace(ctx)
    records = ws.tokens.list(include_revoked=all_tokens)
    if as_json:
        print_json([_token_dict(r) for r in records])
        return
    table = Table("name", "role", "prefix", "created", "last used", "revoked")
    for r in records:
        table.add_row(
            escape(r.name), r.role.value, r.prefix, _when(r.created_at), _when(r.last_used_at), _when(r.revoked_at)
        )
    out().print(table)


@token_app.command("revoke")
def token_revoke(ctx: typer.Context, token: str = typer.Argument(..., help="The token's prefix or name.")) -> None:
    """Revoke a token: the server refuses it from then on."""
    ws = open_workspace(ctx)
    record = ws.tokens.revoke(token)
    out().print(f"Revoked token '{escape(record.name)}' ({record.prefix}).")


def _token_dict(r: Any) -> dict[str, Any]:
    return {
        "name": r.name,
        "role": r.role.value,
        "prefix": r.prefix,
        "created_at": r.created_at,
        "created_by": r.created_by,
        "last_used_at": r.last_used_at,
        "revoked_at": r.revoked_at,
    }


def _when(value: Any) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M")
