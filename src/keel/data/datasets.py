"""Dataset versions: add (content-addressed, deduplicated), load by reference, list, diff."""

from __future__ import annotations

import builtins
import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from keel.data.diff import diff_tables
from keel.data.profile import column_schema, profile_table
from keel.data.tables import DEFAULT_MAX_COLUMNS, index_columns, parquet_bytes, read_parquet, to_arrow, to_pandas
from keel.entities import DatasetDiff, DatasetSummary, DatasetVersion
from keel.errors import InvalidInputError, NotFoundError
from keel.refs import Ref, check_name, parse_ref

if TYPE_CHECKING:
    from keel.storage import BlobStore, MetadataStore

logger = logging.getLogger(__name__)

__all__ = ["Datasets", "to_arrow", "parquet_bytes"]

# What a folder dataset loads as: one row per file, in the order of the version's `columns`.
_FILES_SCHEMA = pa.schema([("path", pa.string()), ("size_bytes", pa.int64()), ("digest", pa.string())])


class Datasets:
    """The datasets of one workspace: `ws.datasets`."""

    def __init__(
        self, meta: MetadataStore, blobs: BlobStore, *, author: str, max_columns: int = DEFAULT_MAX_COLUMNS
    ) -> None:
        self._meta = meta
        self._blobs = blobs
        self._author = author
        self._max_columns = max_columns

    def check_name(self, name: str) -> str:
        """`name` if it can name a dataset; InvalidInputError otherwise. Cheap: the server calls
        it before it reads an upload, so a bad name is refused without spooling the body."""
        return check_name(name, what="dataset name")

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

        `source`: a pandas DataFrame, an Arrow table, a CSV/TSV/Parquet path or a folder of files.
        Writes the content blob(s) before the metadata that points at them, so a failed add
        leaves no version behind (only blobs that `ws.gc()` removes). Raises InvalidInputError
        for a source it cannot store (including one with more columns than the workspace's
        `dataset_max_columns`), NotFoundError for a missing path or `parent` version.

        >>> v = ws.datasets.add("credit", frame)          # doctest: +SKIP
        >>> v.ref, v.digest[:15]                          # doctest: +SKIP
        ('credit@1', 'sha256:9f2c1ab7')
        """
        check_name(name, what="dataset name")
        tags = {str(k): str(v) for k, v in (tags or {}).items()}
        if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
            return self._add_folder(name, Path(source), description=description, tags=tags, parent=parent)
        table = to_arrow(source, max_columns=self._max_columns)
        described = _data_columns(table)
        if described.num_columns == 0:
            raise InvalidInputError(f"Dataset {name!r}: the table has no columns")
        data = parquet_bytes(table)
        digest = self._blobs.put_bytes(data)
        version, created = self._meta.datasets.add_version(
            name,
            digest=digest,
            kind="table",
            num_rows=table.num_rows,
            size_bytes=len(data),
            columns=column_schema(described),
            profile=profile_table(described),
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
        files = []  # every path is checked before anything is stored: a refusal leaves no blobs behind
        for path in sorted(root.rglob("*")):  # does not descend into symlinked folders
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                raise InvalidInputError(f"{str(path)!r} links outside the folder {str(root)!r}; refusing to follow it")
            if path.is_file():
                files.append(path)
        if not files:
            raise InvalidInputError(f"The folder {str(root)!r} holds no files")
        entries: list[dict[str, Any]] = []  # the manifest's JSON entries
        for path in files:
            digest, size = self._blobs.put_file(path)
            entries.append({"path": path.relative_to(root).as_posix(), "digest": digest, "size_bytes": size})
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
        version, created = self._meta.datasets.add_version(
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
        if created:
            logger.info("dataset %s stored (%s files, %s)", version.ref, len(entries), digest[:19])
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

    def versions(self, name: str) -> builtins.list[DatasetVersion]:
        return self._meta.datasets.versions(check_name(name, what="dataset name"))

    def load_arrow(self, ref: str | DatasetVersion) -> pa.Table:
        version = self.get(ref)
        data = self._blobs.get_bytes(version.digest)
        if version.kind == "files":
            return pa.Table.from_pylist(json.loads(data)["files"], schema=_FILES_SCHEMA)
        return read_parquet(data)

    def load(self, ref: str | DatasetVersion, *, format: Literal["pandas", "arrow"] = "pandas") -> Any:
        """The version's content as pandas (default) or Arrow, exactly as stored.

        A folder dataset loads as its file listing (path, digest, size_bytes); read the files
        with `read_file` or `materialize`.
        """
        if format not in ("pandas", "arrow"):
            raise InvalidInputError(f"format must be 'pandas' or 'arrow', got {format!r}")
        table = self.load_arrow(ref)
        return table if format == "arrow" else to_pandas(table)

    def files(self, ref: str | DatasetVersion) -> builtins.list[dict[str, Any]]:
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
        """Write the version under `dest` (its files, or `<name>.parquet`); return the folder.

        Never writes outside `dest`: a file path that would leave it (through '..', an absolute
        path or a symlink already in `dest`) raises InvalidInputError before anything is written.
        """
        version = self.get(ref)
        dest = Path(dest).resolve()
        if version.kind == "table":
            dest.mkdir(parents=True, exist_ok=True)
            self._blobs.get_file(version.digest, dest / f"{version.name}.parquet")
            return dest
        targets = []
        for entry in self.files(version):
            target = (dest / entry["path"]).resolve()
            if target == dest or not target.is_relative_to(dest):
                raise InvalidInputError(
                    f"File path {entry['path']!r} of {version.ref} leads outside {str(dest)!r}; nothing was written"
                )
            targets.append((entry["digest"], target))
        dest.mkdir(parents=True, exist_ok=True)
        for digest, target in targets:
            self._blobs.get_file(digest, target)
        return dest

    def diff(self, a: str | DatasetVersion, b: str | DatasetVersion) -> DatasetDiff:
        """Schema changes, row-count change and per-column distribution change from a to b."""
        va, vb = self.get(a), self.get(b)
        if va.kind != "table" or vb.kind != "table":
            raise InvalidInputError("diff compares table datasets; folders of files have no columns")
        return diff_tables(va.ref, _data_columns(self.load_arrow(va)), vb.ref, _data_columns(self.load_arrow(vb)))


def _data_columns(table: pa.Table) -> pa.Table:
    """The table without the columns that hold a pandas index: what schema, profile and diff describe."""
    index = index_columns(table)
    return table.drop_columns([n for n in table.column_names if n in index]) if index else table
