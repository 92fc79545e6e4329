"""Causal study versions, their estimates and their results (refutations, sensitivity sweeps, effect
changes, ...) in the metadata store."""

from __future__ import annotations

import builtins
import math
from typing import Any

from sqlalchemy import JSON, Column, Connection, ForeignKey, Index, Integer, Row, String, Table, func, select

from keel.entities_studies import Study, StudyEstimate, StudyResult
from keel.refs import Ref
from keel.storage import schema as s
from keel.storage._common import Transactional, latest_versions, now, retry_conflicts, utc, versioned_row

__all__ = ["StudyStore"]

# A stored result of one study version: a refutation, a sensitivity sweep, an effect change between
# versions, ... as plain JSON (`kind` says which). Declared here, on schema.metadata (so migrations are
# checked against it like every other table), because schema.py is at the module size limit.
causal_results = Table(
    "causal_results",
    s.metadata,
    Column("id", Integer, primary_key=True),
    Column("study_id", Integer, ForeignKey("causal_studies.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("author", String(128), nullable=False),
    Column("created_at", s.Timestamp, nullable=False),
    Index("ix_causal_results_study_id_kind", "study_id", "kind"),
)

st, est, res = s.causal_studies, s.causal_estimates, causal_results


class StudyStore(Transactional):
    @retry_conflicts()
    def add(
        self,
        name: str,
        *,
        dataset: tuple[str, int, str],
        treatment: str,
        outcome: str,
        spec: dict[str, Any],
        description: str,
        author: str,
    ) -> Study:
        """Store the next version of study `name`; `dataset` is (name, version, digest)."""
        with self.begin() as conn:
            latest = conn.execute(select(func.max(st.c.version)).where(st.c.name == name)).scalar()
            row_id = conn.execute(
                st.insert().values(
                    name=name,
                    version=(latest or 0) + 1,
                    dataset_name=dataset[0],
                    dataset_version=dataset[1],
                    dataset_digest=dataset[2],
                    treatment=treatment,
                    outcome=outcome,
                    spec=spec,
                    description=description,
                    author=author,
                    created_at=now(),
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            return _study(conn.execute(select(st).where(st.c.id == row_id)).one())

    def get(self, ref: Ref) -> Study:
        with self.connect() as conn:
            return _study(self._row(conn, ref))

    def list(self) -> builtins.list[Study]:
        """The latest version of every study, by name."""
        q = latest_versions(st)
        with self.connect() as conn:
            return [_study(r) for r in conn.execute(q)]

    def versions(self, name: str) -> builtins.list[Study]:
        with self.connect() as conn:
            rows = conn.execute(select(st).where(st.c.name == name).order_by(st.c.version)).all()
            if not rows:
                self._row(conn, Ref(name))  # raises NotFoundError naming the known studies
        return [_study(r) for r in rows]

    def add_estimates(self, ref: Ref, records: builtins.list[dict[str, Any]]) -> builtins.list[StudyEstimate]:
        """Store estimates of one study version: each record has the columns of causal_estimates."""
        ts = now()
        with self.begin() as conn:
            study = self._row(conn, ref)
            ids = []
            for record in records:
                values = {k: _finite(v) if k in _NUMBERS else v for k, v in record.items()}
                result = conn.execute(est.insert().values(study_id=study.id, created_at=ts, **values))
                ids.append(result.inserted_primary_key[0])  # type: ignore[index]
            rows = conn.execute(select(est).where(est.c.id.in_(ids)).order_by(est.c.id)).all()
        return [_estimate(r, f"{study.name}@{study.version}") for r in rows]

    def estimates(self, ref: Ref) -> builtins.list[StudyEstimate]:
        with self.connect() as conn:
            study = self._row(conn, ref)
            rows = conn.execute(select(est).where(est.c.study_id == study.id).order_by(est.c.id)).all()
        return [_estimate(r, f"{study.name}@{study.version}") for r in rows]

    def add_result(self, ref: Ref, kind: str, payload: dict[str, Any], *, author: str) -> StudyResult:
        """Store one result of a study version (`payload`: plain JSON)."""
        with self.begin() as conn:
            study = self._row(conn, ref)
            row_id = conn.execute(
                res.insert().values(study_id=study.id, kind=kind, payload=payload, author=author, created_at=now())
            ).inserted_primary_key[0]  # type: ignore[index]
            return _result(conn.execute(select(res).where(res.c.id == row_id)).one(), f"{study.name}@{study.version}")

    def results(self, ref: Ref, kind: str | None = None) -> builtins.list[StudyResult]:
        """The results of one study version (of `kind`, or all), oldest first."""
        with self.connect() as conn:
            study = self._row(conn, ref)
            q = select(res).where(res.c.study_id == study.id)
            if kind is not None:
                q = q.where(res.c.kind == kind)
            rows = conn.execute(q.order_by(res.c.id)).all()
        return [_result(r, f"{study.name}@{study.version}") for r in rows]

    def _row(self, conn: Connection, ref: Ref) -> Row[Any]:
        return versioned_row(
            conn,
            st,
            ref,
            noun="study",
            plural="studies",
            missing="No causal study named {name!r}; create one with 'keel causal study'",
        )


_NUMBERS = {"value", "stderr", "ci_low", "ci_high"}


def _finite(value: Any) -> float | None:
    # NaN and infinities have no portable SQL form: stored as NULL, read back as NaN.
    return float(value) if value is not None and math.isfinite(value) else None


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _study(row: Row[Any]) -> Study:
    spec = row.spec
    return Study(
        name=row.name,
        version=row.version,
        dataset=f"{row.dataset_name}@{row.dataset_version}",
        dataset_digest=row.dataset_digest,
        edges=tuple((str(a), str(b)) for a, b in spec["edges"]),
        latent=tuple(spec.get("latent", ())),
        treatment=row.treatment,
        outcome=row.outcome,
        covariates=tuple(spec["covariates"]),
        identification=dict(spec.get("identification", {})),
        model=spec.get("model"),
        created_at=utc(row.created_at),  # type: ignore[arg-type]
        author=row.author,
        description=row.description,
    )


def _estimate(row: Row[Any], study: str) -> StudyEstimate:
    details = dict(row.details)
    return StudyEstimate(
        id=row.id,
        study=study,
        estimator=row.estimator,
        estimand=row.estimand,
        value=_number(row.value),
        stderr=_number(row.stderr),
        ci_low=_number(row.ci_low),
        ci_high=_number(row.ci_high),
        interval_method=row.interval_method,
        n=row.n,
        overlap=details.pop("overlap", None),
        notes=tuple(details.pop("notes", ())),
        details=details,
        created_at=utc(row.created_at),  # type: ignore[arg-type]
    )


def _result(row: Row[Any], study: str) -> StudyResult:
    return StudyResult(
        id=row.id,
        study=study,
        kind=row.kind,
        payload=dict(row.payload),
        author=row.author,
        created_at=utc(row.created_at),  # type: ignore[arg-type]
    )
