"""The `keel` command line: parses arguments, calls a Workspace, prints tables or --json.

    keel init | gc | demo                     _app.py (the root group: --workspace, one-line errors)
    keel data add | list | show | diff        data.py
    keel runs list | show | search            runs.py
    keel models list | show | alias | history | predict   models.py

Heavy imports (pandas, scikit-learn, SQLAlchemy, keel.workspace.facade) happen inside the commands,
so `keel --help` stays fast. A KeelError prints one line on stderr and exits 1; a malformed
command line exits 2.

May import: keel.workspace (the facade, inside commands), keel.demo and the base modules; never
the record packages, keel.jobs or compute (an import-linter contract checks it).
"""

from __future__ import annotations

from keel.cli._app import app, main

__all__ = ["app", "main"]
