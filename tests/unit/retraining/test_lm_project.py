"""Language model projects: a keel.yaml with an `lm:` section trains a GPT on the newest version of its
corpus (ws.genai.train) each cycle, and the gate compares challenger and champion by perplexity on that
version's held-out split (per byte when their tokenizers differ)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from keel.genai.train import perplexity, token_stream
from keel.retraining import Project, ProjectError
from keel.retraining.project import load_project
from keel.workspace.lm_loop import held_out_scores

YAML = """
model: coder
data: {dataset: code}
lm:
  config: {vocab_size: 300, n_layer: 2, n_head: 2, n_embd: 32, block_size: 32}
  steps: 40
  batch: 8
  lr: 0.01
  text_column: text
  valid_share: 0.2
  seed: 0
gate: {min_improvement: 0.0}
retraining: {triggers: [new_data, manual]}
"""


def code(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": [
                f"def add_{i}(x, y):\n    return x + y * {i % 7}\n\nclass Point{i}:\n    def __init__(self, a):\n"
                f"        self.a = a + {i % 5}\n"
                for i in range(start, start + n)
            ],
            "id": range(start, start + n),
        }
    )


def test_an_lm_section_parses_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "keel.yaml"
    path.write_text(YAML)
    project = load_project(path)
    assert project.lm is not None and project.lm.steps == 40 and project.lm.text_column == "text"
    assert project.lm.config == {"vocab_size": 300, "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32}
    assert project.evaluation.primary == "perplexity" and project.lower_is_better
    assert project.retraining.alert_rules == ("prompt-drift", "prompt-perplexity")  # the lm's own defaults
    assert Project.from_dict(project.to_dict()).to_dict() == project.to_dict()
    assert project.to_dict()["data"] == {"dataset": "code"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"estimator": {"class": "sklearn.linear_model.LinearRegression"}}, "estimator: a language model project"),
        ({"gate": {"shadow_rows": 100}}, "gate.shadow_rows: live prompts carry no labels"),
        ({"lm": {"config": "huge"}}, "lm.config: expected a preset (tiny, small, base)"),
        ({"lm": {"config": {"n_embd": 30, "n_head": 4}}}, "lm.config: n_embd (30) must be a multiple of n_head (4)"),
        ({"lm": {"steps": 10, "tokens": 1000}}, "lm.tokens: give steps or tokens, not both"),
        ({"lm": {"valid_share": 0.9}}, "lm.valid_share: expected a share in (0, 0.5]"),
        ({"evaluation": {"metrics": ["rmse"], "primary": "rmse"}}, "evaluation: a language model project is judged"),
    ],
)
def test_what_does_not_apply_to_a_language_model_is_refused_by_name(change: dict, message: str) -> None:
    raw = {"model": "coder", "data": {"dataset": "code"}, "lm": {}, **change}
    with pytest.raises(ProjectError, match="^<dict>: " + message.replace("(", r"\(").replace(")", r"\)")):
        Project.from_dict(raw)


def test_perplexity_is_only_a_language_model_metric() -> None:
    raw = {
        "model": "m",
        "data": {"dataset": "d", "target": "y"},
        "estimator": {"class": "sklearn.linear_model.LinearRegression"},
        "evaluation": {"metrics": ["perplexity"], "primary": "perplexity"},
    }
    with pytest.raises(ProjectError, match="'perplexity' is the metric of language model projects"):
        Project.from_dict(raw)


def test_a_new_corpus_version_trains_a_challenger_judged_on_its_held_out_split(ws, tmp_path: Path) -> None:
    path = tmp_path / "keel.yaml"
    path.write_text(YAML)
    ws.datasets.add("code", code(60))
    first = ws.retraining.train(path)
    assert first.outcome == "promoted" and first.version == 1
    assert first.evidence["gate"]["reasons"] == [
        "no champion to beat: the first version is promoted on its own holdout metrics"
    ]
    v1 = ws.models.get("coder@champion")
    assert v1.flavor == "lm" and v1.tags["keel.corpus"] == "code@1" and v1.run_id == first.run_id

    ws.datasets.add("code", pd.concat([code(60), code(60, start=60)]))
    decision = ws.retraining.retrain("coder")
    assert decision.version == 2 and decision.champion_version == 1
    assert decision.evidence["data"] == {"dataset": "code@2"}
    assert ws.models.get("coder@2").tags["keel.corpus"] == "code@2"
    assert ws.models.get("coder@challenger").version == 2

    # The scores in the evidence are both models' perplexity on code@2's held-out split, in one unit.
    lm = decision.evidence["lm"]
    held = ws.genai.split("code@2", text_column="text", valid_share=0.2, seed=0).valid
    assert lm["held_out_documents"] == len(held) and lm["champion_corpus"] == "code@1"
    again = held_out_scores(ws.models.load("coder@2").model, ws.models.load("coder@1").model, held)
    assert again["unit"] == lm["unit"]
    assert lm["challenger"] == pytest.approx(again["challenger"], rel=1e-9)
    assert lm["champion"] == pytest.approx(again["champion"], rel=1e-9)
    challenger, champion = decision.evidence["metrics"]["challenger"], decision.evidence["metrics"]["champion"]
    assert challenger == {"perplexity": lm["challenger"]} and champion == {"perplexity": lm["champion"]}

    # The gate's reasons are sentences with the numbers, and the outcome follows them.
    gain = champion["perplexity"] - challenger["perplexity"]
    verb = "improves" if gain > 0 else "matches the champion" if gain == 0 else "does not improve"
    assert decision.evidence["gate"]["reasons"][0] == (
        f"perplexity {verb}: {challenger['perplexity']:.4f} vs {champion['perplexity']:.4f} ({gain:+.4f}, needs +0.0000)"
    )
    assert decision.outcome == ("promoted" if gain >= 0 else "rejected")
    assert ws.models.get("coder@champion").version == (2 if gain >= 0 else 1)


def test_models_with_different_tokenizers_are_compared_per_byte() -> None:
    from keel.genai.lm import GPTConfig
    from keel.genai.train import train_lm

    cfg = GPTConfig(vocab_size=300, n_layer=1, n_head=2, n_embd=16, block_size=32)
    texts = list(code(40)["text"])
    a = train_lm(texts[:30], config=cfg, steps=5, batch=4, seed=0)
    b = train_lm(texts[:30], config=cfg.with_vocab(280), steps=5, batch=4, seed=0)
    held = tuple(texts[30:])
    same = held_out_scores(a, a, held)
    assert same["unit"] == "token" and same["challenger"] == same["champion"] == pytest.approx(perplexity(a, held))

    scores = held_out_scores(a, b, held)
    assert scores["unit"] == "byte"
    n_bytes = sum(len(t.encode()) for t in held)
    for key, model in (("challenger", a), ("champion", b)):
        predicted = len(token_stream(model.tokenizer(), held)) - 1
        # the same total log-likelihood, spread over bytes instead of tokens
        assert math.log(scores[key]) * n_bytes == pytest.approx(math.log(perplexity(model, held)) * predicted)
