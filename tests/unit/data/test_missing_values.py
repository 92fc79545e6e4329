"""Issue 11: an empty CSV cell is a missing value in every column type, and a dataset's nulls and
types survive a download as CSV or Parquet and a re-import (the dashboard's "Download CSV" then
`keel data add`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import keel
from keel.data.tables import read_csv, to_arrow, write_csv

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def client(ws: keel.Workspace) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from keel.server import create_app

    with TestClient(create_app(ws, token_cache_s=0.0), base_url="http://127.0.0.1") as c:
        yield c


def _download(client: Any, ref: str, fmt: str, dest: Path) -> Path:
    r = client.get(f"/api/v1/datasets/{ref}/download", params={"format": fmt})
    assert r.status_code == 200, r.text
    dest.write_bytes(r.content)
    return dest


def test_empty_cells_of_text_columns_are_missing(tmp_path: Path) -> None:
    path = tmp_path / "homes.csv"
    path.write_text('Home,Age,Owner\nrent,30,true\n,,\n"",41,false\nNA,NA,true\n')
    table = to_arrow(path)
    assert table.column("Home").to_pylist() == ["rent", None, None, "NA"]  # "NA" is text in a text column
    assert table.column("Age").to_pylist() == [30, None, 41, None]
    assert table.column("Owner").to_pylist() == [True, None, False, True]
    assert table.schema.types == [pa.string(), pa.int64(), pa.bool_()]


def test_tsv_empty_cells_are_missing_too(tmp_path: Path) -> None:
    path = tmp_path / "homes.tsv"
    path.write_text("Home\tJob\nrent\t\n\tfixed\n")
    table = to_arrow(path)
    assert table.column("Home").to_pylist() == ["rent", None]
    assert table.column("Job").to_pylist() == [None, "fixed"]


def test_the_credit_data_keeps_its_missing_homes_through_csv(
    ws: keel.Workspace, credit: pd.DataFrame, tmp_path: Path
) -> None:
    # The symptom: Home's 6 missing values came back as a new category "".
    v = ws.datasets.add("credit", credit)
    assert v.profile["columns"]["Home"]["missing"] == 6
    csv = tmp_path / "credit.csv"
    write_csv(ws.datasets.load(v, format="arrow"), csv)
    again = ws.datasets.add("credit-csv", csv)
    back = ws.datasets.load(again)
    assert back.isna().sum().to_dict() == credit.isna().sum().to_dict()
    assert "" not in set(back["Home"].dropna())
    home = again.profile["columns"]["Home"]
    assert home["missing"] == 6 and "" not in [t["value"] for t in home["top"]]
    assert [(c.name, c.type, c.nullable) for c in again.columns] == [(c.name, c.type, c.nullable) for c in v.columns]


def _mixed() -> pa.Table:
    return pa.table(
        {
            "text": pa.array(["a", None, "b,c", 'say "hi"', "NA"]),
            "count": pa.array([1, None, 3, -4, 5], pa.int64()),
            "whole": pa.array([80.0, None, 120.0, -0.0, 3.0], pa.float64()),  # read back as int64 before the fix
            "ratio": pa.array([0.1, 2.5, None, 1e20, 1 / 3], pa.float64()),
            "flag": pa.array([True, None, False, True, False]),
            "day": pa.array(
                [dt.date(2024, 1, 1), None, dt.date(2024, 2, 29), dt.date(1999, 12, 31), dt.date(2024, 1, 2)]
            ),
            "empty": pa.array([None, None, None, None, None], pa.string()),
        }
    )


def test_csv_round_trip_through_the_api_keeps_values_nulls_types_and_digest(
    ws: keel.Workspace, client: Any, tmp_path: Path
) -> None:
    source = tmp_path / "mixed.csv"
    write_csv(_mixed().drop_columns(["empty"]), source)
    v1 = ws.datasets.add("mixed", source)
    first = ws.datasets.load(v1, format="arrow")
    assert first.column("whole").type == pa.float64()
    assert first.column("text").null_count == 1 and first.column("whole").null_count == 1

    again = ws.datasets.add("mixed", _download(client, v1.ref, "csv", tmp_path / "downloaded.csv"))
    assert again.digest == v1.digest and again.version == v1.version  # equal content: the same version
    assert ws.datasets.load(again, format="arrow").equals(first)


def test_a_pandas_frame_survives_download_as_csv_and_re_import(ws: keel.Workspace, client: Any, tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"Home": ["rent", None, "owner", float("nan")], "Income": [80.0, None, 120.0, 95.0], "Age": [30, 41, 52, 23]}
    )
    v = ws.datasets.add("frame", frame)
    back = ws.datasets.load(ws.datasets.add("frame-csv", _download(client, v.ref, "csv", tmp_path / "f.csv")))
    assert back["Home"].isna().tolist() == [False, True, False, True]
    assert back["Income"].isna().tolist() == [False, True, False, False]
    assert back["Income"].dtype == "float64" and back["Age"].dtype == "int64"
    assert back["Home"].dropna().tolist() == ["rent", "owner"]


def test_parquet_round_trip_is_exact_even_for_empty_strings(ws: keel.Workspace, client: Any, tmp_path: Path) -> None:
    table = _mixed().append_column("blank", pa.array(["", None, "x", "", "y"]))
    v1 = ws.datasets.add("exact", table)
    path = _download(client, v1.ref, "parquet", tmp_path / "exact.parquet")
    again = ws.datasets.add("exact", path)
    assert again.digest == v1.digest and again.version == v1.version
    loaded = ws.datasets.load(again, format="arrow")
    assert loaded.column("blank").to_pylist() == ["", None, "x", "", "y"]
    assert loaded.equals(table)


def test_an_empty_string_does_not_survive_csv_it_comes_back_missing(tmp_path: Path) -> None:
    # The documented limit: CSV has one spelling for "no value", so "" and null both read as missing.
    path = tmp_path / "blank.csv"
    write_csv(pa.table({"blank": ["", None, "x"]}), path)
    assert read_csv(path).column("blank").to_pylist() == [None, None, "x"]


def test_a_one_column_csv_keeps_its_missing_rows(tmp_path: Path) -> None:
    # A missing value in a one-column CSV is an empty line, which pyarrow skips by default.
    path = tmp_path / "one.csv"
    write_csv(pa.table({"n": pa.array([1, None, 3], pa.int64())}), path)
    assert read_csv(path).column("n").to_pylist() == [1, None, 3]


def test_write_csv_marks_whole_floats_as_floats_only_where_needed(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    write_csv(pa.table({"whole": [1.0, None, -0.0], "ratio": [1.0, 2.5, None]}), path)
    lines = path.read_text().splitlines()
    assert lines[1:] == ['"1.0",1', ",2.5", '"-0.0",']
    back = read_csv(path)
    assert back.schema.types == [pa.float64(), pa.float64()]
    assert back.column("whole").to_pylist() == [1.0, None, -0.0]
    # pyarrow itself writes the Parquet we download: it reads as the same table.
    pq.write_table(back, tmp_path / "f.parquet")
    assert pq.read_table(tmp_path / "f.parquet").equals(back)
