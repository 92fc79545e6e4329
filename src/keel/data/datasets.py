"""Dataset versions: add (content-addressed, deduplicated), load by reference, list, diff."""

from __future__ import annotations

import io
import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from keel.data.diff import diff_tables
from keel.data.profile import column_schema, profile_table
from keel.entities import DatasetDiff, DatasetSummary, DatasetVersion
from keel.errors import InvalidInputError, NotFoundError
from keel.refs import Ref, check_name, parse_ref

if TYPE_CHECKING:
    import pandas as pd

    from keel.storage import BlobStore, MetadataStore

logger = logging.getLogger(__name__)

__all__ = ["Datasets", "to_arrow"]

_TABLE_SUFFIXES = {".csv", ".tsv", ".parquet", ".pq"}


def to_arrow(source: Any) -> pa.Table:
    """A pandas DataFrame, Arrow table, or CSV/TSV/Parquet path as an Arrow table."""
    if isinstance(source, pa.Table):
        return source
    if isinstance(source, pa.RecordBatch):
        return pa.Table.from_batches([source])
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a core dependency
        pd = None  # type: ignore[assignment]
    if pd is not None and isinstance(source, pd.DataFrame):
        bad = [c for c in source.columns if not isinstance(c, str)]
        if bad:
            raise InvalidInputError(f"Column names must be strings; got {bad[:5]!r}. Rename them first.")
        try:
            return pa.Table.from_pandas(source, preserve_index=None)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidInputError(f"Cannot store this DataFrame as a table: {exc}") from exc
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise NotFoundError(f"No such file or folder: {str(path)!r}")
        suffix = path.suffix.lower()
        try:
            if suffix in (".csv", ".tsv"):
                import pyarrow.csv as pacsv

                opts = pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",")
                return pacsv.read_csv(path, parse_options=opts)
            if suffix in (".parquet", ".pq"):
                return pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidInputError(f"Cannot read {str(path)!r} as a {suffix[1:]} table: {exc}") from exc
        raise InvalidInputError(f"{str(path)!r} is not a table: expected .csv, .tsv, .parquet or a folder")
    raise InvalidInputError(
        f"Cannot make a dataset from {type(source).__name__}: give a DataFrame, an Arrow table, "
        "a CSV/Parquet path or a folder"
    )


