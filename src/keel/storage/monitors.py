"""Reference profiles, monitor configurations, check runs and their values (a time series)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, func, select

from keel.entities import MonitorRun
from keel.errors import NotFoundError
from keel.storage import schema as s
from keel.storage._common import Transactional, now, utc

__all__ = ["MonitorStore"]

rp = s.reference_profiles
mr = s.monitor_runs
mv = s.monitor_values


class MonitorStore(Transactional):
    # -- reference profiles --------------------------------------------------------------------
    def get_reference(
        self, dataset_version_id: int, model_version_id: int | None = None
    ) -> tuple[dict[str, Any], str | None] | None:
        q = select(rp.c.profile, rp.c.sample_digest).where(rp.c.dataset_version_id == dataset_version_id)
        q = q.where(
            rp.c.model_version_id.is_(None) if model_version_id is None else rp.c.model_version_id == model_version_id
        )
        with self.connect() as conn:
            row = conn.execute(q).first()
        return None if row is None else (row.profile, row.sample_digest)

    def save_reference(
        self, dataset_version_id: int, model_version_id: int | None, profile: dict[str, Any], sample_digest: str | None
    ) -> None:
        """Store a reference profile once; a concurrent writer's identical profile wins quietly."""
        with self.begin() as conn:
            q = select(rp.c.id).where(rp.c.dataset_version_id == dataset_version_id)
            q = q.where(
                rp.c.model_version_id.is_(None)
                if model_version_id is None
                else rp.c.model_version_id == model_version_id
            )
            if conn.execute(q).first() is not None:
                return
            row_id = conn.execute(
                rp.insert().values(
                    dataset_version_id=dataset_version_id,
                    model_version_id=model_version_id,
                    profile=profile,
                    sample_digest=sample_digest,
                    created_at=now(),
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            if sample_digest:
                conn.execute(s.blob_refs.insert().values(digest=sample_digest, owner=f"reference_profile:{row_id}"))

    # -- monitors ------------------------------------------------------------------------------
    def save_monitor(self, model_name: str, config: dict[str, Any]) -> None:
        ts = now()
        with self.begin() as conn:
            existing = conn.execute(select(s.monitors.c.id).where(s.monitors.c.model_name == model_name)).first()
            if existing is None:
                conn.execute(
                    s.monitors.insert().values(model_name=model_name, config=config, created_at=ts, updated_at=ts)
                )
            else:
                conn.execute(
                    s.monitors.update().where(s.monitors.c.id == existing.id).values(config=config, updated_at=ts)
                )

    def get_monitor(self, model_name: str) -> tuple[dict[str, Any], datetime | None] | None:
        with self.connect() as conn:
            row = conn.execute(
                select(s.monitors.c.config, s.monitors.c.last_run_at).where(s.monitors.c.model_name == model_name)
            ).first()
        return None if row is None else (dict(row.config), utc(row.last_run_at))

    def monitors(self) -> list[tuple[str, dict[str, Any], datetime | None]]:
        with self.connect() as conn:
            rows = conn.execute(select(s.monitors).order_by(s.monitors.c.model_name)).all()
        return [(r.model_name, dict(r.config), utc(r.last_run_at)) for r in rows]

    def delete_monitor(self, model_name: str) -> None:
        with self.begin() as conn:
            gone = conn.execute(delete(s.monitors).where(s.monitors.c.model_name == model_name)).rowcount
        if not gone:
            raise NotFoundError(f"Model {model_name!r} has no monitor")

    # -- runs and values -----------------------------------------------------------------------
    def record_run(
        self,
        *,
        model_name: str,
        model_version: int | None,
        reference: str,
        started_at: datetime,
        window_start: datetime | None,
        window_end: datetime | None,
        rows: int,
        labelled_rows: int,
        summary: dict[str, Any],
        values: Iterable[tuple[str, str, float | None]],
    ) -> MonitorRun:
        with self.begin() as conn:
            run_id = conn.execute(
                mr.insert().values(
                    model_name=model_name,
                    model_version=model_version,
                    reference=reference,
                    started_at=started_at,
                    window_start=window_start,
                    window_end=window_end,
                    rows=rows,
                    labelled_rows=labelled_rows,
                    summary=summary,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            batch = {(f, m): v for f, m, v in values}
            if batch:
                conn.execute(
                    mv.insert(),
                    [{"run_id": run_id, "feature": f, "metric": m, "value": v} for (f, m), v in batch.items()],
                )
            conn.execute(
                s.monitors.update().where(s.monitors.c.model_name == model_name).values(last_run_at=started_at)
            )
            return _run(conn.execute(select(mr).where(mr.c.id == run_id)).one())

    def runs(self, model_name: str, *, limit: int = 100) -> list[MonitorRun]:
        with self.connect() as conn:
            rows = conn.execute(
                select(mr)
                .where(mr.c.model_name == model_name)
                .order_by(mr.c.started_at.desc(), mr.c.id.desc())
                .limit(limit)
            ).all()
        return [_run(r) for r in rows]

    def run(self, run_id: int) -> MonitorRun:
        with self.connect() as conn:
            row = conn.execute(select(mr).where(mr.c.id == run_id)).first()
        if row is None:
            raise NotFoundError(f"No monitor check #{run_id}")
        return _run(row)

    def values(self, run_id: int) -> list[tuple[str, str, float | None]]:
        with self.connect() as conn:
            rows = conn.execute(select(mv.c.feature, mv.c.metric, mv.c.value).where(mv.c.run_id == run_id)).all()
        return [(r.feature, r.metric, r.value) for r in rows]

    def series(
        self, model_name: str, metric: str, *, feature: str | None = None, limit: int = 500
    ) -> list[tuple[datetime, int, str, float | None]]:
        """(started_at, run id, feature, value) of one statistic over the newest `limit` runs, oldest first."""
        recent = (
            select(mr.c.id)
            .where(mr.c.model_name == model_name)
            .order_by(mr.c.started_at.desc(), mr.c.id.desc())
            .limit(limit)
        ).subquery()
        q = (
            select(mr.c.started_at, mr.c.id, mv.c.feature, mv.c.value)
            .join(mv, mv.c.run_id == mr.c.id)
            .where(mr.c.id.in_(select(recent.c.id)), mv.c.metric == metric)
            .order_by(mr.c.started_at, mr.c.id, mv.c.feature)
        )
        if feature is not None:
            q = q.where(mv.c.feature == feature)
        with self.connect() as conn:
            return [(utc(r.started_at), r.id, r.feature, r.value) for r in conn.execute(q)]  # type: ignore[misc]

    def count_runs(self, model_name: str) -> int:
        with self.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(mr).where(mr.c.model_name == model_name)).scalar_one()
            )


def _run(r: Row[Any]) -> MonitorRun:
    return MonitorRun(
        id=r.id,
        model=r.model_name,
        model_version=r.model_version,
        reference=r.reference,
        started_at=utc(r.started_at),  # type: ignore[arg-type]
        window_start=utc(r.window_start),
        window_end=utc(r.window_end),
        rows=r.rows,
        labelled_rows=r.labelled_rows,
        summary=dict(r.summary or {}),
    )
