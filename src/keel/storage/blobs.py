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
        try:
            if self.is_local:
                Path(self.root, "tmp").mkdir(parents=True, exist_ok=True)
            elif not self.fs.exists(self.root):
                self.fs.mkdir(self.root)
        except OSError as exc:
            raise StoreUnavailableError(f"Cannot reach the artifact store {url!r}: {exc}") from exc

    # -- paths ----------------------------------------------------------------------------
    def _path(self, digest: str) -> str:
        hexpart = parse_digest(digest)
        return f"{self.root}/sha256/{hexpart[:2]}/{hexpart[2:]}"

    def _tmp_path(self) -> str:
        return f"{self.root}/tmp/{uuid.uuid4().hex}.part"

    def exists(self, digest: str) -> bool:
        return bool(self.fs.exists(self._path(digest)))

    def _has(self, digest: str, size: int) -> bool:
        """True when the blob is stored whole. A blob of the wrong size (truncated by a disk
        failure or a copy outside keel) is rewritten from the content in hand."""
        try:
            stored = int(self.fs.size(self._path(digest)))
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StoreUnavailableError(f"Reading artifact {digest} from {self.url} failed: {exc}") from exc
        if stored != size:
            logger.warning("artifact %s has %d bytes instead of %d; storing it again", digest, stored, size)
            return False
        if self.is_local:
            # An old unreferenced blob is what `gc` deletes: mark it as in use again, so that the
            # grace period covers the metadata write that is about to point at it.
            os.utime(self._path(digest))
        return True

    # -- writes ---------------------------------------------------------------------------
    def put_bytes(self, data: bytes) -> str:
        """Store `data`; return its digest ('sha256:<hex>'). Existing content is not rewritten."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if self._has(digest, len(data)):
            return digest
        if self.is_local:
            self._write(digest, io.BytesIO(data))
        else:
            try:  # one PUT (or a multipart upload completed at the end): the key appears whole or not at all
                self.fs.pipe_file(self._path(digest), data)
            except OSError as exc:
                raise StoreUnavailableError(f"Writing artifact {digest} to {self.url} failed: {exc}") from exc
        return digest

    def put_file(self, path: str | os.PathLike[str]) -> tuple[str, int]:
        """Store a local file; return (digest, size_bytes).

        Raises InvalidInputError when the file changes while it is being stored.
        """
        digest, size = sha256_file(path)
        if not self._has(digest, size):
            with open(path, "rb") as fh:
                self._write(digest, fh)
        return digest, size

    def _write(self, digest: str, src: IO[bytes]) -> None:
        """Copy `src` to a temporary name while hashing it, then move it to its content address.

        Readers never see a partial blob under a digest, and a source that no longer hashes to
        `digest` (a file written to while we read it) is never stored under that digest.
        """
        final, tmp = self._path(digest), self._tmp_path()
        h = hashlib.sha256()
        try:
            if self.is_local:
                try:
                    with open(tmp, "wb") as out:
                        while chunk := src.read(_CHUNK):
                            h.update(chunk)
                            out.write(chunk)
                        out.flush()
                        os.fsync(out.fileno())
                    _check_digest(digest, h)
                    Path(final).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(tmp, final)  # atomic on one filesystem: all of it or nothing
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
            else:
                out = self.fs.open(tmp, "wb")
                try:
                    while chunk := src.read(_CHUNK):
                        h.update(chunk)
                        out.write(chunk)
                except BaseException:
                    _discard(out)  # closing would upload the part written so far
                    raise
                try:
                    out.close()
                    _check_digest(digest, h)
                    self.fs.cp_file(tmp, final)  # a server-side copy: the key appears complete or not at all
                finally:
                    try:
                        self.fs.rm_file(tmp)
                    except FileNotFoundError:
                        pass
        except OSError as exc:
            raise StoreUnavailableError(f"Writing artifact {digest} to {self.url} failed: {exc}") from exc
        logger.debug("stored blob %s", digest)

    # -- reads ----------------------------------------------------------------------------
    def get_bytes(self, digest: str) -> bytes:
        """The blob's bytes, verified against its digest.

        Raises NotFoundError when it is missing and CorruptArtifactError when its bytes changed.
        """
        path = self._path(digest)
        try:
            with self.fs.open(path, "rb") as fh:
                data: bytes = fh.read()  # fsspec's files are untyped
        except FileNotFoundError as exc:
            raise NotFoundError(f"Artifact {digest} is missing from {self.url}; it may have been deleted") from exc
        except OSError as exc:
            raise StoreUnavailableError(f"Reading artifact {digest} from {self.url} failed: {exc}") from exc
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise _corrupt(digest, actual, self.url)
        return data

    def get_file(self, digest: str, dest: str | os.PathLike[str]) -> Path:
        """Copy the blob to the local path `dest`, verifying it on the way; return `dest`.

        `dest` appears only once the copy is complete and verified.
        """
        dest = Path(dest)
        h = hashlib.sha256()
        # Beside `dest` (so the rename is atomic) but never longer than 38 bytes: a name built from
        # `dest.name` passed the 255-byte limit of a file name for names of 220 bytes and more.
        tmp = dest.parent / f".{uuid.uuid4().hex}.part"
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with self.fs.open(self._path(digest), "rb") as src, open(tmp, "wb") as out:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
            actual = "sha256:" + h.hexdigest()
            if actual != digest:
                raise _corrupt(digest, actual, self.url)
            os.replace(tmp, dest)
        except FileNotFoundError as exc:
            raise NotFoundError(f"Artifact {digest} is missing from {self.url}; it may have been deleted") from exc
        except OSError as exc:
            raise StoreUnavailableError(f"Copying artifact {digest} to {str(dest)!r} failed: {exc}") from exc
        finally:
            _remove_quietly(tmp)  # an error here must not hide the one that got us here
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
        removed = 0
        if self.is_local:
            for p in Path(self.root, "tmp").glob("*.part"):
                if datetime.fromtimestamp(p.stat().st_mtime, UTC) < older_than:
                    p.unlink(missing_ok=True)
                    removed += 1
            return removed
        try:
            listing = self.fs.find(f"{self.root}/tmp", detail=True)
        except FileNotFoundError:
            return 0
        for path, info in listing.items():
            modified = _modified(info)
            if path.endswith(".part") and (modified is None or modified < older_than):
                self.fs.rm(path)
                removed += 1
        return removed


def _check_digest(digest: str, h: Any) -> None:
    if "sha256:" + h.hexdigest() != digest:
        raise InvalidInputError(f"The content changed while it was being stored as {digest}; store it again")


def _corrupt(digest: str, actual: str, url: str) -> CorruptArtifactError:
    return CorruptArtifactError(
        f"Artifact {digest} in {url} is corrupted: its content now hashes to {actual}. "
        "Restore it from a backup, or add or register the item again."
    )


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        logger.warning("could not remove the temporary file %s", path, exc_info=True)


def _discard(out: Any) -> None:
    try:
        if hasattr(out, "discard"):
            out.discard()  # fsspec buffered files: drop the buffer, abort a multipart upload
            out.closed = True  # else close(), from __del__, would try to upload the dropped buffer
        else:  # pragma: no cover - every fsspec writer we support has discard()
            out.close()
    except OSError:
        logger.debug("discarding a partial upload failed", exc_info=True)


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
