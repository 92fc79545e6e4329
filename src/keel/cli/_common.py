"""What every command shares: the workspace it opens, JSON and table output, small formatters.

Only the standard library, typer and rich are imported here at module level: `keel --help`
must not pay for pandas, SQLAlchemy or scikit-learn.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from keel.errors import NotFoundError
from keel.settings import Settings

if TYPE_CHECKING:
    from keel.workspace import Workspace

__all__ = [
    "JSON_OPTION",
    "queue_job",
    "State",
    "err",
    "escape",
    "fitting",
    "number",
    "open_workspace",
    "out",
    "parse_tags",
    "print_json",
    "size",
    "styled",
    "table",
    "to_jsonable",
    "when",
]

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")


@dataclass
class State:
    """What the root command parsed, shared with every subcommand through click's context."""

    workspace: Path | None = None  # --workspace, when given

    def settings(self, **overrides: Any) -> Settings:
        # Read lazily: `keel data --help` must work even when a KEEL_* variable is broken.
        return Settings.from_env(home=self.workspace, **overrides)


def state(ctx: typer.Context) -> State:
    found = ctx.find_object(State)
    return found if found is not None else State()


def open_workspace(ctx: typer.Context, *, create: bool = False) -> Workspace:
    """The workspace the command works on, closed when the command ends.

    Without `create`, a missing SQLite workspace is an error rather than a new empty one: a
    read command run in the wrong folder should say so, not litter it with `.keel/`.
    """
    settings = state(ctx).settings()
    configure_logging(settings.log_level)
    if not create and not settings.store_url:
        db = settings.home / "keel.db"
        if not db.exists():
            raise NotFoundError(
                f"No workspace at {str(settings.home.absolute())!r}: run 'keel init' to create one, "
                "or point at one with --workspace PATH or KEEL_HOME"
            )
    from keel.workspace import Workspace

    ws = Workspace(settings)
    ctx.call_on_close(ws.close)
    return ws


class _StderrHandler(logging.StreamHandler[Any]):
    """Writes to whatever sys.stderr is at the time of the record (test runners swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(level: str) -> None:
    logger = logging.getLogger("keel")
    logger.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


# -- output --------------------------------------------------------------------------------
_PIPE_WIDTH = 160  # rich assumes 80 columns when stdout is not a terminal; tables need more


def out() -> Console:
    """A console on stdout (resolved at each call, so redirected streams are honoured)."""
    console = Console(highlight=False)
    if not console.is_terminal and not os.environ.get("COLUMNS", "").isdigit():  # an explicit COLUMNS wins
        console.width = _PIPE_WIDTH
    return console


def err() -> Console:
    """A console on stderr: progress and status, never data."""
    return Console(stderr=True, highlight=False)


def to_jsonable(value: Any) -> Any:
    """Entities (frozen dataclasses) as dicts, with their properties (`ref`); datetimes in ISO 8601."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for name, attr in vars(type(value)).items():
            if isinstance(attr, property) and not name.startswith("_"):
                data[name] = to_jsonable(getattr(value, name))
        return data
    if isinstance(value, Enum):
        return to_jsonable(value.value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # JSON has no NaN or Infinity
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return to_jsonable(value.item())
    return value


def print_json(value: Any) -> None:
    typer.echo(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False))


# Free text wraps in a narrow terminal; ids, refs, numbers and times stay on one line.
_WRAPPING = {
    "description",
    "reason",
    "summary",
    "details",
    "trained on",
    "aliases",
    "value",
    "categories",
    "name",
    "title",
    "model",
    "error",
    "result / error",
    "why",
    "settings",
    "condition",
}
# What a reader types back (`keel alerts ack 12`) or decides by is never shrunk to "…".
_WHOLE = {"id", "status", "severity", "version", "row", "outcome", "last seen"}
_FREE_TEXT_MIN = 10  # cells a wrapping column keeps when a narrow table must be squeezed


