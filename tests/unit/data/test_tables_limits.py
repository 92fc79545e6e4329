"""Wide tables: the duplicate-name check is linear, and a column limit refuses a table before parsing it."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import keel
from keel import ConfigError, InvalidInputError, Settings
from keel.data.tables import DEFAULT_MAX_COLUMNS, _csv_header_width, duplicate_names, to_arrow


def _wide_csv(path: Path, columns: int, rows: int = 20, *, names: list[str] | None = None) -> Path:
    header = ",".join(names or [f"g{i}" for i in range(columns)])
    row = ",".join(str(i % 10) for i in range(columns))
    path.write_text(header + "\n" + "\n".join([row] * rows) + "\n")
    return path


def test_duplicate_names_lists_each_repeated_name_once() -> None:
    assert duplicate_names(["a", "b", "a", "c", "b", "a"]) == ["a", "b"]
    assert duplicate_names([f"c{i}" for i in range(1000)]) == []


def test_the_duplicate_check_is_linear_in_the_number_of_columns() -> None:
    # A complexity check, not a benchmark: the quadratic check took about 10 ms per column at
    # 10,000 columns (minutes in all); a linear one takes milliseconds. The bound is generous.
    table = pa.table({f"c{i}": pa.array([i]) for i in range(20_000)})
    start = time.perf_counter()
    assert to_arrow(table) is table
    assert duplicate_names([f"n{i}" for i in range(200_000)]) == []
    assert time.perf_counter() - start < 2.0


def test_a_csv_with_repeated_column_names_is_refused_naming_them(ws: keel.Workspace, tmp_path: Path) -> None:
    path = _wide_csv(tmp_path / "dup.csv", 5, names=["age", "income", "age", "zip", "income"])
    with pytest.raises(InvalidInputError, match=r"repeated: \['age', 'income'\]"):
        ws.datasets.add("dup", path)
    assert ws.datasets.list() == []


def test_many_repeated_names_are_counted_in_the_message(tmp_path: Path) -> None:
    path = _wide_csv(tmp_path / "dup.csv", 16, names=[f"c{i % 8}" for i in range(16)])
    with pytest.raises(InvalidInputError, match="and 3 more"):
        to_arrow(path)


def test_a_csv_wider_than_the_limit_is_refused_before_it_is_parsed(
    ws: keel.Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _wide_csv(tmp_path / "wide.csv", 30_000)
    import pyarrow.csv as pacsv

    def parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was parsed")

    monkeypatch.setattr(pacsv, "read_csv", parse)
    with pytest.raises(InvalidInputError, match=r"has 30,000 columns; a dataset holds at most 25,000") as info:
        ws.datasets.add("wide", path)
    assert "KEEL_DATASET_MAX_COLUMNS" in str(info.value)
    assert ws.datasets.list() == []


def test_a_10000_column_csv_is_stored_under_the_default_limit(ws: keel.Workspace, tmp_path: Path) -> None:
    assert DEFAULT_MAX_COLUMNS == Settings().dataset_max_columns >= 10_000  # gene-expression wide
    path = _wide_csv(tmp_path / "wide.csv", 10_000)
    version = ws.datasets.add("wide", path)
    assert (version.num_rows, len(version.columns)) == (20, 10_000)


def test_the_limit_is_a_setting(tmp_path: Path) -> None:
    settings = Settings.from_env({"KEEL_DATASET_MAX_COLUMNS": "3"}, home=tmp_path / "ws")
    with keel.Workspace(settings) as ws:
        ws.datasets.add("narrow", pd.DataFrame({"a": [1], "b": [2], "c": [3]}))
        frame = pd.DataFrame({"a": [1], "b": [2], "c": [3], "d": [4]})
        with pytest.raises(InvalidInputError, match="has 4 columns; a dataset holds at most 3"):
            ws.datasets.add("wide", frame)
        with pytest.raises(InvalidInputError, match="has 4 columns"):
            ws.datasets.add("wide", pa.Table.from_pandas(frame))
        frame.to_parquet(tmp_path / "wide.parquet")
        with pytest.raises(InvalidInputError, match="has 4 columns"):
            ws.datasets.add("wide", tmp_path / "wide.parquet")
        assert [d.name for d in ws.datasets.list()] == ["narrow"]
    with pytest.raises(ConfigError, match="KEEL_DATASET_MAX_COLUMNS"):
        Settings(dataset_max_columns=0)


def test_a_parquet_file_wider_than_the_limit_is_refused_from_its_footer(tmp_path: Path) -> None:
    pq.write_table(pa.table({f"c{i}": [i] for i in range(50)}), tmp_path / "wide.parquet")
    with pytest.raises(InvalidInputError, match="has 50 columns; a dataset holds at most 10"):
        to_arrow(tmp_path / "wide.parquet", max_columns=10)


@pytest.mark.parametrize(
    ("header", "width"),
    [
        (b"a,b,c", 3),
        (b'"a,b",c', 2),  # a quoted delimiter
        (b'"a""b",c', 2),  # a doubled quote inside quotes
        (b'"a\nb",c', 2),  # a quoted newline belongs to the name
        (b'a"b,"c,d"', 2),  # a quote inside an unquoted name is an ordinary character
        (b'"a"b"c,d', 2),
        (b"\n\r\na,b", 2),  # empty lines before the header
        (b'\xef\xbb\xbf"a,x",b', 2),  # a byte-order mark, then a quoted name
        (b"a,b\r", 2),
        (b"", 3),  # no header line: the first row is the header
    ],
)
def test_the_header_is_counted_as_pyarrow_parses_it(tmp_path: Path, header: bytes, width: int) -> None:
    path = tmp_path / "h.csv"
    path.write_bytes(header + b"\n1,2,3\n")
    assert _csv_header_width(path, b",") == (width, True)
    import pyarrow.csv as pacsv

    names = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(invalid_row_handler=lambda _: "skip")).column_names
    assert len(names) == width


def test_a_header_longer_than_the_scan_gives_a_lower_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from keel.data import tables

    monkeypatch.setattr(tables, "_HEADER_SCAN_BYTES", 1 << 16)
    path = tmp_path / "h.csv"
    path.write_bytes(b",".join(b"c%d" % i for i in range(100_000)) + b"\n")
    width, exact = _csv_header_width(path, b",")
    assert not exact and 10_000 < width < 100_000
    with pytest.raises(InvalidInputError, match="has at least"):
        to_arrow(path, max_columns=5_000)
