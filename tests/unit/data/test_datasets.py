"""ws.datasets: add tables and folders as immutable, content-addressed versions; load them back exactly."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from pandas.testing import assert_frame_equal

import keel
from keel import CorruptArtifactError, InvalidInputError, NotFoundError, Settings
from keel.data import parquet_bytes, to_arrow
from keel.storage import datasets as dataset_store

from .conftest import read_pgm, write_digits


def _blob_path(ws: keel.Workspace, digest: str) -> Path:
    hexpart = digest.removeprefix("sha256:")
    return Path(ws.artifacts_url, "sha256", hexpart[:2], hexpart[2:])


def _digests(ws: keel.Workspace) -> set[str]:
    return {b.digest for b in ws._blobs.iter_blobs()}


def _rich_frame() -> pd.DataFrame:
    """Every dtype a user is likely to hand us, on a named, non-range index."""
    index = pd.Index(["a-1", "a-2", "a-3", "a-4"], name="customer_id")
    return pd.DataFrame(
        {
            "plan": pd.Categorical(["basic", "pro", "basic", None], categories=["pro", "basic", "team"], ordered=True),
            "segment": pd.Categorical([3, 1, 3, 3], categories=[1, 2, 3]),
            "visits": pd.array([4, None, 7, 1], dtype="Int64"),
            "spend": [10.5, np.nan, 3.25, 0.0],
            "churned": [True, False, False, True],
            "active": pd.array([True, None, False, True], dtype="boolean"),
            "signup": pd.to_datetime(["2024-01-02", "2024-03-04", "2025-05-06", "2025-07-08"]).tz_localize("UTC"),
            "city": pd.Series(["Oslo", None, "Lima", "Pune"], index=index, dtype="str"),
            "note": pd.Series(["x", None, "z", "w"], index=index, dtype=object),
        },
        index=index,
    )


# -- adding and loading tables -------------------------------------------------------------------
def test_credit_frame_loads_back_exactly_as_added(ws: keel.Workspace, credit: pd.DataFrame) -> None:
    v = ws.datasets.add("credit", credit)
    assert (v.ref, v.kind, v.num_rows) == ("credit@1", "table", 4454)
    assert v.digest.startswith("sha256:") and len(v.digest) == 71
    assert_frame_equal(ws.datasets.load("credit@1"), credit)


def test_frame_with_categoricals_nullable_types_and_index_loads_back_exactly(ws: keel.Workspace) -> None:
    frame = _rich_frame()
    ws.datasets.add("customers", frame)
    loaded = ws.datasets.load("customers")
    assert_frame_equal(loaded, frame)
    assert list(loaded["plan"].cat.categories) == ["pro", "basic", "team"] and loaded["plan"].cat.ordered
    assert list(loaded["segment"].cat.categories) == [1, 2, 3]


def test_arrow_table_loads_back_identical_including_types_and_metadata(ws: keel.Workspace) -> None:
    table = pa.table(
        {
            "id": pa.array([1, 2, 3], type=pa.uint32()),
            "name": pa.array(["a", "b", None], type=pa.large_string()),
            "grade": pa.array(["x", "y", "x"]).dictionary_encode(),
            "code": pa.DictionaryArray.from_arrays(pa.array([0, 1, 0], pa.int8()), pa.array([7, 9, 11])),
            "at": pa.array([1, 2, 3], type=pa.timestamp("ms", tz="Europe/Oslo")),
            "tags": pa.array([["p"], [], None], type=pa.list_(pa.string())),
        },
        metadata={"source": "unit test"},
    )
    ws.datasets.add("events", table)
    loaded = ws.datasets.load("events", format="arrow")
    assert loaded.schema.equals(table.schema, check_metadata=True)
    assert loaded.equals(table)


def test_csv_file_is_added_as_a_table(ws: keel.Workspace, credit: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "credit.csv"
    credit.to_csv(path, index=False)
    v = ws.datasets.add("credit", path)
    assert (v.num_rows, [c.name for c in v.columns]) == (4454, list(credit.columns))
    # pyarrow's reading, except that empty cells of text columns are missing too (issue 11)
    nulls = pacsv.ConvertOptions(strings_can_be_null=True)
    assert ws.datasets.load("credit", format="arrow").equals(pacsv.read_csv(path, convert_options=nulls))
    assert ws.datasets.load("credit").isna().sum().to_dict() == credit.isna().sum().to_dict()
    assert ws.datasets.add("credit", str(path)).version == 1  # same file again: same version


def test_parquet_file_is_added_and_loads_as_the_frame_it_holds(ws: keel.Workspace, tmp_path: Path) -> None:
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    path = tmp_path / "wine.parquet"
    frame.to_parquet(path)
    v = ws.datasets.add("wine", path)
    assert v.num_rows == 178
    assert_frame_equal(ws.datasets.load("wine"), frame)


def test_multiindex_and_timedelta_frame_loads_back_exactly(ws: keel.Workspace) -> None:
    index = pd.MultiIndex.from_arrays([pd.Index(["eu", "us"], dtype=object), [2024, 2025]], names=["region", "year"])
    frame = pd.DataFrame({"latency": pd.to_timedelta([1.5, None], unit="s"), "n": [3, 4]}, index=index)
    v = ws.datasets.add("latency", frame)
    assert_frame_equal(ws.datasets.load("latency"), frame)
    assert v.profile["columns"]["latency"] == {
        "type": "duration[ns]",
        "count": 1,
        "missing": 1,
        "kind": "duration",
        "min": "0 days 00:00:01.500000",
        "max": "0 days 00:00:01.500000",
    }


def test_materialized_parquet_added_again_is_the_same_version(ws: keel.Workspace, tmp_path: Path) -> None:
    v = ws.datasets.add("customers", _rich_frame())
    out = ws.datasets.materialize(v, tmp_path / "out")
    assert ws.datasets.add("customers", out / "customers.parquet") == v
    assert ws.datasets.add("copy", out / "customers.parquet").digest == v.digest


# -- deduplication ---------------------------------------------------------------------------------
def test_identical_content_returns_the_existing_version_without_a_new_row(
    ws: keel.Workspace, credit: pd.DataFrame
) -> None:
    first = ws.datasets.add("credit", credit)
    again = ws.datasets.add("credit", credit.copy(), description="ignored: nothing new is stored")
    assert again == first
    assert [v.version for v in ws.datasets.versions("credit")] == [1]
    assert ws.datasets.list()[0].num_versions == 1


def test_re_adding_old_content_returns_the_old_version(ws: keel.Workspace) -> None:
    a, b = pd.DataFrame({"x": [1, 2]}), pd.DataFrame({"x": [1, 2, 3]})
    ws.datasets.add("d", a)
    ws.datasets.add("d", b)
    assert ws.datasets.add("d", a).version == 1
    assert len(ws.datasets.versions("d")) == 2


def test_same_content_in_two_datasets_is_stored_once(ws: keel.Workspace, credit: pd.DataFrame) -> None:
    a = ws.datasets.add("credit", credit)
    b = ws.datasets.add("credit-copy", credit)
    assert a.digest == b.digest and (a.ref, b.ref) == ("credit@1", "credit-copy@1")
    assert _digests(ws) == {a.digest}


def test_versions_round_trip_through_either_metadata_store(any_ws: keel.Workspace) -> None:
    ws = any_ws
    v1 = ws.datasets.add("credit", pd.DataFrame({"x": [1.5, None]}), description="d", tags={"k": "v"})
    v2 = ws.datasets.add("credit", pd.DataFrame({"x": [2.5]}))
    assert ws.datasets.add("credit", pd.DataFrame({"x": [1.5, None]})) == v1
    assert ws.datasets.get("credit@1") == v1 and ws.datasets.get("credit") == v2
    assert ws.datasets.get(f"credit@{v2.short_digest}") == v2
    assert v1.created_at.tzinfo is not None and v1.profile["columns"]["x"]["missing"] == 1
    assert [(s.name, s.latest_version, s.num_versions) for s in ws.datasets.list()] == [("credit", 2, 2)]
    with pytest.raises(NotFoundError, match="no version 3"):
        ws.datasets.get("credit@3")


# -- what a version records ------------------------------------------------------------------------
def test_schema_records_names_types_nullability_and_categories(ws: keel.Workspace) -> None:
    v = ws.datasets.add("customers", _rich_frame())
    columns = {c.name: c for c in v.columns}
    assert list(columns) == list(_rich_frame().columns)  # the index is not a column
    assert columns["plan"].categories == ("pro", "basic", "team")
    assert columns["plan"].type.startswith("dictionary<values=") and "ordered=1" in columns["plan"].type
    assert (columns["visits"].type, columns["visits"].nullable) == ("int64", True)
    assert (columns["churned"].type, columns["churned"].nullable) == ("bool", False)
    assert columns["spend"].nullable and columns["churned"].categories is None


def test_profile_records_rows_stats_histogram_top_categories_and_missing(
    ws: keel.Workspace, credit: pd.DataFrame
) -> None:
    profile = ws.datasets.add("credit", credit).profile
    assert (profile["num_rows"], profile["num_columns"]) == (4454, credit.shape[1])
    income = profile["columns"]["Income"]
    observed = credit["Income"].dropna()
    assert income["missing"] == credit["Income"].isna().sum() > 0
    assert income["count"] == len(observed)
    assert income["mean"] == pytest.approx(observed.mean())
    assert income["std"] == pytest.approx(observed.std())
    assert (income["min"], income["max"]) == (observed.min(), observed.max())
    assert income["quantiles"]["p50"] == pytest.approx(observed.median())
    assert sum(income["histogram"]["counts"]) == len(observed)
    assert len(income["histogram"]["edges"]) == len(income["histogram"]["counts"]) + 1
    home = profile["columns"]["Home"]
    counts = credit["Home"].value_counts()
    assert home["kind"] == "categorical" and home["missing"] == credit["Home"].isna().sum()
    assert home["top"][0] == {"value": counts.index[0], "count": int(counts.iloc[0])}
    assert home["distinct"] == credit["Home"].nunique()


def test_version_records_author_time_description_tags_and_parent(ws: keel.Workspace) -> None:
    before = datetime.now(UTC)
    tags: Any = {"source": "crm", "rows": 1}  # values are stored as text
    v1 = ws.datasets.add("d", pd.DataFrame({"x": [1]}), description="first cut", tags=tags)
    v2 = ws.datasets.add("d", pd.DataFrame({"x": [1, 2]}))
    v3 = ws.datasets.add("d", pd.DataFrame({"x": [1, 2, 3]}), parent=1)
    assert v1.author == "tester"
    assert before - timedelta(seconds=1) <= v1.created_at <= datetime.now(UTC) and v1.created_at.tzinfo is not None
    assert (v1.description, v1.tags) == ("first cut", {"source": "crm", "rows": "1"})
    assert (v1.parent_version, v2.parent_version, v3.parent_version) == (None, 1, 1)
    assert ws.datasets.get("d@1") == v1  # as stored, not just as returned


def test_parent_that_does_not_exist_raises_not_found(ws: keel.Workspace) -> None:
    ws.datasets.add("d", pd.DataFrame({"x": [1]}))
    with pytest.raises(NotFoundError, match="no version 5"):
        ws.datasets.add("d", pd.DataFrame({"x": [2]}), parent=5)
    assert len(ws.datasets.versions("d")) == 1


# -- references ------------------------------------------------------------------------------------
@pytest.fixture
def three_versions(ws: keel.Workspace) -> list[Any]:
    return [ws.datasets.add("credit", pd.DataFrame({"x": list(range(n))})) for n in (1, 2, 3)]


@pytest.mark.parametrize(
    ("ref", "rows"), [("credit@1", 1), ("credit@2", 2), ("credit@3", 3), ("credit@latest", 3), ("credit", 3)]
)
def test_load_by_version_latest_or_bare_name(
    ws: keel.Workspace, three_versions: list[Any], ref: str, rows: int
) -> None:
    assert len(ws.datasets.load(ref)) == rows


def test_load_by_hash_prefix(ws: keel.Workspace, three_versions: list[Any]) -> None:
    second = three_versions[1]
    prefix = second.digest.removeprefix("sha256:")[:12]
    assert ws.datasets.get(f"credit@{second.short_digest}") == second
    assert ws.datasets.get(f"credit@sha256:{prefix}") == second
    assert len(ws.datasets.load(f"credit@{prefix}")) == 2


def test_ambiguous_hash_prefix_asks_for_more_digits(ws: keel.Workspace) -> None:
    for tail in ("0", "1"):  # two versions whose digests share their first 8 hex digits
        digest = "sha256:abcdef12" + tail * 56
        ws._meta.datasets.add_version(
            "amb",
            digest=digest,
            kind="table",
            num_rows=0,
            size_bytes=0,
            columns=[],
            profile={},
            author="x",
            description="",
            tags={},
            blob_digests=[digest],
        )
    with pytest.raises(InvalidInputError, match="matches several versions"):
        ws.datasets.get("amb@abcdef12")
    assert ws.datasets.get("amb@abcdef121").version == 2


def test_load_as_arrow(ws: keel.Workspace, three_versions: list[Any]) -> None:
    table = ws.datasets.load("credit@2", format="arrow")
    assert isinstance(table, pa.Table) and table.column("x").to_pylist() == [0, 1]


def test_unknown_dataset_raises_not_found_naming_it_and_the_known_ones(
    ws: keel.Workspace, three_versions: list[Any]
) -> None:
    with pytest.raises(NotFoundError, match=r"No dataset named 'cerdit'\. Known datasets: credit"):
        ws.datasets.load("cerdit")


def test_unknown_version_raises_not_found_naming_it_and_the_latest(
    ws: keel.Workspace, three_versions: list[Any]
) -> None:
    with pytest.raises(NotFoundError, match=r"'credit' has no version 9; the latest is 3"):
        ws.datasets.get("credit@9")


def test_unknown_hash_prefix_raises_not_found(ws: keel.Workspace, three_versions: list[Any]) -> None:
    unused = next(p for p in ("aaaaaa", "ffffff") if not any(v.digest[7:].startswith(p) for v in three_versions))
    with pytest.raises(NotFoundError, match=unused):
        ws.datasets.get(f"credit@{unused}")


def test_alias_reference_to_a_dataset_raises_invalid_input(ws: keel.Workspace, three_versions: list[Any]) -> None:
    with pytest.raises(InvalidInputError, match="version number, 'latest' or a content-hash prefix"):
        ws.datasets.get("credit@champion")


def test_versions_of_unknown_dataset_raises_not_found(ws: keel.Workspace) -> None:
    with pytest.raises(NotFoundError, match="'nothing'"):
        ws.datasets.versions("nothing")


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "source",
    [[1, 2, 3], {"x": [1]}, np.zeros((2, 2)), 42, pd.Series([1, 2]), pd.DataFrame({"x": [1]}).T.reset_index(drop=True)],
    ids=["list", "dict", "ndarray", "int", "series", "int-column-names"],
)
def test_unsupported_source_raises_invalid_input(ws: keel.Workspace, source: Any) -> None:
    with pytest.raises(InvalidInputError):
        ws.datasets.add("d", source)
    assert ws.datasets.list() == []


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("notes.txt", b"hello"),
        ("data.json", b'{"x": 1}'),
        ("broken.parquet", b"PAR1 not really"),
        ("ragged.csv", b"a,b\n1,2,3\n"),
    ],
)
def test_unsupported_or_unreadable_file_raises_invalid_input(
    ws: keel.Workspace, tmp_path: Path, filename: str, content: bytes
) -> None:
    path = tmp_path / filename
    path.write_bytes(content)
    with pytest.raises(InvalidInputError, match=filename):
        ws.datasets.add("d", path)
    assert _digests(ws) == set()


def test_missing_file_raises_not_found(ws: keel.Workspace, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="nope.csv"):
        ws.datasets.add("d", tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame([[1, 2]], columns=["a", "a"]), "unique"),
        (pd.DataFrame({"x": ["a", 1]}), "Cannot store"),
        (pd.DataFrame(index=[0, 1]), "no columns"),
        (pd.DataFrame({"bin": pd.cut([1, 5], [0, 4, 8])}), "astype\\(str\\)"),
    ],
    ids=["duplicate-columns", "mixed-object-column", "no-columns", "interval-categories"],
)
def test_frame_that_cannot_be_stored_raises_invalid_input(
    ws: keel.Workspace, frame: pd.DataFrame, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        ws.datasets.add("d", frame)


def test_arrow_table_with_duplicate_column_names_raises_invalid_input(ws: keel.Workspace) -> None:
    with pytest.raises(InvalidInputError, match="unique"):
        ws.datasets.add("d", pa.table([[1], [2]], names=["a", "a"]))


@pytest.mark.parametrize("name", ["", "../escape", "has space", "-dash"])
def test_invalid_dataset_name_raises_invalid_input(ws: keel.Workspace, name: str) -> None:
    with pytest.raises(InvalidInputError, match="dataset name"):
        ws.datasets.add(name, pd.DataFrame({"x": [1]}))


def test_unknown_load_format_raises_invalid_input(ws: keel.Workspace) -> None:
    ws.datasets.add("d", pd.DataFrame({"x": [1]}))
    with pytest.raises(InvalidInputError, match="format"):
        ws.datasets.load("d", format="csv")  # type: ignore[arg-type]


# -- failures leave stored state unchanged ---------------------------------------------------------
def test_failed_metadata_write_adds_no_version_and_gc_removes_the_orphaned_blob(
    any_ws: keel.Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = any_ws
    first = pd.DataFrame({"x": [1, 2, 3]})
    v1 = ws.datasets.add("credit", first)
    second = pd.DataFrame({"x": [4, 5, 6]})
    orphan = "sha256:" + hashlib.sha256(parquet_bytes(to_arrow(second))).hexdigest()

    def fail(row: Any) -> Any:  # runs inside the transaction, after the version and blob rows are inserted
        raise RuntimeError("connection lost mid-commit")

    with monkeypatch.context() as m:
        m.setattr(dataset_store, "_version", fail)
        with pytest.raises(RuntimeError, match="mid-commit"):
            ws.datasets.add("credit", second)

    assert _digests(ws) == {v1.digest, orphan}  # the blob was written first...
    assert ws.datasets.versions("credit") == [v1]  # ...but no row points at it
    assert_frame_equal(ws.datasets.load("credit"), first)
    assert ws.gc().deleted == () and ws.gc().kept_young == 1  # within the grace period: kept
    assert ws.gc(grace_s=0, dry_run=True).deleted == (orphan,) and orphan in _digests(ws)
    report = ws.gc(grace_s=0)
    assert report.deleted == (orphan,)
    assert _digests(ws) == {v1.digest}
    assert_frame_equal(ws.datasets.load("credit@1"), first)
    assert ws.datasets.add("credit", second).version == 2  # and the add works once the store does


def test_failed_first_add_leaves_no_dataset(ws: keel.Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataset_store, "_version", lambda row: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        ws.datasets.add("fresh", pd.DataFrame({"x": [1]}))
    monkeypatch.undo()
    assert ws.datasets.list() == []
    with pytest.raises(NotFoundError):
        ws.datasets.get("fresh")


def test_corrupted_dataset_blob_raises_corrupt_artifact_on_load(ws: keel.Workspace, credit: pd.DataFrame) -> None:
    v = ws.datasets.add("credit", credit)
    blob = _blob_path(ws, v.digest)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the Parquet data
    blob.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError, match=v.digest):
        ws.datasets.load("credit")
    with pytest.raises(CorruptArtifactError):
        ws.datasets.load("credit", format="arrow")


def test_gc_keeps_every_blob_a_version_points_at(ws: keel.Workspace, digits_folder: Path) -> None:
    table = ws.datasets.add("t", pd.DataFrame({"x": [1]}))
    folder = ws.datasets.add("digits", digits_folder)
    report = ws.gc(grace_s=0)
    assert report.deleted == ()
    assert ws.datasets.read_file(folder, "README.txt").startswith(b"scikit-learn digits")
    assert len(ws.datasets.load(table)) == 1


# -- folders of files ------------------------------------------------------------------------------
def test_folder_of_images_and_text_is_a_files_version(ws: keel.Workspace, digits_folder: Path) -> None:
    v = ws.datasets.add("digits", digits_folder, description="8x8 digits")
    assert (v.kind, v.num_rows) == ("files", 42)  # 40 images, labels.csv, README.txt
    assert v.profile["extensions"] == {".pgm": 40, ".csv": 1, ".txt": 1}
    assert v.profile["folders"]["7"] == 4 and v.profile["folders"]["."] == 2
    listing = ws.datasets.load("digits")
    assert list(listing.columns) == [c.name for c in v.columns] == ["path", "size_bytes", "digest"]
    on_disk = [p.relative_to(digits_folder).as_posix() for p in digits_folder.rglob("*") if p.is_file()]
    assert sorted(listing["path"]) == sorted(on_disk)
    image = read_pgm(ws.datasets.read_file("digits", "3/img0.pgm"))
    assert np.array_equal(image, read_pgm((digits_folder / "3" / "img0.pgm").read_bytes()))


def test_same_folder_is_the_same_version_and_a_changed_one_a_new_version(
    ws: keel.Workspace, digits_folder: Path
) -> None:
    v1 = ws.datasets.add("digits", digits_folder)
    assert ws.datasets.add("digits", digits_folder) == v1
    write_digits(digits_folder, offset=4)  # different samples under the same names
    v2 = ws.datasets.add("digits", digits_folder)
    assert (v2.version, v2.parent_version) == (2, 1)
    assert ws.datasets.read_file("digits@1", "0/img0.pgm") != ws.datasets.read_file("digits@2", "0/img0.pgm")


def test_materialize_recreates_the_folder_byte_for_byte(
    ws: keel.Workspace, digits_folder: Path, tmp_path: Path
) -> None:
    ws.datasets.add("digits", digits_folder)
    out = ws.datasets.materialize("digits", tmp_path / "out")
    originals = {p.relative_to(digits_folder): p.read_bytes() for p in digits_folder.rglob("*") if p.is_file()}
    copies = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert copies == originals


@pytest.mark.parametrize("length", [220, 250, 255])
def test_a_file_with_a_name_near_the_255_byte_limit_is_stored_and_materialized(
    ws: keel.Workspace, tmp_path: Path, length: int
) -> None:
    # The temporary name used to be `.<name>.<uuid>.part`: 40 bytes longer than the file's own.
    root = tmp_path / "long"
    root.mkdir()
    name = "x" * (length - 4) + ".txt"
    (root / name).write_bytes(b"long name")
    (root / "short.txt").write_bytes(b"short")
    ws.datasets.add("long", root)
    out = ws.datasets.materialize("long", tmp_path / "out")
    assert (out / name).read_bytes() == b"long name" and (out / "short.txt").read_bytes() == b"short"
    assert sorted(p.name for p in out.iterdir()) == sorted([name, "short.txt"])  # no temporary file left


def test_a_failed_copy_reports_its_own_error_not_the_cleanup_one(ws: keel.Workspace, tmp_path: Path) -> None:
    digest = ws._blobs.put_bytes(b"payload")
    with pytest.raises(keel.StoreUnavailableError, match="Copying artifact"):
        ws._blobs.get_file(digest, tmp_path / ("y" * 300))  # a name no file system allows


def test_materialize_table_writes_a_parquet_file(ws: keel.Workspace, credit: pd.DataFrame, tmp_path: Path) -> None:
    ws.datasets.add("credit", credit)
    out = ws.datasets.materialize("credit", tmp_path / "out")
    # Any Parquet reader can open it; pandas 3's own reader just prefers its str dtype.
    assert_frame_equal(pd.read_parquet(out / "credit.parquet"), credit, check_dtype=False, check_column_type=False)


def test_empty_folder_raises_invalid_input(ws: keel.Workspace, tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(InvalidInputError, match="holds no files"):
        ws.datasets.add("d", tmp_path / "empty")


@pytest.mark.parametrize("target", ["file", "folder"])
def test_folder_with_a_symlink_escaping_it_is_refused_and_nothing_is_stored(
    ws: keel.Workspace, digits_folder: Path, tmp_path: Path, target: str
) -> None:
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "id_rsa").write_text("PRIVATE KEY")
    (digits_folder / "zz-link").symlink_to(secret / "id_rsa" if target == "file" else secret)
    with pytest.raises(InvalidInputError, match="links outside the folder"):
        ws.datasets.add("digits", digits_folder)
    assert _digests(ws) == set() and ws.datasets.list() == []


def test_symlink_to_a_file_inside_the_folder_is_followed(ws: keel.Workspace, tmp_path: Path) -> None:
    root = tmp_path / "f"
    root.mkdir()
    (root / "data.txt").write_text("inside")
    (root / "alias.txt").symlink_to(root / "data.txt")
    ws.datasets.add("f", root)
    assert ws.datasets.read_file("f", "alias.txt") == b"inside"


def test_materialize_refuses_a_symlink_in_dest_that_leads_outside(
    ws: keel.Workspace, digits_folder: Path, tmp_path: Path
) -> None:
    ws.datasets.add("digits", digits_folder)
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "5").symlink_to(outside)  # a class folder that is really somewhere else
    with pytest.raises(InvalidInputError, match="leads outside"):
        ws.datasets.materialize("digits", dest)
    assert list(outside.iterdir()) == []
    assert [p.name for p in dest.iterdir()] == ["5"]  # refused before anything was written


@pytest.mark.parametrize("evil", ["../escaped.txt", "/tmp/keel-absolute-escape.txt", "a/../../escaped.txt"])
def test_materialize_refuses_a_manifest_path_outside_dest(ws: keel.Workspace, tmp_path: Path, evil: str) -> None:
    # A manifest no keel would write, as a tampered store could hold it.
    content = ws._blobs.put_bytes(b"payload")
    manifest = json.dumps({"kind": "files", "files": [{"path": evil, "digest": content, "size_bytes": 7}]}).encode()
    digest = ws._blobs.put_bytes(manifest)
    ws._meta.datasets.add_version(
        "evil",
        digest=digest,
        kind="files",
        num_rows=1,
        size_bytes=7,
        columns=[],
        profile={},
        author="x",
        description="",
        tags={},
        blob_digests=[digest, content],
    )
    dest = tmp_path / "deep" / "dest"
    with pytest.raises(InvalidInputError, match="leads outside"):
        ws.datasets.materialize("evil", dest)
    assert not (tmp_path / "deep" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/keel-absolute-escape.txt").exists()


def test_files_of_a_table_and_diff_of_folders_raise_invalid_input(ws: keel.Workspace, digits_folder: Path) -> None:
    ws.datasets.add("t", pd.DataFrame({"x": [1]}))
    ws.datasets.add("digits", digits_folder)
    with pytest.raises(InvalidInputError, match="not a folder"):
        ws.datasets.files("t")
    with pytest.raises(InvalidInputError, match="folders"):
        ws.datasets.diff("digits", "t")
    with pytest.raises(NotFoundError, match="no file 'missing.png'"):
        ws.datasets.read_file("digits", "missing.png")


# -- concurrency -----------------------------------------------------------------------------------
def test_two_threads_adding_to_one_dataset_get_distinct_versions(store_url: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "ws", store_url=store_url, author="tester")
    workspaces = [keel.Workspace(settings), keel.Workspace(settings)]  # as two processes would
    barrier = threading.Barrier(2)
    added: list[tuple[int, int, int]] = []
    errors: list[BaseException] = []

    def add(worker: int) -> None:
        barrier.wait()
        for i in range(6):
            try:
                v = workspaces[worker].datasets.add("shared", pd.DataFrame({"worker": [worker], "i": [i]}))
                added.append((v.version, worker, i))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=add, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sorted(v for v, _, _ in added) == list(range(1, 13))
    for version, worker, i in added:  # each number points at what that thread stored
        assert workspaces[0].datasets.load(f"shared@{version}").iloc[0].tolist() == [worker, i]
    for w in workspaces:
        w.close()


# -- S3 --------------------------------------------------------------------------------------------
@pytest.fixture
def s3_ws(settings: Settings, s3_bucket: tuple[str, dict[str, Any]]) -> Any:
    url, options = s3_bucket
    w = keel.Workspace(settings, artifacts=url, artifacts_options=options)
    yield w
    w.close()


def test_dataset_round_trip_on_s3(s3_ws: keel.Workspace, credit: pd.DataFrame) -> None:
    assert s3_ws.artifacts_url.startswith("s3://")
    v = s3_ws.datasets.add("credit", credit)
    assert s3_ws.datasets.add("credit", credit) == v
    assert_frame_equal(s3_ws.datasets.load("credit@1"), credit)
    assert [b.digest for b in s3_ws._blobs.iter_blobs()] == [v.digest]
    assert not Path(s3_ws.settings.home, "artifacts").exists()  # nothing went to the local default


def test_folder_dataset_on_s3(s3_ws: keel.Workspace, tmp_path: Path) -> None:
    folder = write_digits(tmp_path / "digits", per_class=1)
    v = s3_ws.datasets.add("digits", folder)
    assert v.num_rows == 12
    assert s3_ws.datasets.read_file("digits", "labels.csv") == (folder / "labels.csv").read_bytes()
    out = s3_ws.datasets.materialize("digits", tmp_path / "out")
    originals = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == originals


def test_corrupted_dataset_on_s3_raises_corrupt_artifact(s3_ws: keel.Workspace) -> None:
    v = s3_ws.datasets.add("d", pd.DataFrame({"x": [1.0, 2.0]}))
    s3_ws._blobs.fs.pipe_file(s3_ws._blobs._path(v.digest), b"not what was stored")
    with pytest.raises(CorruptArtifactError):
        s3_ws.datasets.load("d")


def test_gc_on_s3_deletes_orphans_and_keeps_referenced_blobs(s3_ws: keel.Workspace) -> None:
    kept = s3_ws.datasets.add("d", pd.DataFrame({"x": [1]}))
    orphan = s3_ws._blobs.put_bytes(b"left behind by a failed add")
    assert s3_ws.gc().deleted == ()  # young: within the grace period
    assert s3_ws.gc(grace_s=0).deleted == (orphan,)
    assert [b.digest for b in s3_ws._blobs.iter_blobs()] == [kept.digest]
    assert len(s3_ws.datasets.load("d")) == 1
