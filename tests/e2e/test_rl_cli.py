"""`keel rl` end to end: a twin fitted on a dataset version, listed and shown with its fit, its classic
baselines and the exact optimum, and mistakes as one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clitools import assert_one_line_error, keel_cli, keel_json

import keel
from keel.settings import Settings


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "ws"
    units = np.random.default_rng(1).poisson(10, size=200)
    with keel.Workspace(Settings(home=home, author="tester")) as ws:
        ws.datasets.add("sales", pd.DataFrame({"week": np.arange(200), "units": units}))
    return home


def test_twin_list_show_and_baselines(home: Path) -> None:
    code, out, err = keel_cli(home, "rl", "twin", "shop", "sales@1", "--demand", "units", "--time", "week")
    assert code == 0, err
    assert "twin shop@1 fitted on sales@1 (units)" in out and "lead time 2, backorders, h 1, p 9" in out
    assert "demand    Poisson, mean" in out and "poisson" in out and "negbin" in out
    listed = keel_json(home, "rl", "list")
    assert [t["name"] for t in listed] == ["shop"] and listed[0]["dataset"] == "sales@1"
    code, out, err = keel_cli(home, "rl", "baselines", "shop", "--periods", "300", "--copies", "64")
    assert code == 0, err
    assert "base-stock" in out and "(s,S)" in out and "capped base-stock" in out and "optimum (DP)" in out
    shown = keel_json(home, "rl", "show", "shop@1")
    assert shown["twin"]["ref"] == "shop@1" and shown["baselines"]["payload"]["optimum"]["cost"] > 0
    code, out, _ = keel_cli(home, "rl", "show", "shop")
    assert code == 0 and "gap to optimum" in out


def test_mistakes_are_one_line_errors(home: Path) -> None:
    assert_one_line_error(
        keel_cli(home, "rl", "twin", "shop", "sales@1", "--demand", "units", "--holding", "-1"),
        code=1,
        contains="costs.holding must be a finite number >= 0",
    )
    assert_one_line_error(
        keel_cli(home, "rl", "twin", "shop", "sales@1", "--demand", "sold"), code=1, contains="no column 'sold'"
    )
    assert_one_line_error(keel_cli(home, "rl", "show", "nothing"), code=1, contains="No twin named 'nothing'")
    assert keel_json(home, "rl", "list") == []


def test_train_registers_a_policy_and_can_queue(home: Path) -> None:
    assert keel_cli(home, "rl", "twin", "shop", "sales@1", "--demand", "units")[0] == 0
    code, out, err = keel_cli(
        home, "rl", "train", "shop", "--steps", "1024", "--n-envs", "2", "--register-as", "shop-policy"
    )
    assert code == 0, err
    assert "policy shop-policy@1 on twin shop@1: PPO, order_up_to actions" in out
    assert "vs best" in out and "(paired)" in out and "optimum   gap" in out
    assert keel_json(home, "models", "show", "shop-policy@1")["flavor"] == "policy"
    code, out, _ = keel_cli(home, "rl", "train", "shop", "--steps", "512", "--queue")
    assert code == 0 and out.startswith("Queued: job ")
    assert_one_line_error(keel_cli(home, "rl", "train", "nothing", "--queue"), code=1, contains="No twin named")
    assert_one_line_error(
        keel_cli(home, "rl", "train", "shop", "--action", "buy"), code=1, contains="action must be one of"
    )


POLICY_PROJECT = """\
model: shop-ordering
data: {dataset: sales, target: units}
policy:
  twin: shop
  time_column: week
  costs: {holding: 1, penalty: 9}
  steps: 1024
  n_envs: 2
  periods: 200
  copies: 64
"""


def test_a_policy_project_trains_and_retrains_on_its_twin(home: Path, tmp_path: Path) -> None:
    project = tmp_path / "keel.yaml"
    project.write_text(POLICY_PROJECT)
    code, out, err = keel_cli(home, "train", str(project))
    assert code == 0, err
    assert "shop-ordering@1 promoted (manual)" in out and "data      sales@1: twin shop@1" in out
    code, out, err = keel_cli(home, "retrain", "shop-ordering")
    assert code == 0, err
    assert "paired    on shop@1: challenger" in out and "cost" in out
    code, out, _ = keel_cli(home, "models", "timeline", "shop-ordering")
    assert code == 0 and out.count("manual") == 2
