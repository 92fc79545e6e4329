"""Job payloads as frozen types: the JSON they store is what the dict payloads stored, and a
stored payload that is wrong is refused with what is wrong."""

from __future__ import annotations

from typing import Any

import pytest

from keel.errors import InvalidInputError
from keel.workspace.handlers import HANDLERS
from keel.workspace.payloads import (
    PAYLOADS,
    BatchExplainPayload,
    BatchScorePayload,
    MonitorPayload,
    RetrainPayload,
    TunePayload,
)


def test_every_job_kind_has_a_payload_type() -> None:
    from keel.workspace.payloads import STUDY_PAYLOADS, TWIN_PAYLOADS  # jobs about a study or a twin, not a model

    assert not set(PAYLOADS) & set(STUDY_PAYLOADS) and not set(PAYLOADS) & set(TWIN_PAYLOADS)
    assert set(PAYLOADS) | set(STUDY_PAYLOADS) | set(TWIN_PAYLOADS) == set(HANDLERS)


@pytest.mark.parametrize(
    "stored",
    [
        ("retrain", {"model": "m", "trigger": "new_data", "detail": {"dataset": "d@2"}}),  # the tick
        ("retrain", {"model": "m", "trigger": "manual", "detail": {}, "dataset": "d@1"}),  # keel retrain --background
        ("retrain", {"model": "m"}),
        ("tune", {"model": "m"}),
        ("monitor", {"model": "m"}),
        ("batch_score", {"model": "m@champion", "dataset": "d@latest", "output": "scored", "chunk_rows": 100}),
        ("batch_explain", {"model": "m@1", "dataset": "d@1", "chunk_rows": 30, "top": 2}),
    ],
)
def test_a_stored_payload_reads_back_and_writes_the_same_json(stored: tuple[str, dict[str, Any]]) -> None:
    kind, payload = stored
    typed = PAYLOADS[kind].from_dict(payload)
    assert typed.kind == kind and typed.to_dict() == payload


def test_fields_left_unset_are_not_stored() -> None:
    assert BatchScorePayload("m@1", dataset="d@1").to_dict() == {"model": "m@1", "dataset": "d@1"}
    assert RetrainPayload("m", trigger="manual", dataset=None).to_dict() == {"model": "m", "trigger": "manual"}


def test_retraining_and_tuning_share_one_key_per_model() -> None:
    assert RetrainPayload("m").dedup_key == TunePayload("m").dedup_key == "retrain:m"
    assert MonitorPayload("m").dedup_key == "monitor:m"
    assert BatchScorePayload("m", dataset="d").dedup_key is None


@pytest.mark.parametrize(
    ("kind", "payload", "message"),
    [
        ("retrain", {}, "needs 'model'"),
        ("retrain", {"model": "m", "triger": "manual"}, r"unknown keys \['triger'\]"),
        ("monitor", {"model": 3}, "'model' must be a non-empty string"),
        ("batch_score", {"model": "m@1"}, "needs 'dataset'"),
        ("batch_score", {"model": "m@1", "dataset": "d", "chunk_rows": -5}, "chunk_rows must be >= 1, got -5"),
        ("batch_explain", {"model": "m@1", "dataset": "d", "top": "3"}, "top must be >= 1"),
        ("retrain", {"model": "m", "detail": [1]}, "'detail' must be an object"),
    ],
)
def test_a_wrong_payload_is_refused_with_what_is_wrong(kind: str, payload: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        PAYLOADS[kind].from_dict(payload)


def test_payloads_are_frozen() -> None:
    payload = BatchExplainPayload("m@1", dataset="d@1", top=3)
    with pytest.raises(AttributeError):
        payload.top = 5  # type: ignore[misc]  # the point of the test: assignment is refused


@pytest.mark.parametrize("base", ["./tiny-gpt2", "/etc", "../models/x@1"])
def test_a_tune_job_names_a_registered_model_never_a_folder(base: str) -> None:
    from keel.workspace.payloads import GenAITunePayload

    with pytest.raises(InvalidInputError, match="'model' must be a model reference"):
        GenAITunePayload.from_dict({"model": base, "corpus": "code@1"})
    assert GenAITunePayload.from_dict({"model": "lm@champion", "corpus": "code@1"}).model == "lm@champion"
