"""The house rules that keep the code readable by the next person (issue 12, shared/STYLE.md):
one idea per module, so no module over 500 lines and no function over 80 (migrations aside)."""

from __future__ import annotations

import ast
from pathlib import Path

import keel

ROOT = Path(keel.__file__).parent
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def _modules() -> list[Path]:
    return [p for p in sorted(ROOT.rglob("*.py")) if "migrations" not in p.relative_to(ROOT).parts]


def test_no_module_is_over_500_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}, f"split these by concept: {long}"


def test_no_function_is_over_80_lines() -> None:
    long = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None:
                if (n := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = n
    assert long == {}, f"shorten these: {long}"


def test_the_rules_see_the_whole_package() -> None:
    names = {str(p.relative_to(ROOT)) for p in _modules()}
    assert {"workspace/facade.py", "demo/__init__.py", "server/app.py", "storage/schema.py"} <= names
