"""Content-addressed blobs: SHA-256 names, atomic writes, one copy per content, verified reads."""

from __future__ import annotations

import hashlib
import io
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from keel import CorruptArtifactError, InvalidInputError, NotFoundError, StoreUnavailableError
from keel.storage import BlobStore
from keel.storage import blobs as blobs_module


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(str(tmp_path / "artifacts"))


def _blob_file(store: BlobStore, digest: str) -> Path:
    hexpart = digest.removeprefix("sha256:")
    return Path(store.root, "sha256", hexpart[:2], hexpart[2:])


def test_put_bytes_stores_under_the_sha256_of_the_content(store: BlobStore) -> None:
    digest = store.put_bytes(b"hello")
    assert digest == _sha(b"hello")
    assert _blob_file(store, digest).read_bytes() == b"hello"
    assert store.get_bytes(digest) == b"hello"


def test_same_bytes_are_stored_once(store: BlobStore) -> None:
    first = store.put_bytes(b"same content")
    inode = _blob_file(store, first).stat().st_ino
    second = store.put_bytes(b"same content")
    assert first == second
    assert [b.digest for b in store.iter_blobs()] == [first]
    assert _blob_file(store, first).stat().st_ino == inode  # not rewritten


def test_storing_existing_content_again_makes_it_young_for_gc(store: BlobStore) -> None:
    digest = store.put_bytes(b"orphaned by a failed write")
    two_hours_ago = (datetime.now(UTC) - timedelta(hours=2)).timestamp()
    os.utime(_blob_file(store, digest), (two_hours_ago, two_hours_ago))
    store.put_bytes(b"orphaned by a failed write")  # a new version is about to point at it
    (info,) = store.iter_blobs()
    assert info.modified_at is not None and datetime.now(UTC) - info.modified_at < timedelta(minutes=1)


def test_put_file_and_put_bytes_of_the_same_content_share_one_blob(store: BlobStore, tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"\x00\x01payload")
    digest, size = store.put_file(path)
    assert (digest, size) == (store.put_bytes(b"\x00\x01payload"), 9)
    assert len(list(store.iter_blobs())) == 1


class _WatchingReader(io.BytesIO):
    """A source that records, at every read, whether the final blob path already exists."""

    def __init__(self, data: bytes, final: Path, fail_after: int | None = None) -> None:
        super().__init__(data)
        self.final, self.fail_after, self.reads, self.final_seen = final, fail_after, 0, False

    def read(self, size: int | None = -1) -> bytes:
        self.final_seen |= self.final.exists()
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            raise OSError("disk went away")
        return super().read(size)


def test_write_goes_to_a_temporary_name_and_is_renamed_into_place(store: BlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024)  # several chunks
    digest = _sha(data)
    reader = _WatchingReader(data, _blob_file(store, digest))
    store._write(digest, reader)
    assert reader.reads > 2 and not reader.final_seen
    assert _blob_file(store, digest).read_bytes() == data
    assert list(Path(store.root, "tmp").iterdir()) == []


def test_write_that_fails_midway_leaves_no_blob_and_no_temporary_file(store: BlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024)
    digest = _sha(data)
    with pytest.raises(StoreUnavailableError, match="disk went away"):
        store._write(digest, _WatchingReader(data, _blob_file(store, digest), fail_after=1))
    assert not store.exists(digest)
    assert list(Path(store.root, "tmp").iterdir()) == []


