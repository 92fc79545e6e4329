"""Jobs: a queue in the metadata store, claimed with compare-and-set updates.

A job is claimed by one worker only: the claim is an UPDATE ... WHERE status = 'queued' that
exactly one transaction wins, on SQLite and PostgreSQL alike. A finished job is never claimed
again; a running one whose heartbeat is older than a limit (its worker died) is queued again until
it has used `max_attempts`, then failed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Row, and_, select, update

from keel.entities import Job
from keel.errors import NotFoundError
from keel.storage import schema as s
from keel.storage._common import Transactional, now, utc

__all__ = ["JobStore"]

j = s.jobs
ACTIVE = ("queued", "running")


class JobStore(Transactional):
    def enqueue(
        self, kind: str, payload: dict[str, Any], *, author: str, dedup_key: str | None = None, max_attempts: int = 2
    ) -> tuple[Job, bool]:
        """Queue a job; with `dedup_key`, an active job of that key is returned instead (created: False)."""
        with self.begin() as conn:
            if dedup_key is not None:
                row = conn.execute(select(j).where(j.c.dedup_key == dedup_key, j.c.status.in_(ACTIVE)).limit(1)).first()
                if row is not None:
                    return _job(row), False
            job_id = conn.execute(
                j.insert().values(
                    kind=kind,
                    payload=payload,
                    dedup_key=dedup_key,
                    status="queued",
                    attempts=0,
                    max_attempts=max_attempts,
                    created_at=now(),
                    author=author,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            return _job(conn.execute(select(j).where(j.c.id == job_id)).one()), True

    def claim(
        self, worker: str, *, limit: int = 1, kinds: tuple[str, ...] | None = None, ids: tuple[int, ...] | None = None
    ) -> list[Job]:
        """Move up to `limit` queued jobs (of `kinds`, or with `ids`), oldest first, to running for `worker`."""
        claimed: list[Job] = []
        q = select(j.c.id).where(j.c.status == "queued")
        if kinds:
            q = q.where(j.c.kind.in_(kinds))
        if ids:
            q = q.where(j.c.id.in_(ids))
        with self.connect() as conn:
            candidates = list(conn.execute(q.order_by(j.c.created_at, j.c.id).limit(limit * 4)).scalars())
        for job_id in candidates:
            if len(claimed) >= limit:
                break
            ts = now()
            with self.begin() as conn:
                won = conn.execute(
                    update(j)
                    .where(and_(j.c.id == job_id, j.c.status == "queued"))
                    .values(
                        status="running", worker=worker[:128], started_at=ts, heartbeat_at=ts, attempts=j.c.attempts + 1
                    )
                ).rowcount
                if won == 1:
                    claimed.append(_job(conn.execute(select(j).where(j.c.id == job_id)).one()))
        return claimed

    def heartbeat(self, job_ids: list[int]) -> None:
        if job_ids:
            with self.begin() as conn:
                conn.execute(update(j).where(j.c.id.in_(job_ids), j.c.status == "running").values(heartbeat_at=now()))

    def finish(self, job_id: int, *, result: dict[str, Any] | None = None, error: str | None = None) -> Job:
        with self.begin() as conn:
            conn.execute(
                update(j)
                .where(j.c.id == job_id)
                .values(
                    status="failed" if error is not None else "succeeded", finished_at=now(), result=result, error=error
                )
            )
            row = conn.execute(select(j).where(j.c.id == job_id)).first()
        if row is None:
            raise NotFoundError(f"No job {job_id}")
        return _job(row)

    def progress(self, job_id: int, progress: dict[str, Any]) -> None:
        """Record how far a running job is (its heartbeat too: a job reporting progress is alive)."""
        with self.begin() as conn:
            conn.execute(
                update(j).where(j.c.id == job_id, j.c.status == "running").values(progress=progress, heartbeat_at=now())
            )

    def requeue_stale(self, older_than_s: float) -> tuple[list[int], list[int]]:
        """Running jobs whose heartbeat is older than `older_than_s`: queued again, or failed after
        their last attempt. Returns (ids queued again, ids failed)."""
        cutoff = now() - timedelta(seconds=older_than_s)
        with self.begin() as conn:
            stale = conn.execute(
                select(j.c.id, j.c.attempts, j.c.max_attempts).where(j.c.status == "running", j.c.heartbeat_at < cutoff)
            ).all()
            again = [r.id for r in stale if r.attempts < r.max_attempts]
            spent = [r.id for r in stale if r.attempts >= r.max_attempts]
            if again:
                conn.execute(
                    update(j).where(j.c.id.in_(again), j.c.status == "running").values(status="queued", worker=None)
                )
            if spent:
                conn.execute(
                    update(j)
                    .where(j.c.id.in_(spent), j.c.status == "running")
                    .values(
                        status="failed", finished_at=now(), error="the worker stopped answering on its last attempt"
                    )
                )
        return again, spent

    def get(self, job_id: int) -> Job:
        with self.connect() as conn:
            row = conn.execute(select(j).where(j.c.id == job_id)).first()
        if row is None:
            raise NotFoundError(f"No job {job_id}")
        return _job(row)

    def list(self, *, status: str | None = None, kind: str | None = None, limit: int = 100) -> list[Job]:
        q = select(j)
        if status is not None:
            q = q.where(j.c.status == status)
        if kind is not None:
            q = q.where(j.c.kind == kind)
        with self.connect() as conn:
            return [_job(r) for r in conn.execute(q.order_by(j.c.id.desc()).limit(limit))]


def _job(row: Row[Any]) -> Job:
    return Job(
        id=row.id,
        kind=row.kind,
        payload=row.payload,
        status=row.status,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        worker=row.worker,
        created_at=utc(row.created_at),  # type: ignore[arg-type]
        started_at=utc(row.started_at),
        heartbeat_at=utc(row.heartbeat_at),
        finished_at=utc(row.finished_at),
        result=row.result,
        error=row.error,
        author=row.author,
        dedup_key=row.dedup_key,
        progress=row.progress,
    )