def parquet_bytes(table: pa.Table) -> bytes:
    """Deterministic Parquet encoding: the same table always gives the same bytes (and digest)."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", use_dictionary=True, write_statistics=True)
    return buf.getvalue()


class Datasets:
    """The datasets of one workspace: `ws.datasets`."""

    def __init__(self, meta: MetadataStore, blobs: BlobStore, *, author: str) -> None:
        self._meta = meta
        self._blobs = blobs
        self._author = author

    # -- add ------------------------------------------------------------------------------
    def add(
        self,
        name: str,
        source: Any,
        *,
        description: str = "",
        tags: dict[str, str] | None = None,
        parent: int | None = None,
    ) -> DatasetVersion:
        """Store `source` as a new immutable version of `name`; identical content returns the stored one.

        Writes the content blob(s) before the metadata that points at them.

        >>> v = ws.datasets.add("credit", frame)          # doctest: +SKIP
        >>> v.ref, v.digest[:15]                          # doctest: +SKIP
        ('credit@1', 'sha256:9f2c1ab7')
        """
        check_name(name, what="dataset name")
        tags = {str(k): str(v) for k, v in (tags or {}).items()}
        if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
            return self._add_folder(name, Path(source), description=description, tags=tags, parent=parent)
        table = to_arrow(source)
        if table.num_columns == 0:
            raise InvalidInputError(f"Dataset {name!r}: the table has no columns")
        data = parquet_bytes(table)
        digest = self._blobs.put_bytes(data)
        version, created = self._meta.datasets.add_version(
            name,
            digest=digest,
            kind="table",
            num_rows=table.num_rows,
            size_bytes=len(data),
            columns=column_schema(table),
            profile=profile_table(table),
            author=self._author,
            description=description,
            tags=tags,
            blob_digests=[digest],
            parent_version=parent,
        )
        if created:
            logger.info("dataset %s stored (%s rows, %s)", version.ref, table.num_rows, digest[:19])
        return version

    def _add_folder(
        self, name: str, root: Path, *, description: str, tags: dict[str, str], parent: int | None
    ) -> DatasetVersion:
        root = root.resolve()
        entries = []
        for path in sorted(root.rglob("*")):
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                raise InvalidInputError(f"{str(path)!r} links outside the folder {str(root)!r}; refusing to follow it")
            if not path.is_file():
                continue
            rel = path.relative_to(root).as_posix()
            digest, size = self._blobs.put_file(path)
            entries.append({"path": rel, "digest": digest, "size_bytes": size})
        if not entries:
            raise InvalidInputError(f"The folder {str(root)!r} holds no files")
        manifest = json.dumps({"kind": "files", "files": entries}, sort_keys=True, separators=(",", ":")).encode()
        digest = self._blobs.put_bytes(manifest)
        sizes = [e["size_bytes"] for e in entries]
        ext = Counter((Path(e["path"]).suffix.lower() or "(none)") for e in entries)
        top_dirs = Counter(e["path"].split("/")[0] if "/" in e["path"] else "." for e in entries)
        profile = {
            "num_rows": len(entries),
            "num_files": len(entries),
            "total_bytes": sum(sizes),
            "min_bytes": min(sizes),
            "max_bytes": max(sizes),
            "extensions": dict(ext.most_common(20)),
            "folders": dict(top_dirs.most_common(50)),  # with class-per-folder layouts, the class counts
        }
        columns = [
            {"name": "path", "type": "string", "nullable": False},
            {"name": "size_bytes", "type": "int64", "nullable": False},
            {"name": "digest", "type": "string", "nullable": False},
        ]
        version, _ = self._meta.datasets.add_version(
            name,
            digest=digest,
            kind="files",
            num_rows=len(entries),
            size_bytes=sum(sizes),
            columns=columns,
            profile=profile,
            author=self._author,
            description=description,
            tags=tags,
            blob_digests=[digest, *(e["digest"] for e in entries)],
            parent_version=parent,
        )
        return version

    # -- read -----------------------------------------------------------------------------
    def get(self, ref: str | DatasetVersion) -> DatasetVersion:
        """The version a reference names: 'credit', 'credit@3', 'credit@latest' or 'credit@9f2c1a'."""
        if isinstance(ref, DatasetVersion):
            return ref
        return self._meta.datasets.get(parse_ref(ref, hashes=True))

    def version_id(self, ref: str | DatasetVersion) -> int:
        if isinstance(ref, DatasetVersion):
            return self._meta.datasets.get_id(Ref(ref.name, version=ref.version))
        return self._meta.datasets.get_id(parse_ref(ref, hashes=True))

    def list(self) -> list[DatasetSummary]:
        return self._meta.datasets.list()

    def versions(self, name: str) -> list[DatasetVersion]:
        return self._meta.datasets.versions(check_name(name, what="dataset name"))

    def load_arrow(self, ref: str | DatasetVersion) -> pa.Table:
        version = self.get(ref)
        data = self._blobs.get_bytes(version.digest)
        if version.kind == "files":
            manifest = json.loads(data)
            return pa.Table.from_pylist(manifest["files"])
        return pq.read_table(pa.BufferReader(data))

    def load(self, ref: str | DatasetVersion, *, format: Literal["pandas", "arrow"] = "pandas") -> Any:
        """The version's content as pandas (default) or Arrow, exactly as stored.

        A folder dataset loads as its file listing (path, digest, size_bytes); read the files
        with `read_file` or `materialize`.
        """
        if format not in ("pandas", "arrow"):
            raise InvalidInputError(f"format must be 'pandas' or 'arrow', got {format!r}")
        table = self.load_arrow(ref)
        return table if format == "arrow" else table.to_pandas()

    def files(self, ref: str | DatasetVersion) -> list[dict[str, Any]]:
        version = self.get(ref)
        if version.kind != "files":
            raise InvalidInputError(f"{version.ref} is a table, not a folder of files")
        return list(json.loads(self._blobs.get_bytes(version.digest))["files"])

    def read_file(self, ref: str | DatasetVersion, path: str) -> bytes:
        """The bytes of one file of a folder dataset."""
        for entry in self.files(ref):
            if entry["path"] == path:
                return self._blobs.get_bytes(entry["digest"])
        raise NotFoundError(f"{self.get(ref).ref} has no file {path!r}")

    def materialize(self, ref: str | DatasetVersion, dest: str | os.PathLike[str]) -> Path:
        """Write the version under `dest` (its files, or `<name>.parquet`); return the folder."""
        version = self.get(ref)
        dest = Path(dest).resolve()
        dest.mkdir(parents=True, exist_ok=True)
        if version.kind == "table":
            self._blobs.get_file(version.digest, dest / f"{version.name}.parquet")
            return dest
        for entry in self.files(version):
            target = (dest / entry["path"]).resolve()
            if not target.is_relative_to(dest):
                raise InvalidInputError(f"File path {entry['path']!r} escapes the destination folder")
            self._blobs.get_file(entry["digest"], target)
        return dest

    def diff(self, a: str | DatasetVersion, b: str | DatasetVersion) -> DatasetDiff:
        """Schema changes, row-count change and per-column distribution change from a to b."""
        va, vb = self.get(a), self.get(b)
        if va.kind != "table" or vb.kind != "table":
            raise InvalidInputError("diff compares table datasets; folders of files have no columns")
        return diff_tables(va.ref, self.load_arrow(va), vb.ref, self.load_arrow(vb))
