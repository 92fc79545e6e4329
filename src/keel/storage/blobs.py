"""Content-addressed blobs on any fsspec filesystem.

A blob lives at `<root>/sha256/<2 hex>/<62 hex>`. Writes go to a temporary name and are renamed
into place (object stores write atomically by themselves); identical content is stored once;
every read is hashed and checked against the name, so a corrupted blob is reported, not loaded.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import fsspec

from keel.errors import CorruptArtifactError, InvalidInputError, NotFoundError, StoreUnavailableError

logger = logging.getLogger(__name__)

__all__ = ["BlobStore", "BlobInfo", "sha256_file", "parse_digest"]

_CHUNK = 1 << 20


def parse_digest(digest: str) -> str:
    """The 64-hex part of 'sha256:<hex>' (or of a bare hex digest); raise on anything else."""
    hexpart = digest.removeprefix("sha256:")
    if len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise InvalidInputError(f"{digest!r} is not a SHA-256 digest")
    return hexpart


def sha256_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size_bytes: int
    modified_at: datetime | None


class BlobStore:
    """Content-addressed, verified, deduplicated artifact storage.

    >>> store = BlobStore("/tmp/keel-doctest-blobs")
    >>> d = store.put_bytes(b"hello")
    >>> store.get_bytes(d)
    b'hello'
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url
        try:
            self.fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        except (ImportError, ValueError) as exc:
            raise StoreUnavailableError(f"Cannot open the artifact store {url!r}: {exc}") from exc
        self.root = root.rstrip("/")
        self.is_local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        if self.is_local:
            Path(self.root, "tmp").mkdir(parents=True, exist_ok=True)
        else:
            try:
                if not self.fs.exists(self.root):
                    self.fs.mkdir(self.root)
            except OSError as exc:
                raise StoreUnavailableError(f"Cannot reach the artifact store {url!r}: {exc}") from exc

    # -- paths ----------------------------------------------------------------------------
    def _path(self, digest: str) -> str:
        hexpart = parse_digest(digest)
        return f"{self.root}/sha256/{hexpart[:2]}/{hexpart[2:]}"

    def exists(self, digest: str) -> bool:
        return bool(self.fs.exists(self._path(digest)))

    # -- writes ---------------------------------------------------------------------------
    def put_bytes(self, data: bytes) -> str:
        """Store `data`; return its digest ('sha256:<hex>'). Existing content is not rewritten."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.exists(digest):
            self._write(digest, io.BytesIO(data))
        return digest

    def put_file(self, path: str | os.PathLike[str]) -> tuple[str, int]:
        """Store a local file; return (digest, size_bytes)."""
        digest, size = sha256_file(path)
        if not self.exists(digest):
            with open(path, "rb") as fh:
                self._write(digest, fh)
        return digest, size

    def _write(self, digest: str, src: IO[bytes]) -> None:
        final = self._path(digest)
        try:
            if self.is_local:
                Path(final).parent.mkdir(parents=True, exist_ok=True)
                tmp = Path(self.root, "tmp", f"{uuid.uuid4().hex}.part")
                with open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, final)  # atomic: readers see all of it or nothing
            else:
                # An object-store PUT is atomic: the key appears only when the upload completes.
                with self.fs.open(final, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
        except OSError as exc:
            raise StoreUnavailableError(f"Writing artifact {digest} to {self.url} failed: {exc}") from exc
        logger.debug("stored blob %s", digest)

    # -- reads ----------------------------------------------------------------------------
    def get_bytes(self, digest: str) -> bytes:
        """The blob's bytes, verified against its digest."""
        path = self._path(digest)
        try:
            with self.fs.open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError as exc:
            raise NotFoundError(f"Artifact {digest} is missing from {self.url}; it may have been deleted") from exc
        except OSError as exc:
            raise StoreUnavailableError(f"Reading artifact {digest} from {self.url} failed: {exc}") from exc
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise CorruptArtifactError(
                f"Artifact {digest} is corrupted: its content now hashes to {actual}. "
                "Restore it from a backup or register the item again."
            )
        return data

    def get_file(self, digest: str, dest: str | os.PathLike[str]) -> Path:
        """Copy the blob to the local path `dest`, verifying it on the way; return `dest`."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        try:
            with self.fs.open(self._path(digest), "rb") as src, open(tmp, "wb") as out:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
        except FileNotFoundError as exc:
            tmp.unlink(missing_ok=True)
            raise NotFoundError(f"Artifact {digest} is missing from {self.url}") from exc
        if "sha256:" + h.hexdigest() != digest:
            tmp.unlink(missing_ok=True)
            raise CorruptArtifactError(f"Artifact {digest} is corrupted: its content no longer matches its hash")
        os.replace(tmp, dest)
        return dest

    # -- maintenance ----------------------------------------------------------------------
    def iter_blobs(self) -> Iterator[BlobInfo]:
        base = f"{self.root}/sha256"
        try:
            listing = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return
        for path, info in listing.items():
            parts = path.rstrip("/").split("/")
            if len(parts) < 2 or len(parts[-2]) != 2 or len(parts[-1]) != 62:
                continue
            modified = _modified(info)
            yield BlobInfo("sha256:" + parts[-2] + parts[-1], int(info.get("size") or 0), modified)

    def delete(self, digest: str) -> None:
        try:
            self.fs.rm(self._path(digest))
        except FileNotFoundError:
            pass

    def clean_tmp(self, older_than: datetime) -> int:
        """Remove temporary files left by interrupted writes; return how many."""
        if not self.is_local:
            return 0
        removed = 0
        for p in Path(self.root, "tmp").glob("*.part"):
            if datetime.fromtimestamp(p.stat().st_mtime, UTC) < older_than:
                p.unlink(missing_ok=True)
                removed += 1
        return removed


def _modified(info: dict[str, Any]) -> datetime | None:
    for key in ("mtime", "LastModified", "last_modified", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except (TypeError, ValueError):
            continue
    return None


def temp_dir() -> str:
    return tempfile.mkdtemp(prefix="keel-")
