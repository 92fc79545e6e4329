"""Schema changes between dataset versions: a retraining trains on the project's declared features,
or else on the champion's; a new column is ignored and reported, a removed feature fails before
training with an error naming it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import keel
from keel.monitoring.predlog import new_prediction_ids
from keel.retraining import load_project

from .test_retraining import cancer, spec

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def with_channel(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(Channel=np.where(np.arange(len(frame)) % 2 == 0, "web", "branch"))


def signature_columns(ws: keel.Workspace, ref: str) -> tuple[str, ...]:
    sig = ws.models.get(ref).signature
    assert sig is not None
    return sig.column_names


def test_a_new_column_is_ignored_and_reported_when_retraining_on_production_feedback(ws: keel.Workspace) -> None:
    # the demo's path: the alert-triggered cycle trains on the reference plus labelled production
    # rows (which never had the new column) and holds out the newest production rows
    ws.datasets.add("cancer", cancer())
    ws.retraining.train(spec(retraining={"data": "reference+production"}))
    frame = cancer()
    served = frame.drop(columns="target").head(100)
    ids, _ = new_prediction_ids(len(served))
    ws.predictions.write("tumor", 1, served.assign(__id=ids, __prediction=0))
    ws.monitoring.feedback("tumor", dict(zip(ids, frame["target"].head(100).tolist(), strict=True)))
    ws.datasets.add("cancer", with_channel(cancer()))
    d = ws.retraining.run_one("tumor", trigger="alert", detail={"alerts": []})
    assert d.outcome != "failed", d.evidence.get("error")
    assert d.evidence["columns"] == {"features_from": "champion tumor@1", "ignored": ["Channel"]}
    assert "Channel" not in signature_columns(ws, f"tumor@{d.version}")
    assert not ws.monitoring.alerts.list(model="tumor")


def test_the_latest_dataset_version_with_a_new_column_trains_on_the_champions_features(ws: keel.Workspace) -> None:
    ws.datasets.add("cancer", cancer())
    ws.retraining.train(spec())
    ws.datasets.add("cancer", with_channel(cancer()))
    d = ws.retraining.retrain("tumor")
    assert d.outcome in ("promoted", "rejected") and d.evidence["columns"]["ignored"] == ["Channel"]
    assert signature_columns(ws, f"tumor@{d.version}") == signature_columns(ws, "tumor@1")


def test_declared_features_win_and_the_rest_is_reported(ws: keel.Workspace) -> None:
    ws.datasets.add("cancer", with_channel(cancer()))
    d = ws.retraining.train(spec(data={"dataset": "cancer", "target": "target", "features": ["mean_radius", "site"]}))
    assert d.outcome == "promoted"
    assert d.evidence["columns"]["features_from"] == "project"
    assert "Channel" in d.evidence["columns"]["ignored"] and "mean_texture" in d.evidence["columns"]["ignored"]
    assert signature_columns(ws, "tumor@1") == ("mean_radius", "site")


def test_a_removed_feature_fails_before_training_naming_it(ws: keel.Workspace) -> None:
    ws.datasets.add("cancer", cancer())
    ws.retraining.train(spec())
    ws.datasets.add("cancer", cancer().drop(columns=["site", "mean_radius"]))
    d = ws.retraining.retrain("tumor", trigger="alert")
    assert d.outcome == "failed" and d.run_id is None  # no training run was started
    assert "mean_radius, site" in d.evidence["error"] and "cancer@2" in d.evidence["error"]
    assert "tumor@1" in d.evidence["error"]
    assert ws.models.get("tumor@champion").version == 1 and len(ws.models.versions("tumor")) == 1


def test_the_first_training_uses_every_column_and_reports_nothing_ignored(ws: keel.Workspace) -> None:
    ws.datasets.add("cancer", with_channel(cancer()))
    d = ws.retraining.train(spec())
    assert d.evidence["columns"] == {"features_from": "dataset", "ignored": []}
    assert "Channel" in signature_columns(ws, "tumor@1")


def readme_keel_yaml() -> str:
    """The README's keel.yaml block, as a reader would copy it."""
    from pathlib import Path

    readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in readme.split("```yaml\n")[1:]]
    [block] = [b for b in blocks if b.startswith("model: credit-risk")]
    return block


def test_the_readmes_keel_yaml_runs_as_written_on_the_demo_data(ws: keel.Workspace, tmp_path: Any) -> None:
    from keel.demo._shared import DATASET_NAME, load_source

    path = tmp_path / "keel.yaml"
    path.write_text(readme_keel_yaml())
    project = load_project(path)
    ws.datasets.add(DATASET_NAME, load_source().head(1000))  # a slice keeps it fast; the columns are what matter
    first = ws.retraining.train(path)
    assert first.outcome == "promoted", first.evidence.get("error")
    assert first.evidence["gate"]["checks"]["check:keel.retraining.checks:not_constant"]["passed"]
    # shadow mode is declared: the first version says why it is promoted without it
    reasons = first.evidence["gate"]["reasons"]
    assert any("no shadow mode for the first version" in r for r in reasons)
    second = ws.retraining.retrain(
        project.model
    )  # the same data and seed: an equal challenger passes (min_improvement 0)
    assert second.outcome == "shadowing", second.evidence["gate"]["reasons"]
    assert second.evidence["gate"]["reasons"][0].startswith("roc_auc matches the champion")  # not "does not improve"
    assert any(r.startswith("shadowing: v2 scores live traffic silently") for r in second.evidence["gate"]["reasons"])
    assert ws.models.get("credit-risk@champion").version == 1
