"""The app's one typed state object, and the dashboard's sections that only share `base`."""

from __future__ import annotations

import ast
import dataclasses
from importlib.resources import files
from typing import Any

import pytest
from fastapi import FastAPI

from keel.server.state import ServerState, state_of


def test_create_app_holds_one_server_state(app: Any, served_ws: Any) -> None:
    state = state_of(app)
    assert isinstance(state, ServerState)
    assert state.ws is served_ws
    assert state.monitor_scheduler is None  # no monitor_tick_s in the fixture
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.predlog = None  # type: ignore[misc]


def test_an_app_without_server_state_says_how_to_build_one() -> None:
    with pytest.raises(RuntimeError, match=r"keel\.server\.app\.create_app"):
        state_of(FastAPI())


def test_dashboard_sections_import_only_base_from_their_package() -> None:
    """A section never imports another, so a new one is one module and no cycle can start. A section
    may keep its drawing code in a private helper (`_svg.py`), which imports nothing of the package."""
    package = files("keel.server.dashboard")
    sections = [p for p in package.iterdir() if p.name.endswith(".py") and p.name not in ("__init__.py", "base.py")]
    assert {p.name for p in sections} >= {
        "overview.py",
        "datasets.py",
        "runs.py",
        "models.py",
        "monitoring.py",
        "explanations.py",
    }
    for path in [*sections, package / "base.py"]:
        tree = ast.parse(path.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        inside = {m for m in imported if m.startswith("keel.server.dashboard")}
        private = {f"keel.server.dashboard.{p.name[:-3]}" for p in sections if p.name.startswith("_")}
        allowed = (
            set() if path.name == "base.py" or path.name.startswith("_") else {"keel.server.dashboard.base", *private}
        )
        assert inside <= allowed, f"{path.name} imports {inside - allowed}"
