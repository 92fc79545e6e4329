"""The first prediction from the command line (issue 11): scoring and explaining the very file a
model was trained on works at the first try (its target is dropped with a note), and a missing
value for a model without an imputer is one line naming the column, not a traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clitools import assert_one_line_error, keel_cli, keel_json
from sklearn.linear_model import LogisticRegression

import keel
from keel import Settings

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A workspace with 'risk' (logistic regression, no imputer) and the CSV it was trained on."""
    root = tmp_path_factory.mktemp("first")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"income": rng.normal(100, 20, 120).round(1), "age": rng.integers(18, 70, 120)})
    frame["status"] = np.where(frame["income"] > 100, "good", "bad")
    path = root / "train.csv"
    frame.to_csv(path, index=False)
    with keel.Workspace(Settings(home=root / "ws", author="tester")) as ws:
        X = frame.drop(columns="status")
        ws.models.register("risk", LogisticRegression(max_iter=1000).fit(X, frame["status"]), X=X)
    return root / "ws", path


def test_predict_on_the_training_file_drops_the_target_with_a_note(trained: tuple[Path, Path]) -> None:
    home, path = trained
    code, out, err = keel_cli(home, "models", "predict", "risk@1", str(path), "--json")
    assert code == 0, err
    assert "note: dropped 1 column risk@1 does not take: status" in err
    import json

    assert len(json.loads(out)["predictions"]) == 120


def test_predict_with_no_drop_extra_refuses_the_target_in_one_line(trained: tuple[Path, Path]) -> None:
    home, path = trained
    result = keel_cli(home, "models", "predict", "risk@1", str(path), "--no-drop-extra")
    assert_one_line_error(result, code=1, contains="unexpected column status")


def test_a_missing_value_is_one_line_naming_the_column(trained: tuple[Path, Path], tmp_path: Path) -> None:
    home, path = trained
    gaps = pd.read_csv(path).head(3)
    gaps.loc[1, "income"] = np.nan
    gappy = tmp_path / "gaps.csv"
    gaps.to_csv(gappy, index=False)
    code, out, err = keel_cli(home, "models", "predict", "risk@1", str(gappy))
    assert "note: dropped" in err
    lines = [line for line in err.strip().splitlines() if not line.startswith("note:")]
    assert code == 1 and out == "" and "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("error: ") and "does not accept missing values" in lines[0] and "income" in lines[0]
    assert "age" not in lines[0]


def test_explain_on_the_training_file_drops_the_target_with_a_note(trained: tuple[Path, Path]) -> None:
    home, path = trained
    code, out, err = keel_cli(home, "explain", "risk@1", str(path), "--limit", "2")
    assert code == 0, err
    assert "note: dropped 1 column risk@1 does not take: status" in err
    assert "row 1: predicted" in out
    result = keel_cli(home, "explain", "risk@1", str(path), "--no-drop-extra")
    assert_one_line_error(result, code=1, contains="unexpected column status")


def test_predict_json_has_the_same_answers_with_and_without_the_target(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    home, path = trained
    features = tmp_path / "features.csv"
    pd.read_csv(path).drop(columns="status").to_csv(features, index=False)
    assert keel_json(home, "models", "predict", "risk@1", str(path)) == keel_json(
        home, "models", "predict", "risk@1", str(features)
    )