def test_file_that_changes_while_stored_is_not_stored_under_the_old_digest(
    store: BlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "growing.log"
    path.write_bytes(b"line 2\n")
    stale = _sha(b"line 1\n")  # what the file held when it was hashed
    monkeypatch.setattr(blobs_module, "sha256_file", lambda p: (stale, 7))
    with pytest.raises(InvalidInputError, match="changed while it was being stored"):
        store.put_file(path)
    assert not store.exists(stale)
    assert list(store.iter_blobs()) == []


def test_corrupted_blob_raises_instead_of_returning_wrong_bytes(store: BlobStore) -> None:
    digest = store.put_bytes(b"original bytes")
    _blob_file(store, digest).write_bytes(b"tampered bytes")
    with pytest.raises(CorruptArtifactError, match=digest):
        store.get_bytes(digest)


def test_corrupted_blob_is_not_copied_out(store: BlobStore, tmp_path: Path) -> None:
    digest = store.put_bytes(b"original bytes")
    _blob_file(store, digest).write_bytes(b"tampered bytes")
    dest = tmp_path / "out" / "copy.bin"
    with pytest.raises(CorruptArtifactError):
        store.get_file(digest, dest)
    assert list(dest.parent.iterdir()) == []  # neither the file nor a temporary part


def test_get_file_copies_verified_bytes(store: BlobStore, tmp_path: Path) -> None:
    digest = store.put_bytes(b"payload")
    assert store.get_file(digest, tmp_path / "a" / "b.bin").read_bytes() == b"payload"


def test_truncated_blob_is_repaired_by_storing_the_content_again(store: BlobStore) -> None:
    digest = store.put_bytes(b"0123456789")
    _blob_file(store, digest).write_bytes(b"01234")
    assert store.put_bytes(b"0123456789") == digest
    assert store.get_bytes(digest) == b"0123456789"


def test_missing_blob_raises_not_found(store: BlobStore, tmp_path: Path) -> None:
    digest = _sha(b"never stored")
    with pytest.raises(NotFoundError, match=digest):
        store.get_bytes(digest)
    with pytest.raises(NotFoundError):
        store.get_file(digest, tmp_path / "x")


@pytest.mark.parametrize("digest", ["sha256:xyz", "md5:" + "0" * 32, "sha256:" + "A" * 64, "../../etc/passwd"])
def test_malformed_digest_is_refused(store: BlobStore, digest: str) -> None:
    with pytest.raises(InvalidInputError):
        store.get_bytes(digest)


def test_iter_blobs_reports_size_and_age_and_delete_removes(store: BlobStore) -> None:
    keep, drop = store.put_bytes(b"keep"), store.put_bytes(b"drop me")
    infos = {b.digest: b for b in store.iter_blobs()}
    assert {d: i.size_bytes for d, i in infos.items()} == {keep: 4, drop: 7}
    ages = [datetime.now(UTC) - i.modified_at for i in infos.values() if i.modified_at is not None]
    assert len(ages) == 2 and all(abs(age) < timedelta(minutes=1) for age in ages)
    store.delete(drop)
    store.delete(drop)  # deleting twice is fine
    assert [b.digest for b in store.iter_blobs()] == [keep]


def test_clean_tmp_removes_only_old_temporary_files(store: BlobStore) -> None:
    tmp = Path(store.root, "tmp")
    old, fresh = tmp / "old.part", tmp / "fresh.part"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).timestamp()
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert store.clean_tmp(datetime.now(UTC) - timedelta(minutes=5)) == 1
    assert [p.name for p in tmp.iterdir()] == ["fresh.part"]


def test_artifact_root_that_cannot_be_created_raises_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreUnavailableError):
        BlobStore(str(blocker / "artifacts"))


# -- S3 (moto) ---------------------------------------------------------------------------------
@pytest.fixture
def s3_store(s3_bucket: tuple[str, dict[str, Any]]) -> BlobStore:
    url, options = s3_bucket
    return BlobStore(url, options)


def test_s3_store_round_trips_and_deduplicates(s3_store: BlobStore) -> None:
    assert not s3_store.is_local
    data = os.urandom(1000)
    digest = s3_store.put_bytes(data)
    assert s3_store.put_bytes(data) == digest
    assert s3_store.get_bytes(digest) == data
    assert [(b.digest, b.size_bytes) for b in s3_store.iter_blobs()] == [(digest, 1000)]
    assert s3_store.fs.find(f"{s3_store.root}/tmp") == []  # the temporary key is gone


def test_s3_corrupted_object_raises_corrupt_artifact(s3_store: BlobStore) -> None:
    digest = s3_store.put_bytes(b"original")
    s3_store.fs.pipe_file(s3_store._path(digest), b"tampered")
    with pytest.raises(CorruptArtifactError):
        s3_store.get_bytes(digest)


def test_s3_write_that_fails_midway_leaves_no_object(s3_store: BlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024)
    digest = _sha(data)

    class Failing(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            if self.tell() > 0:
                raise OSError("network dropped")
            return super().read(size)

    with pytest.raises(StoreUnavailableError, match="network dropped"):
        s3_store._write(digest, Failing(data))
    s3_store.fs.invalidate_cache()
    assert not s3_store.exists(digest)
    assert s3_store.fs.find(f"{s3_store.root}/tmp") == []
