"""Running the real CLI in-process, for the end-to-end tests of this folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from keel.cli import app

runner = CliRunner()


def keel_cli(home: Path, *args: str) -> tuple[int, str, str]:
    """Run `keel --workspace home ARGS` in-process; return (exit code, stdout, stderr)."""
    result = runner.invoke(app, ["--workspace", str(home), *args])
    return result.exit_code, result.stdout, result.stderr


def keel_json(home: Path, *args: str) -> Any:
    code, out, err = keel_cli(home, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def assert_one_line_error(result: tuple[int, str, str], *, code: int, contains: str) -> None:
    """One line on stderr, starting 'error: ', naming the problem; nothing on stdout; no traceback."""
    exit_code, out, err = result
    assert exit_code == code, (exit_code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and contains in lines[0], lines[0]
    assert "Traceback" not in out + err and out == ""
