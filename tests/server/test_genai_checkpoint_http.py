"""POST /api/v1/genai/tune takes a model reference only: a checkpoint directory (or any path) named by a
client is refused with 422 naming `base`, and nothing is queued or read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import keel

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize("base", ["./tiny-gpt2", "/etc", "{dir}", "../models/x@1"])
def test_a_directory_base_is_refused(ws: keel.Workspace, tmp_path: Path, base: str) -> None:
    from fastapi.testclient import TestClient

    from keel.server import create_app

    (tmp_path / "config.json").write_text("{}")  # an existing directory: still refused, never read
    body: dict[str, Any] = {"base": base.format(dir=tmp_path), "corpus": "docs@1", "steps": 1}
    with TestClient(create_app(ws, token_cache_s=0.0), base_url="http://127.0.0.1") as client:
        answer = client.post("/api/v1/genai/tune", json=body, headers=JSON)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["field"] == "base" and "checkpoint directory" in error["detail"]
    assert ws.jobs.list() == []
