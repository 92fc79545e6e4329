"""Monitoring a language model: its prompts against its training corpus, its outputs' length and the
prompts' perplexity, as the monitor's series and through the default alert rules (keel.workspace.genai_monitor)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from keel.genai.lm import TrainedLM
from keel.workspace import genai_monitor
from keel.workspace.genai_monitor import TextMonitor, corpus_passages

from ._lm_fixtures import corpus, train_tiny

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def lm() -> TrainedLM:
    return train_tiny()


@pytest.fixture(autouse=True)
def _fewer_passages(monkeypatch: pytest.MonkeyPatch) -> None:
    """150 corpus passages rather than 500: embedding them is most of a check's time on one core."""
    monkeypatch.setattr(genai_monitor, "REFERENCE_ROWS", 150)


def _coder(ws, lm: TrainedLM) -> None:
    ws.datasets.add("code", pd.DataFrame({"text": corpus(120)}))
    ws.models.register("coder", lm, trained_on="code@1", metrics={"val_perplexity": lm.val_perplexity})
    ws.monitoring.watch("coder", window_rows=60, min_rows=30)


def _log(ws, prompts: list[str], outputs: list[str], start: datetime) -> None:
    at = [start + timedelta(seconds=i) for i in range(len(prompts))]
    ws.predictions.write("coder", 1, pd.DataFrame({"prompt": prompts, "__prediction": outputs, "__at": at}))


def _in_domain(n: int, seed: int) -> list[str]:
    """Prompts cut from the corpus's own documents, as a user of a code model would type them."""
    return corpus_passages(corpus(120), n, seed=seed)


def _digits(n: int) -> list[str]:
    rng = random.Random(2)
    return [" ".join(str(rng.randint(0, 99_999)) for _ in range(rng.randint(3, 12))) for _ in range(n)]


def test_prompts_like_the_corpus_do_not_drift_and_unlike_ones_raise_an_alert(ws, lm) -> None:
    _coder(ws, lm)
    rules = {r.name: r for r in ws.monitoring.alerts.rules("coder")}
    assert rules["prompt-drift"].metric == "text_drift" and rules["prompt-perplexity"].threshold == 2.0
    assert "auc-drop" not in rules  # the lm's defaults, not a classifier's

    _log(ws, _in_domain(60, seed=1), ["x = 1"] * 30 + ["return a + b"] * 30, T0)
    calm = ws.monitoring.run("coder", at=T0 + timedelta(minutes=2))
    assert calm.value("text_drift") == 0.0
    assert calm.value("text_drift_effect") < 0.1  # the MMD effect-size threshold
    assert calm.value("prompt_perplexity_ratio") < 2.0
    assert calm.value("output_length") == pytest.approx(3.5)  # 3 and 4 words, half each
    assert calm.value("output_tokens") > 0
    assert calm.run.reference == "code@1"
    assert not [a for a in calm.alerts if a.rule in ("prompt-drift", "prompt-perplexity")]

    _log(ws, _digits(60), ["1 2"] * 60, T0 + timedelta(minutes=5))
    drifted = ws.monitoring.run("coder", at=T0 + timedelta(minutes=7))
    assert drifted.value("text_drift") == 1.0
    assert drifted.value("text_drift_effect") >= 0.1 and drifted.value("text_drift_pvalue") < 0.05
    assert drifted.value("prompt_perplexity_ratio") > 2.0
    assert drifted.drifted_features == ("prompt",)
    fired = {a.rule: a for a in drifted.alerts}
    assert set(fired) >= {"prompt-drift", "prompt-perplexity"}
    assert fired["prompt-drift"].title.startswith("coder: prompts drifted from code@1: Drifted: MMD^2")
    assert fired["prompt-drift"].evidence["text"]["corpus"] == "code@1"

    series = ws.monitoring.series("coder", "text_drift")
    assert [v for _, _, _, v in series] == [0.0, 1.0]
    assert len(ws.monitoring.series("coder", "output_length")) == 2
    assert ws.monitoring.health(["coder"])["coder"].drifted == ("prompt",)


def test_the_corpus_is_embedded_once_and_then_read_from_the_cache(ws, lm) -> None:
    _coder(ws, lm)
    monitor = TextMonitor(ws, reference_rows=60)
    info = ws.models.get("coder@1")
    first = monitor.reference(info, "code@1")
    assert first.shape == (60, 384) and 0 < monitor.embedded <= 60  # equal passages are embedded once
    embedded = monitor.embedded
    assert monitor.reference(info, "code@1") is first  # this process: from memory
    again = TextMonitor(ws, reference_rows=60).reference(info, "code@1")  # another process: the hash cache
    assert embedded == monitor.embedded and (again == first).all()


def test_a_window_too_small_says_so_and_still_measures_output_length(ws, lm) -> None:
    _coder(ws, lm)
    _log(ws, _in_domain(5, seed=3), ["a b c"] * 5, T0)
    result = ws.monitoring.run("coder", at=T0 + timedelta(minutes=1))
    assert result.value("text_drift") is None and result.value("output_length") == 3.0
    assert "5 prompts in the window, fewer than min_rows=30" in result.run.summary["skipped"][0]
