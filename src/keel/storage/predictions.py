"""The prediction log's index: one row per Parquet segment of served predictions, and feedback.

A segment's rows live in a content-addressed blob; the segment row and the `blob_refs` row that
keeps the blob from `gc` are written in one transaction, and deleted in one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select

from keel.errors import ConflictError
from keel.storage import schema as s
from keel.storage._common import Transactional, now, upsert, utc

__all__ = ["PredictionStore", "PredictionSegment"]

ps = s.prediction_segments
pf = s.prediction_feedback

_IN_CHUNK = 500  # ids per IN (...) list: well under every SQLite build's variable limit


@dataclass(frozen=True)
class PredictionSegment:
    """One Parquet file of logged predictions of one model version, spanning first_at..last_at."""

    id: int
    model_name: str
    model_version: int
    first_at: datetime
    last_at: datetime
    rows: int
    digest: str
    size_bytes: int
    created_at: datetime


def _owner(segment_id: int) -> str:
    return f"prediction_segment:{segment_id}"


def _summary_owner(segment_id: int, key: str) -> str:
    """A segment's summary (keel.monitoring.windowsummary) for one plan `key`: a blob reference
    named after both, so that it goes with its segment and a check finds it by key."""
    return f"prediction_summary:{segment_id}:{key}"


def _drop_summaries(conn: Any, ids: list[int]) -> None:
    """Delete the summary references of segments `ids` (every key): owners between
    'prediction_summary:ID:' and 'prediction_summary:ID;' (';' sorts right after ':'), so the
    owner index serves each range."""
    br = s.blob_refs
    for i in range(0, len(ids), 100):  # 100 ranges a statement: well inside SQLite's expression depth
        ranges = [
            and_(br.c.owner >= f"prediction_summary:{x}:", br.c.owner < f"prediction_summary:{x};")
            for x in ids[i : i + 100]
        ]
        conn.execute(delete(br).where(or_(*ranges)))


class PredictionStore(Transactional):
    # -- segments ------------------------------------------------------------------------------
    def add_segment(
        self,
        *,
        model_name: str,
        model_version: int,
        first_at: datetime,
        last_at: datetime,
        rows: int,
        digest: str,
        size_bytes: int,
    ) -> PredictionSegment:
        created = now()
        values = dict(
            model_name=model_name,
            model_version=model_version,
            first_at=first_at,
            last_at=last_at,
            rows=rows,
            digest=digest,
            size_bytes=size_bytes,
            created_at=created,
        )
        with self.begin() as conn:
            segment_id = int(conn.execute(ps.insert().values(**values)).inserted_primary_key[0])  # type: ignore[index]
            conn.execute(s.blob_refs.insert().values(digest=digest, owner=_owner(segment_id)))
        return PredictionSegment(id=segment_id, **values)  # type: ignore[arg-type]

    def segments(
        self,
        model_name: str,
        *,
        version: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        newest_first: bool = False,
    ) -> list[PredictionSegment]:
        """The segments of `model_name` holding rows in [since, until], ordered by last_at."""
        q = select(ps).where(ps.c.model_name == model_name)
        if version is not None:
            q = q.where(ps.c.model_version == version)
        if since is not None:
            q = q.where(ps.c.last_at >= since)
        if until is not None:
            q = q.where(ps.c.first_at <= until)
        order = (ps.c.last_at.desc(), ps.c.id.desc()) if newest_first else (ps.c.last_at, ps.c.id)
        with self.connect() as conn:
            rows = conn.execute(q.order_by(*order)).all()
        return [_segment(r) for r in rows]

    def model_names(self) -> list[str]:
        with self.connect() as conn:
            return list(conn.execute(select(ps.c.model_name).distinct().order_by(ps.c.model_name)).scalars())

    def count(self, model_name: str, *, version: int | None = None) -> int:
        q = select(func.coalesce(func.sum(ps.c.rows), 0)).where(ps.c.model_name == model_name)
        if version is not None:
            q = q.where(ps.c.model_version == version)
        with self.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def delete_before(self, cutoff: datetime) -> list[PredictionSegment]:
        """Delete the segments whose newest row is older than `cutoff` (their blobs become
        unreferenced) and the feedback received before it; return the deleted segments."""
        with self.begin() as conn:
            rows = conn.execute(select(ps).where(ps.c.last_at < cutoff).order_by(ps.c.id)).all()
            gone = [_segment(r) for r in rows]
            ids = [g.id for g in gone]
            for i in range(0, len(ids), _IN_CHUNK):
                chunk = ids[i : i + _IN_CHUNK]
                conn.execute(delete(s.blob_refs).where(s.blob_refs.c.owner.in_([_owner(x) for x in chunk])))
                conn.execute(delete(ps).where(ps.c.id.in_(chunk)))
            _drop_summaries(conn, ids)
            # Feedback always follows its prediction: what arrived before the cutoff is about
            # predictions older than it. Later feedback on deleted rows goes on a later pass.
            conn.execute(delete(pf).where(pf.c.received_at < cutoff))
        return gone

    def replace_segments(self, old: list[PredictionSegment], new: PredictionSegment) -> PredictionSegment:
        """Swap `old` segments for one `new` segment holding their rows, in one transaction."""
        created = now()
        with self.begin() as conn:
            segment_id = int(
                conn.execute(
                    ps.insert().values(
                        model_name=new.model_name,
                        model_version=new.model_version,
                        first_at=new.first_at,
                        last_at=new.last_at,
                        rows=new.rows,
                        digest=new.digest,
                        size_bytes=new.size_bytes,
                        created_at=created,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]  # an INSERT always has its key
            )
            conn.execute(s.blob_refs.insert().values(digest=new.digest, owner=_owner(segment_id)))
            ids = [o.id for o in old]
            conn.execute(delete(s.blob_refs).where(s.blob_refs.c.owner.in_([_owner(x) for x in ids])))
            _drop_summaries(conn, ids)
            if conn.execute(delete(ps).where(ps.c.id.in_(ids))).rowcount != len(ids):
                # another process merged or deleted some of them first: keep its result, not a duplicate
                raise ConflictError(
                    f"Prediction segments {ids} changed while they were being merged; nothing was replaced"
                )
        return PredictionSegment(
            id=segment_id,
            model_name=new.model_name,
            model_version=new.model_version,
            first_at=new.first_at,
            last_at=new.last_at,
            rows=new.rows,
            digest=new.digest,
            size_bytes=new.size_bytes,
            created_at=created,
        )

    # -- summaries -----------------------------------------------------------------------------
    def add_summary(self, segment_id: int, key: str, digest: str) -> bool:
        """Keep blob `digest` as segment `segment_id`'s summary for plan `key`; False (nothing
        stored) when the segment is gone or already has one for that key."""
        owner = _summary_owner(segment_id, key)
        with self.begin() as conn:
            if conn.execute(select(ps.c.id).where(ps.c.id == segment_id)).first() is None:
                return False
            if conn.execute(select(s.blob_refs.c.digest).where(s.blob_refs.c.owner == owner)).first() is not None:
                return False
            conn.execute(s.blob_refs.insert().values(digest=digest, owner=owner))
        return True

    def summaries(self, segment_ids: Iterable[int], key: str) -> dict[int, str]:
        """{segment id: summary blob digest} of those segments with a summary for plan `key`."""
        wanted = {_summary_owner(i, key): i for i in segment_ids}
        owners = list(wanted)
        out: dict[int, str] = {}
        with self.connect() as conn:
            for i in range(0, len(owners), _IN_CHUNK):
                q = select(s.blob_refs.c.owner, s.blob_refs.c.digest).where(
                    s.blob_refs.c.owner.in_(owners[i : i + _IN_CHUNK])
                )
                out.update((wanted[r.owner], r.digest) for r in conn.execute(q))
        return out

    # -- feedback ------------------------------------------------------------------------------
    def save_feedback(self, model_name: str, values: dict[str, Any]) -> int:
        """Store true labels by prediction id; a second label for an id replaces the first."""
        ts = now()
        rows = [
            {"prediction_id": k, "model_name": model_name, "value": v, "received_at": ts} for k, v in values.items()
        ]
        with self.begin() as conn:
            upsert(conn, pf, rows, keys=["prediction_id"], update=["model_name", "value", "received_at"])
        return len(rows)

    def feedback(self, model_name: str, ids: Iterable[str]) -> dict[str, Any]:
        """{prediction_id: label} for those of `ids` that have feedback."""
        wanted = list(dict.fromkeys(ids))
        out: dict[str, Any] = {}
        with self.connect() as conn:
            for i in range(0, len(wanted), _IN_CHUNK):
                q = select(pf.c.prediction_id, pf.c.value).where(
                    pf.c.model_name == model_name, pf.c.prediction_id.in_(wanted[i : i + _IN_CHUNK])
                )
                out.update((r.prediction_id, r.value) for r in conn.execute(q))
        return out

    def feedback_count(self, model_name: str) -> int:
        with self.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(pf).where(pf.c.model_name == model_name)).scalar_one()
            )


def _segment(r: Any) -> PredictionSegment:
    return PredictionSegment(
        id=r.id,
        model_name=r.model_name,
        model_version=r.model_version,
        first_at=utc(r.first_at),  # type: ignore[arg-type]
        last_at=utc(r.last_at),  # type: ignore[arg-type]
        rows=r.rows,
        digest=r.digest,
        size_bytes=r.size_bytes,
        created_at=utc(r.created_at),  # type: ignore[arg-type]
    )
