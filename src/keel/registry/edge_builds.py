"""Edge builds of model versions (records): `EdgeBuilds`, over one narrow store (keel.storage.edge).

A build is stored the way every artifact is: its archive blob first, then the row that names it
(with its `blob_refs` row, in one transaction), so a failed write leaves at most an orphan blob that
`keel gc` removes. Compiling and verifying are compute (keel.edge); keel.workspace.edge calls them
and records the result here.
"""

from __future__ import annotations

import builtins
from typing import Any

from keel.entities import ModelVersion
from keel.entities_edge import EdgeBuild
from keel.errors import InvalidInputError
from keel.refs import parse_ref
from keel.storage import BlobStore, MetadataStore

__all__ = ["EdgeBuilds", "TARGETS"]

TARGETS = ("c", "onnx")


class EdgeBuilds:
    """The edge builds of one workspace (the records behind `ws.edge`)."""

    def __init__(self, meta: MetadataStore, blobs: BlobStore, *, author: str) -> None:
        self._meta = meta
        self._blobs = blobs
        self._author = author

    def add(
        self,
        version: ModelVersion,
        *,
        target: str,
        quantize: str,
        mcu: str,
        archive: bytes,
        files: builtins.list[str],
        report: dict[str, Any],
    ) -> EdgeBuild:
        """Store a build of `version`: the archive blob, then its row."""
        if target not in TARGETS:
            raise InvalidInputError(f"target={target!r} is not an edge target: use {' or '.join(TARGETS)}")
        digest = self._blobs.put_bytes(archive)
        return self._meta.edge.add(
            (version.name, version.version),
            target=target,
            quantize=quantize,
            mcu=mcu,
            digest=digest,
            size_bytes=len(archive),
            files=list(files),
            report=report,
            author=self._author,
        )

    def get(self, build_id: int | str) -> EdgeBuild:
        return self._meta.edge.get(_id(build_id))

    def list(self, model: str | None = None) -> builtins.list[EdgeBuild]:
        """Builds, newest first: all of them, a model's ('credit'), or one version's ('credit@3').
        An alias or 'latest' names the version it points at now ('credit@champion')."""
        if model is None:
            return self._meta.edge.list()
        ref = parse_ref(model)
        if "@" not in model:
            return self._meta.edge.list(ref.name)
        resolved = self._meta.models.get(ref)
        return self._meta.edge.list(resolved.name, resolved.version)

    def archive(self, build_id: int | str) -> bytes:
        """The build's zip, verified against its SHA-256."""
        return self._blobs.get_bytes(self.get(build_id).digest)


def _id(build_id: int | str) -> int:
    try:
        number = int(build_id)
    except (TypeError, ValueError):
        number = -1
    if number < 1:
        raise InvalidInputError(f"An edge build id is a positive number, got {build_id!r}")
    return number
