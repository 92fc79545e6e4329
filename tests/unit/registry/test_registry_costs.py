"""What an alias move and a model load cost (issue 17): statements per move, verdicts per vetting
walk, and the imports a fresh process pays to load a scikit-learn model."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sqlalchemy import event

import keel
from keel.registry import _skops_vetting


def _xy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    return X, (X[:, 0] > 0).astype(int)


def test_an_alias_move_is_four_statements_and_keeps_its_history(tmp_path: Path) -> None:
    ws = keel.Workspace(home=tmp_path)
    X, y = _xy()
    for c in (0.5, 1.0):
        ws.models.register("m", LogisticRegression(C=c).fit(X, y))
    ws.models.set_alias("m", "prod", version=1)
    engine = ws.models._meta.models.engine
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        moved = ws.models.set_alias("m", "prod", version=2, reason="better")
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) <= 4, statements  # it was six: a read-back per step
    assert (moved.from_version, moved.to_version, moved.reason) == (1, 2, "better")
    history = ws.models.alias_history("m", "prod")
    assert [(e.from_version, e.to_version) for e in history] == [(None, 1), (1, 2)]
    assert ws.models.get("m@prod").version == 2
    with pytest.raises(keel.errors.NotFoundError, match="no version 9"):
        ws.models.set_alias("m", "prod", version=9)
    with pytest.raises(keel.errors.NotFoundError, match="No model named 'n'"):
        ws.models.set_alias("n", "prod", version=1)
    assert ws.models.get("m@prod").version == 2 and len(ws.models.alias_history("m", "prod")) == 2
    ws.close()


def test_vetting_takes_each_verdict_once_per_file(monkeypatch: Any) -> None:
    X, y = _xy()
    data = _skops_vetting.skops_io().dumps(RandomForestClassifier(n_estimators=8, random_state=0).fit(X, y))
    calls: list[tuple[str, str]] = []
    refusal = _skops_vetting._refusal

    def counted(loader: str, path: str) -> str | None:
        calls.append((loader, path))
        return refusal(loader, path)

    monkeypatch.setattr(_skops_vetting, "_refusal", counted)
    vetted, refused = _skops_vetting._vet_schema(bytes(data))
    assert refused == [] and "sklearn.tree._classes.DecisionTreeClassifier" in vetted
    assert len(calls) == len(set(calls)), "a (node kind, type) pair was judged twice in one walk"


def test_loading_a_scikit_learn_model_in_a_fresh_process_does_not_import_torch(tmp_path: Path) -> None:
    ws = keel.Workspace(home=tmp_path)
    X, y = _xy()
    ws.models.register("m", LogisticRegression().fit(X, y))
    ws.models.set_alias("m", "champion", version=1)
    ws.close()
    code = textwrap.dedent(
        f"""
        import sys
        import keel
        model = keel.Workspace(home={str(tmp_path)!r}).models.load("m@champion")
        assert model.predict([[1.0, 0.0, 0.0]]).tolist() == [1]
        import sklearn.externals.array_api_compat  # the hidden adapters are importable again
        print("torch" in sys.modules, "sklearn.externals.array_api_compat.torch" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "False"], out.stdout + out.stderr
