"""Request bodies that go to disk in chunks, never whole into memory, with a size limit."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fastapi import Request

from keel.server.errors import HTTPProblem

_FORMATS = {
    "text/csv": ".csv",
    "application/csv": ".csv",
    "text/tab-separated-values": ".tsv",
    "application/vnd.apache.parquet": ".parquet",
    "application/x-parquet": ".parquet",
    "application/parquet": ".parquet",
}
TABLE_TYPES = frozenset(_FORMATS)  # the Content-Types a table upload may declare


def suffix_for(request: Request, fmt: str | None) -> str:
    """The table format of an upload, from ?format= or the Content-Type."""
    if fmt:
        fmt = fmt.lower().lstrip(".")
        if fmt not in ("csv", "tsv", "parquet"):
            raise HTTPProblem(400, f"format must be csv, tsv or parquet, got {fmt!r}", field="format")
        return "." + fmt
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in _FORMATS:
        return _FORMATS[ctype]
    raise HTTPProblem(
        415, "Send text/csv or application/vnd.apache.parquet, or say ?format=csv|parquet", field="content-type"
    )


async def spool_body(request: Request, *, suffix: str, max_bytes: int) -> Path:
    """Stream the request body to a temporary file; 413 past `max_bytes`. The caller deletes it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise HTTPProblem(413, f"Upload of {declared} bytes exceeds the limit of {max_bytes} bytes")
    fd, name = tempfile.mkstemp(prefix="keel-upload-", suffix=suffix)
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise HTTPProblem(413, f"Upload exceeds the limit of {max_bytes} bytes")
                out.write(chunk)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    if size == 0:
        Path(name).unlink(missing_ok=True)
        raise HTTPProblem(400, "The request body is empty: send the file's bytes", field="body")
    return Path(name)
