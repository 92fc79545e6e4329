"""Model projects and retraining decisions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, select

from keel.entities import RetrainDecision
from keel.errors import NotFoundError
from keel.storage import schema as s
from keel.storage._common import Transactional, now, utc

__all__ = ["RetrainingStore"]

p, d = s.model_projects, s.retrain_decisions


class RetrainingStore(Transactional):
    def save_project(self, model_name: str, spec: dict[str, Any], source: str) -> None:
        ts = now()
        with self.begin() as conn:
            found = conn.execute(select(p.c.id).where(p.c.model_name == model_name)).first()
            if found is None:
                conn.execute(
                    p.insert().values(
                        model_name=model_name, spec=spec, source=source[:500], created_at=ts, updated_at=ts
                    )
                )
            else:
                conn.execute(p.update().where(p.c.id == found.id).values(spec=spec, source=source[:500], updated_at=ts))

    def project(self, model_name: str) -> tuple[dict[str, Any], str]:
        with self.connect() as conn:
            row = conn.execute(select(p.c.spec, p.c.source).where(p.c.model_name == model_name)).first()
            known = [] if row is not None else sorted(conn.execute(select(p.c.model_name)).scalars())
        if row is None:
            raise NotFoundError(
                f"Model {model_name!r} has no project; train it once with 'keel train keel.yaml'. "
                f"Projects: {', '.join(known) or 'none'}"
            )
        return row.spec, row.source

    def projects(self) -> list[tuple[str, dict[str, Any]]]:
        with self.connect() as conn:
            return [
                (r.model_name, r.spec) for r in conn.execute(select(p.c.model_name, p.c.spec).order_by(p.c.model_name))
            ]

    def record(
        self,
        *,
        model: str,
        version: int | None,
        champion_version: int | None,
        trigger: str,
        outcome: str,
        evidence: dict[str, Any],
        run_id: str | None,
        author: str,
        at: datetime | None = None,
    ) -> RetrainDecision:
        with self.begin() as conn:
            row_id = conn.execute(
                d.insert().values(
                    model_name=model,
                    version=version,
                    champion_version=champion_version,
                    trigger=trigger,
                    outcome=outcome,
                    evidence=evidence,
                    run_id=run_id,
                    author=author,
                    at=at or now(),
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            return _decision(conn.execute(select(d).where(d.c.id == row_id)).one())

    def decisions(self, model: str, *, limit: int = 100) -> list[RetrainDecision]:
        with self.connect() as conn:
            rows = conn.execute(
                select(d).where(d.c.model_name == model).order_by(d.c.at.desc(), d.c.id.desc()).limit(limit)
            )
            return [_decision(r) for r in rows]

    def last(self, model: str, *, triggers: tuple[str, ...] | None = None) -> RetrainDecision | None:
        q = select(d).where(d.c.model_name == model)
        if triggers:
            q = q.where(d.c.trigger.in_(triggers))
        with self.connect() as conn:
            row = conn.execute(q.order_by(d.c.at.desc(), d.c.id.desc()).limit(1)).first()
        return None if row is None else _decision(row)


def _decision(row: Row[Any]) -> RetrainDecision:
    return RetrainDecision(
        id=row.id,
        model=row.model_name,
        version=row.version,
        champion_version=row.champion_version,
        trigger=row.trigger,
        outcome=row.outcome,
        evidence=row.evidence,
        run_id=row.run_id,
        author=row.author,
        at=utc(row.at),  # type: ignore[arg-type]
    )
