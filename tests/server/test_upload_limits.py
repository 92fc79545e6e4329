"""POST /api/v1/datasets/{name}: a bad name is refused before the body is read, wide tables are
refused before they are parsed, and the work of an upload never runs on the event loop."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import keel


def _csv(columns: int, rows: int = 3, names: list[str] | None = None) -> bytes:
    header = ",".join(names or [f"g{i}" for i in range(columns)])
    return (header + "\n" + "\n".join([",".join(["1"] * columns)] * rows) + "\n").encode()


def _spooled() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("keel-upload-*"))


@pytest.mark.parametrize("name", ["-starts-with-a-dash", "has space", "x" * 129, "semi;colon"])
def test_an_invalid_name_is_refused_without_reading_the_body(client: Any, name: str) -> None:
    consumed = 0
    chunk = b"a,b\n" + b"1,2\n" * (1 << 18)  # 1 MiB

    def body() -> Iterator[bytes]:
        nonlocal consumed
        for _ in range(64):
            consumed += len(chunk)
            yield chunk

    before = _spooled()
    r = client.post(f"/api/v1/datasets/{name}", content=body(), headers={"content-type": "text/csv"})
    assert r.status_code in (400, 404, 422), r.text
    if r.status_code != 404:  # a name with a '/' or '%' never reaches the route
        assert "Invalid dataset name" in r.json()["error"]["detail"]
    assert consumed == 0, f"{consumed} bytes of the body were read before the name was checked"
    assert _spooled() == before


def test_a_valid_upload_still_works(client: Any) -> None:
    r = client.post("/api/v1/datasets/fine", content=_csv(3), headers={"content-type": "text/csv"})
    assert r.status_code == 201, r.text
    assert (r.json()["ref"], r.json()["num_rows"]) == ("fine@1", 3)


def test_a_table_wider_than_the_limit_is_refused_before_it_is_parsed(
    client: Any, served_ws: keel.Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.csv as pacsv

    def parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was parsed")

    monkeypatch.setattr(pacsv, "read_csv", parse)
    r = client.post("/api/v1/datasets/wide", content=_csv(30_000), headers={"content-type": "text/csv"})
    assert r.status_code == 400, r.text
    assert "30,000 columns" in r.json()["error"]["detail"] and "at most 25,000" in r.json()["error"]["detail"]
    assert [d.name for d in served_ws.datasets.list()] == ["cancer"]


def test_repeated_column_names_are_refused_naming_them(client: Any) -> None:
    r = client.post(
        "/api/v1/datasets/dup", content=_csv(4, names=["a", "b", "a", "b"]), headers={"content-type": "text/csv"}
    )
    assert r.status_code == 400, r.text
    assert "repeated: ['a', 'b']" in r.json()["error"]["detail"]


def test_parsing_profiling_and_encoding_an_upload_run_off_the_event_loop(
    client: Any, served_ws: keel.Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keel.server.routes import api

    on_loop: dict[str, bool] = {}

    def running_loop() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    add, dump = served_ws.datasets.add, api.dump

    def recording_add(*args: Any, **kwargs: Any) -> Any:
        on_loop["add"] = running_loop()
        return add(*args, **kwargs)

    def recording_dump(obj: Any) -> Any:
        on_loop.setdefault("dump", running_loop())
        return dump(obj)

    monkeypatch.setattr(served_ws.datasets, "add", recording_add)
    monkeypatch.setattr(api, "dump", recording_dump)
    r = client.post("/api/v1/datasets/wide", content=_csv(2_000), headers={"content-type": "text/csv"})
    assert r.status_code == 201, r.text
    assert len(r.json()["profile"]["columns"]) == 2_000
    assert on_loop == {"add": False, "dump": False}