class _DataTable(Table):
    """A table whose string cells are data, never rich markup: a description "[draft]" stays.

    Columns in _WHOLE keep the width of their widest cell (and header) in a narrow terminal.
    """

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        cells = [Text(r) if isinstance(r, str) else r for r in renderables]
        for column, cell in zip(self.columns, cells):
            if column.header in _WHOLE and isinstance(cell, Text):
                column.min_width = max(column.min_width or len(str(column.header)), cell.cell_len)
        super().add_row(*cells, **kwargs)

    def _calculate_column_widths(self, console: Any, options: Any) -> list[int]:
        # When wrapping the free-text columns does not make the table fit, rich cuts every column
        # evenly, ids too, and may leave the free text no room at all (a column's min_width does
        # not survive that). So: whole columns get their width back, free text keeps a few cells,
        # and the room comes from the widest of the other columns, one cell at a time.
        widths = super()._calculate_column_widths(console, options)
        pad = self._get_padding_width
        floors = {i: c.min_width + pad(i) for i, c in enumerate(self.columns) if c.min_width}
        for i, column in enumerate(self.columns):
            if i not in floors:
                natural = self._measure_column(console, options, column).maximum
                floors[i] = pad(i) + 1 if column.no_wrap else min(natural, pad(i) + _FREE_TEXT_MIN)
            widths[i] = max(widths[i], floors[i])
        over = sum(widths) - options.max_width
        while over > 0:
            shrinkable = [i for i in range(len(widths)) if widths[i] > floors[i]]
            if not shrinkable:
                break  # the line runs past the terminal's edge rather than hide an id
            # Free text first (it folds, losing nothing), then the others (cut with "…").
            widths[max(shrinkable, key=lambda i: (not self.columns[i].no_wrap, widths[i] - floors[i]))] -= 1
            over -= 1
        return widths


def styled(text: str, style: str) -> Text:
    """A table cell with a style (plain strings are printed as they are)."""
    return Text(text, style=style)


def table(*columns: str, title: str | None = None) -> Table:
    """A plain table; a column name ending in '>' is right-aligned (numbers)."""
    t = _DataTable(title=title, box=box.SIMPLE_HEAD, title_justify="left", title_style="bold", pad_edge=False)
    for c in columns:
        name = c.removesuffix(">")
        wraps = name in _WRAPPING  # a word too long for the column folds, rather than end in "…"
        t.add_column(
            name,
            justify="right" if c.endswith(">") else "left",
            no_wrap=not wraps,
            overflow="fold" if wraps else "ellipsis",
        )
    return t


def fitting(keys: list[str], fixed: list[int], *, column_width: int = 8) -> list[str]:
    """The metric columns that fit beside columns of widths `fixed` in the console's width."""
    used = sum(w + 3 for w in fixed)  # each column is padded and separated by about 3 cells
    return keys[: max(0, (out().width - used) // (column_width + 3))]


def when(value: datetime | None, *, short: bool = False) -> str:
    """A timestamp for people: local time to the minute (without the year in tables)."""
    if value is None:
        return "-"
    return value.astimezone().strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M")


def size(num_bytes: int) -> str:
    amount = float(num_bytes)
    for unit in ("B", "KB", "MB", "GB"):
        if amount < 1024 or unit == "GB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TB"  # pragma: no cover - unreachable


def number(value: Any) -> str:
    """A metric or statistic, short: 0.8512, 1.2e+06, 42."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e12:
        return f"{int(value):,}"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.3e}"


def parse_tags(values: list[str] | None) -> dict[str, str]:
    """`--tag k=v` options as a dict; a value without '=' is a usage error."""
    tags: dict[str, str] = {}
    for item in values or []:
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="'--tag'")
        tags[key.strip()] = val
    return tags


def queue_job(ws: Workspace, payload: Any, as_json: bool) -> None:
    """Queue a job payload (JobPayload, StudyJobPayload, ...) for `keel worker` / `keel serve` and say so
    (an active job of the same de-duplication key is reported instead of a new one)."""
    job, created = ws.jobs.enqueue(payload.kind, payload.to_dict(), dedup_key=payload.dedup_key)
    if as_json:
        print_json(job)
        return
    again = "" if created else " (already queued)"
    out().print(f"Queued: job {job.id}{again}; keel worker or keel serve runs it (keel jobs show {job.id})")
