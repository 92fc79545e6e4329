"""`ws.genai.train` / `.tune` / `.split` / `.evaluation` / `.adapter`: a language model trained on a corpus
version's training side, measured on its held-out side against Kneser-Ney and a general model, tracked
and registered with lineage; a general model tuned with LoRA on the same corpus, its adapter stored on
its own; the jobs; and bad input refused with nothing stored."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

import keel
from keel.errors import InvalidInputError, NotFoundError

TINY = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 64, "vocab_size": 512}
FAST = {"config": TINY, "steps": 50, "batch": 8, "lr": 1e-2, "valid_share": 0.2}


def topics(first: int, last: int) -> pd.DataFrame:
    from pydoc_data.topics import topics as shipped

    names = sorted(shipped)[first:last]
    return pd.DataFrame({"text": [shipped[t] for t in names]})


@pytest.fixture(scope="module")
def lws(tmp_path_factory: pytest.TempPathFactory) -> keel.Workspace:
    ws = keel.Workspace(keel.Settings(home=tmp_path_factory.mktemp("ws"), author="tester"))
    ws.datasets.add("docs", topics(0, 30))
    ws.datasets.add("general-text", topics(30, 50))
    ws.datasets.add("one", pd.DataFrame({"text": ["only one document here"]}))
    ws.datasets.add("short", pd.DataFrame({"text": [f"short text number {i} of {i * 7}" for i in range(40)]}))
    ws.datasets.add("numbers", pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [2.0, 4.0, 6.0]}))
    X = ws.datasets.load("numbers@1")[["x"]]
    ws.models.register("numbers-model", LinearRegression().fit(X, [2.0, 4.0, 6.0]), X=X)
    ws.genai.train("general", "general-text@1", text_column="text", **FAST)
    ws.genai.train("domain", "docs@1", text_column="text", general="general@1", **FAST)
    return ws


def test_a_trained_model_is_measured_tracked_and_registered(lws: keel.Workspace) -> None:
    mv = lws.models.get("domain@1")
    assert mv.flavor == "lm" and mv.datasets == ("docs@1",)
    assert mv.tags == {
        "keel.genai": "train",
        "keel.corpus": "docs@1",
        "keel.general": "general@1",
        "keel.text_column": "text",  # the monitor reads the same column for its reference
    }
    m = mv.metrics
    for key in ("val_perplexity", "ngram_perplexity", "bigram_perplexity", "general_perplexity"):
        assert 1.0 < m[key] < 512, key  # a proper model is between certainty and the uniform over the vocabulary
    assert m["steps"] == 50 and m["train_tokens"] == 50 * 8 * 64 and m["tokens_per_s"] > 0
    assert m["parameters"] == lws.models.load("domain@1").model.n_params
    # bits per byte = ln(perplexity) * predicted tokens / (bytes * ln 2); one stream, so one ratio for both
    ratio = m["held_out_tokens"] / (m["held_out_bytes"] * math.log(2))
    assert m["val_bits_per_byte"] == pytest.approx(math.log(m["val_perplexity"]) * ratio, rel=1e-12)
    assert m["ngram_bits_per_byte"] == pytest.approx(math.log(m["ngram_perplexity"]) * ratio, rel=1e-12)
    run = lws.runs.get(mv.run_id)
    assert run.experiment == "genai-domain" and run.status.value == "finished"
    assert run.params["train_documents"] == str(lws.genai.split("docs@1", valid_share=0.2).dedupe["train_documents"])
    losses = [p.value for p in lws.runs.metric_history(run.id, "train_loss")]
    assert len(losses) == 50 and np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3  # the loss falls
    assert len(lws.runs.metric_history(run.id, "val_loss")) >= 5
    assert lws.models.load("domain@1").predict(pd.DataFrame({"prompt": ["The with statement"]})).shape == (1,)


def test_the_split_is_the_same_every_time_and_disjoint(lws: keel.Workspace) -> None:
    first, again = lws.genai.split("docs@1"), lws.genai.split("docs@1")
    assert first == again and first.corpus == "docs@1"
    assert first.train and first.valid and not set(first.train) & set(first.valid)
    d = first.dedupe
    assert (
        d["documents"] == 30 and d["train_documents"] == len(first.train) and d["valid_documents"] == len(first.valid)
    )
    assert d["train_exact_removed"] > 0  # pydoc's topics repeat boilerplate paragraphs
    assert lws.genai.split("docs@1", seed=1) != first


def test_a_lora_tune_registers_the_merged_model_and_keeps_its_adapter(lws: keel.Workspace) -> None:
    from keel.genai.lora import LoRAAdapter, merge_adapter

    mv = lws.genai.tune("general@1", "docs@1", text_column="text", r=4, steps=30, batch=8, lr=1e-2, valid_share=0.2)
    assert mv.ref == "general@2" and mv.datasets == ("docs@1",)
    assert mv.tags["keel.genai"] == "tune-lora" and mv.tags["keel.base"] == "general@1"
    m = mv.metrics
    assert m["adapter_perplexity"] == pytest.approx(m["val_perplexity"], rel=1e-4)  # merged equals the adapter
    # the base before tuning on the same held-out texts is the general model the domain model was compared with
    assert m["base_perplexity"] == pytest.approx(lws.models.get("domain@1").metrics["general_perplexity"], rel=1e-6)
    adapter = lws.genai.adapter(mv.ref)
    assert isinstance(adapter, LoRAAdapter) and adapter.r == 4
    stored = lws.models.load(mv.ref).model
    merged = merge_adapter(lws.models.load("general@1").model, adapter)
    assert all(np.allclose(merged.state[k], stored.state[k], atol=1e-6) for k in stored.state)
    base = lws.models.load("general@1").model
    assert any(not np.array_equal(base.state[k], stored.state[k]) for k in base.state)  # tuning changed weights
    with pytest.raises(NotFoundError, match="has no LoRA adapter"):
        lws.genai.adapter("domain@1")

    report = lws.genai.evaluation("domain@1")
    assert report["model"] == "domain@1" and report["corpus"] == "docs@1" and report["held_out_documents"] > 0
    rows = {r["kind"]: r for r in report["rows"]}
    assert list(rows) == ["domain", "ngram-3", "ngram-2", "general", "general+lora"]
    assert rows["general+lora"]["name"] == "general@2"
    assert rows["general+lora"]["perplexity"] == m["val_perplexity"]
    assert rows["general"]["bits_per_byte"] == lws.models.get("domain@1").metrics["general_bits_per_byte"]
    tuned = {r["kind"]: r["name"] for r in lws.genai.evaluation("general@2")["rows"]}
    assert tuned == {
        "domain": "general@2",
        "base": "general@1",
        "ngram-3": tuned["ngram-3"],
        "ngram-2": tuned["ngram-2"],
    }


def test_training_and_tuning_run_as_jobs(lws: keel.Workspace) -> None:
    job = lws.jobs.run(
        "genai_train", {"model": "jobbed", "corpus": "docs@1", "text_column": "text", "steps": 10, "config": TINY}
    )
    assert job.status == "succeeded", job.error
    assert job.result["model"] == "jobbed@1" and job.result["val_perplexity"] > 1
    tuned = lws.jobs.run(
        "genai_tune", {"model": "jobbed@1", "corpus": "docs@1", "text_column": "text", "method": "full", "steps": 5}
    )
    assert tuned.status == "succeeded", tuned.error
    assert tuned.result["model"] == "jobbed@2" and tuned.result["base"] == "jobbed@1"
    assert (
        lws.models.get("jobbed@2").tags["keel.genai"] == "tune-full"
        and "keel.adapter" not in lws.models.get("jobbed@2").tags
    )
    bad = lws.jobs.run("genai_train", {"model": "x", "corpus": "docs@1", "valid_share": 2})
    assert bad.status == "failed" and "'valid_share' must be a number in (0, 0.5]" in (bad.error or "")


@pytest.mark.parametrize(
    ("corpus", "options", "message"),
    [
        ("one@1", {}, "1 document with text; a language model needs at least 2"),
        ("numbers@1", {}, "0 text columns"),
        ("docs@1", {"text_column": "text", "config": {"layers": 2}}, r"unknown keys \['layers'\]"),
        ("docs@1", {"text_column": "text", "config": "huge"}, "unknown config preset 'huge'"),
        ("docs@1", {"text_column": "text", "valid_share": 0.0}, r"valid_share must be in \(0, 0.5\]"),
        ("docs@1", {"text_column": "text", "general": "numbers-model@1"}, "not a language model"),
        ("docs@1", {"text_column": "text", "steps": 0}, "steps must be an integer >= 1"),
        ("short@1", {"config": TINY | {"block_size": 512}}, "block_size 512 needs at least 513"),
    ],
)
def test_bad_input_is_refused_with_nothing_stored(
    lws: keel.Workspace, corpus: str, options: dict, message: str
) -> None:
    models = {m.name: m.latest_version for m in lws.models.list()}
    with pytest.raises(InvalidInputError, match=message):
        lws.genai.train("refused", corpus, **options)
    assert {m.name: m.latest_version for m in lws.models.list()} == models
    assert lws.runs.list(experiment="genai-refused") == []


def test_tuning_refuses_what_is_not_a_language_model(lws: keel.Workspace) -> None:
    with pytest.raises(InvalidInputError, match="method must be one of lora, full"):
        lws.genai.tune("general@1", "docs@1", method="adapter")
    with pytest.raises(InvalidInputError, match="base model numbers-model@1 is a 'sklearn' model"):
        lws.genai.tune("numbers-model@1", "docs@1")
    with pytest.raises(InvalidInputError, match="has no held-out evaluation"):
        lws.genai.evaluation("numbers-model@1")
