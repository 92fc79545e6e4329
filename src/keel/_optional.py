"""Lazy imports of optional, heavy dependencies, with an error that names the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from keel.errors import MissingDependencyError

__all__ = ["require"]


def require(module: str, *, extra: str, purpose: str | None = None) -> ModuleType:
    """Import `module` or raise MissingDependencyError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = purpose or "This feature"
        raise MissingDependencyError(f"{what} needs '{module.split('.')[0]}': pip install 'keelml[{extra}]'") from exc
