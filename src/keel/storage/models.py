"""Registered models, their versions, aliases with an audit history, and lineage links."""

from __future__ import annotations

import builtins
import difflib
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, String, bindparam, cast, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from keel.entities import AliasEvent, ModelVersion, RegisteredModel, Signature
from keel.errors import InvalidInputError, NotFoundError
from keel.refs import Ref, check_name
from keel.storage import schema as s
from keel.storage._common import Transactional, now, retry_conflicts, utc
from keel.storage.importance import importance_row, sample_owner

__all__ = ["ModelStore"]

mv = s.model_versions
rm = s.registered_models


class ModelStore(Transactional):
    @retry_conflicts()
    def create_version(
        self,
        name: str,
        *,
        flavor: str,
        digest: str,
        size_bytes: int,
        signature: Signature | None,
        input_example: list[dict[str, Any]] | None,
        metrics: dict[str, float],
        params: dict[str, str],
        tags: dict[str, str],
        description: str,
        run_id: str | None,
        dataset_version_ids: list[int],
        author: str,
        extra_blobs: list[str] | None = None,
        importance: dict[str, Any] | None = None,
        training_sample: str | None = None,
    ) -> ModelVersion:
        """The next version of `name`, with its lineage, blob references and (when given) its global
        importance ({"importance", "method", "space", "rows"}) and training sample's digest, in one transaction."""
        with self.begin() as conn:
            ts = now()
            model_id = conn.execute(select(rm.c.id).where(rm.c.name == name)).scalar()
            if model_id is None:
                model_id = conn.execute(
                    rm.insert().values(name=name, description="", created_at=ts, updated_at=ts)
                ).inserted_primary_key[0]  # type: ignore[index]
            if run_id is not None and conn.execute(select(s.runs.c.id).where(s.runs.c.id == run_id)).first() is None:
                raise NotFoundError(f"No run with id {run_id!r} to link model {name!r} to")
            latest = conn.execute(select(func.max(mv.c.version)).where(mv.c.model_id == model_id)).scalar()
            version = (latest or 0) + 1
            row_id = conn.execute(
                mv.insert().values(
                    model_id=model_id,
                    version=version,
                    flavor=flavor,
                    digest=digest,
                    size_bytes=size_bytes,
                    signature=None if signature is None else signature.to_dict(),
                    input_example=input_example,
                    metrics=metrics,
                    params=params,
                    tags=tags,
                    description=description,
                    run_id=run_id,
                    created_at=ts,
                    author=author,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            if dataset_version_ids:
                conn.execute(
                    s.model_version_datasets.insert(),
                    [{"model_version_id": row_id, "dataset_version_id": i} for i in sorted(set(dataset_version_ids))],
                )
            owner = f"model_version:{row_id}"
            refs = [{"digest": d, "owner": owner} for d in sorted({digest, *(extra_blobs or [])})]
            if training_sample is not None:
                refs.append({"digest": training_sample, "owner": sample_owner(row_id)})
            conn.execute(s.blob_refs.insert(), refs)
            if importance is not None:
                conn.execute(s.model_importance.insert(), importance_row(name, version, importance, ts))
            conn.execute(rm.update().where(rm.c.id == model_id).values(updated_at=ts))
            return self._load(conn, _versions().where(mv.c.id == row_id))[0]

    # -- aliases --------------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, version: int, *, author: str, reason: str) -> AliasEvent:
        """Point `alias` at `version` and record the move, in one transaction."""
        check_name(alias, what="alias")
        if alias == "latest" or alias.isdigit():
            raise InvalidInputError(f"{alias!r} cannot be an alias: it already means a version in references")
        # Four prepared statements, one transaction: lock the model and get its id; the target
        # version's row and where the alias points now; move it; record the event. (Built once:
        # compiling an upsert per call cost more than running it.)
        with self.begin() as conn:
            model_id = self._lock_model(conn, name)
            ts = now()  # once the lock is held: the history's order by time is the order of the moves
            target, current = conn.execute(
                _ALIAS_STATE, {"mid": model_id, "number": version, "alias_name": alias}
            ).one()
            if target is None:
                raise NotFoundError(f"Model {name!r} has no version {version}; {self._versions_hint(conn, model_id)}")
            conn.execute(_alias_upsert(conn.dialect.name), {"mid": model_id, "alias_name": alias, "target": target})
            conn.execute(
                _ALIAS_EVENT,
                {
                    "model_id": model_id,
                    "alias": alias,
                    "from_version": current,
                    "to_version": version,
                    "at": ts,
                    "author": author,
                    "reason": reason,
                },
            )
            return AliasEvent(name, alias, current, version, ts, author, reason)

    def delete_alias(self, name: str, alias: str, *, author: str, reason: str) -> AliasEvent:
        with self.begin() as conn:
            model_id = self._lock_model(conn, name)
            current = self._alias_version(conn, model_id, alias)
            if current is None:
                raise NotFoundError(
                    f"Model {name!r} has no alias {alias!r}; {self._aliases_hint(conn, model_id, alias)}"
                )
            conn.execute(
                delete(s.model_aliases).where(s.model_aliases.c.model_id == model_id, s.model_aliases.c.alias == alias)
            )
            ts = now()
            conn.execute(
                s.alias_events.insert().values(
                    model_id=model_id,
                    alias=alias,
                    from_version=current,
                    to_version=None,
                    at=ts,
                    author=author,
                    reason=reason,
                )
            )
            return AliasEvent(name, alias, current, None, ts, author, reason)

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        e = s.alias_events
        with self.connect() as conn:
            model_id = self._model_id(conn, name)
            q = select(e).where(e.c.model_id == model_id)
            if alias is not None:
                q = q.where(e.c.alias == alias)
            return [
                AliasEvent(name, r.alias, r.from_version, r.to_version, utc(r.at), r.author, r.reason or "")  # type: ignore[arg-type]
                for r in conn.execute(q.order_by(e.c.at, e.c.id))
            ]

    # -- reads ----------------------------------------------------------------------------
    def get(self, ref: Ref) -> ModelVersion:
        # One prepared statement per kind of reference: the hot path of serving and load().
        if ref.version is not None:
            q, bound = _BY_VERSION, {"model": ref.name, "number": ref.version}
        elif ref.alias is not None:
            q, bound = _BY_ALIAS, {"model": ref.name, "alias_name": ref.alias}
        else:
            q, bound = _LATEST, {"model": ref.name}
        if ref.digest is None:
            with self.connect() as conn:
                rows = self._load(conn, q, bound)
            if rows:
                return rows[0]
        with self.connect() as conn:  # nothing found: say which part of the reference is missing
            model_id = self._model_id(conn, ref.name)
            if ref.digest is not None:
                raise InvalidInputError(f"Model reference {str(ref)!r}: models are addressed by version or alias")
            if ref.version is not None:
                raise NotFoundError(
                    f"Model {ref.name!r} has no version {ref.version}; {self._versions_hint(conn, model_id)}"
                )
            if ref.alias is not None:
                raise NotFoundError(
                    f"Model {ref.name!r} has no alias {ref.alias!r}; {self._aliases_hint(conn, model_id, ref.alias)}"
                )
            raise NotFoundError(f"Model {ref.name!r} has no versions")

    def versions(self, name: str) -> list[ModelVersion]:
        with self.connect() as conn:
            model_id = self._model_id(conn, name)
            return self._load(conn, _versions().where(mv.c.model_id == model_id).order_by(mv.c.version))

    def list(self) -> list[RegisteredModel]:
        with self.connect() as conn:
            stats = {
                r.model_id: (r.latest, r.n)
                for r in conn.execute(
                    select(mv.c.model_id, func.max(mv.c.version).label("latest"), func.count().label("n")).group_by(
                        mv.c.model_id
                    )
                )
            }
            aliases: dict[int, dict[str, int]] = defaultdict(dict)
            for r in conn.execute(
                select(s.model_aliases.c.model_id, s.model_aliases.c.alias, mv.c.version).join(
                    mv, mv.c.id == s.model_aliases.c.model_version_id
                )
            ):
                aliases[r.model_id][r.alias] = r.version
            return [
                RegisteredModel(
                    name=r.name,
                    description=r.description or "",
                    latest_version=stats.get(r.id, (0, 0))[0],
                    num_versions=stats.get(r.id, (0, 0))[1],
                    aliases=dict(sorted(aliases[r.id].items())),
                    created_at=utc(r.created_at),  # type: ignore[arg-type]
                    updated_at=utc(r.updated_at),  # type: ignore[arg-type]
                )
                for r in conn.execute(select(rm).order_by(rm.c.name))
            ]

    def trained_on(self, dataset_version_id: int) -> builtins.list[ModelVersion]:
        """Every model version whose training data included this dataset version."""
        with self.connect() as conn:
            ids = select(s.model_version_datasets.c.model_version_id).where(
                s.model_version_datasets.c.dataset_version_id == dataset_version_id
            )
            return self._load(conn, _versions().where(mv.c.id.in_(ids)).order_by(mv.c.model_id, mv.c.version))

    def version_id(self, name: str, version: int) -> int:
        """The row id of name@version (for rows that point at a model version)."""
        with self.connect() as conn:
            model_id = self._model_id(conn, name)
            row_id = conn.execute(select(mv.c.id).where(mv.c.model_id == model_id, mv.c.version == version)).scalar()
            if row_id is None:
                raise NotFoundError(f"Model {name!r} has no version {version}; {self._versions_hint(conn, model_id)}")
            return int(row_id)

    def set_description(self, name: str, description: str) -> None:
        with self.begin() as conn:
            model_id = self._model_id(conn, name)
            conn.execute(rm.update().where(rm.c.id == model_id).values(description=description, updated_at=now()))

    # -- helpers --------------------------------------------------------------------------
    def _lock_model(self, conn: Connection, name: str) -> int:
        """The model's id, with its row write-locked until the transaction ends.

        Alias moves of one model then run one at a time, so each records the `from_version`
        the next one starts from. A write is what takes the lock on SQLite (whose reads take
        none) and it also locks on PostgreSQL, even for an alias that has no row yet.
        """
        model_id = conn.execute(_LOCK_MODEL, {"model_name": name, "ts": now()}).scalar()  # one round trip
        return model_id if model_id is not None else self._model_id(conn, name)  # NotFoundError, naming the known

    def _alias_version(self, conn: Connection, model_id: int, alias: str) -> int | None:
        return conn.execute(
            select(mv.c.version)
            .select_from(s.model_aliases.join(mv, mv.c.id == s.model_aliases.c.model_version_id))
            .where(s.model_aliases.c.model_id == model_id, s.model_aliases.c.alias == alias)
        ).scalar()

    def _model_id(self, conn: Connection, name: str) -> int:
        model_id = conn.execute(select(rm.c.id).where(rm.c.name == name)).scalar()
        if model_id is None:
            names = list(conn.execute(select(rm.c.name)).scalars())
            close = difflib.get_close_matches(name, names, n=1)
            hint = (
                f" Did you mean {close[0]!r}?"
                if close
                else f" Known models: {', '.join(sorted(names)[:20]) or 'none'}."
            )
            raise NotFoundError(f"No model named {name!r}.{hint}")
        return int(model_id)

    def _versions_hint(self, conn: Connection, model_id: int) -> str:
        latest = conn.execute(select(func.max(mv.c.version)).where(mv.c.model_id == model_id)).scalar()
        return f"versions run from 1 to {latest}" if latest else "it has no versions yet"

    def _aliases_hint(self, conn: Connection, model_id: int, wanted: str) -> str:
        known = sorted(
            conn.execute(select(s.model_aliases.c.alias).where(s.model_aliases.c.model_id == model_id)).scalars()
        )
        close = difflib.get_close_matches(wanted, known, n=1)
        text = f"known aliases: {', '.join(known)}" if known else "it has no aliases yet"
        return text + (f". Did you mean {close[0]!r}?" if close else "")

    def _load(self, conn: Connection, q: Any, bound: dict[str, Any] | None = None) -> builtins.list[ModelVersion]:
        rows: Sequence[Row[Any]] = conn.execute(q, bound).all()
        return [
            ModelVersion(
                name=r.model_name,
                version=r.version,
                flavor=r.flavor,
                digest=r.digest,
                size_bytes=r.size_bytes,
                signature=None if r.signature is None else Signature.from_dict(r.signature),
                input_example=r.input_example,
                metrics=dict(r.metrics or {}),
                params=dict(r.params or {}),
                tags=dict(r.tags or {}),
                description=r.description or "",
                run_id=r.run_id,
                datasets=_datasets_of(r.dataset_list),
                aliases=tuple(sorted(r.alias_list.split(_SEP))) if r.alias_list else (),
                created_at=utc(r.created_at),  # type: ignore[arg-type]
                author=r.author,
            )
            for r in rows
        ]


_SEP = "\x1f"  # between the aliases (and the datasets) of one version; names never hold it


def _versions() -> Any:
    """Model version rows with their model's name, aliases and training dataset versions: one
    statement (the aliases and datasets as correlated aggregates), so resolving a reference is
    one round trip."""
    a, d, dv = s.model_aliases.alias("version_aliases"), s.model_version_datasets, s.dataset_versions
    alias_list = (
        select(func.aggregate_strings(a.c.alias, _SEP))
        .where(a.c.model_version_id == mv.c.id)
        .correlate(mv)
        .scalar_subquery()
    )
    dataset_list = (
        select(func.aggregate_strings(s.datasets.c.name + "@" + cast(dv.c.version, String), _SEP))
        .select_from(d.join(dv, dv.c.id == d.c.dataset_version_id).join(s.datasets, s.datasets.c.id == dv.c.dataset_id))
        .where(d.c.model_version_id == mv.c.id)
        .correlate(mv)
        .scalar_subquery()
    )
    return select(
        mv, rm.c.name.label("model_name"), alias_list.label("alias_list"), dataset_list.label("dataset_list")
    ).join(rm, rm.c.id == mv.c.model_id)


_BY_VERSION = _versions().where(rm.c.name == bindparam("model"), mv.c.version == bindparam("number"))
_BY_ALIAS = (
    _versions()
    .join(s.model_aliases, s.model_aliases.c.model_version_id == mv.c.id)
    .where(rm.c.name == bindparam("model"), s.model_aliases.c.alias == bindparam("alias_name"))
)
_LATEST = _versions().where(rm.c.name == bindparam("model")).order_by(mv.c.version.desc()).limit(1)


# -- alias moves: statements built once (see ModelStore.set_alias) --------------------------------
# The model's id, its row write-locked until the transaction ends (ModelStore._lock_model).
_LOCK_MODEL = (
    rm.update().where(rm.c.name == bindparam("model_name")).values(updated_at=bindparam("ts")).returning(rm.c.id)
)
_target, _pointed = mv.alias("target"), mv.alias("pointed")
_ALIAS_STATE = select(
    select(_target.c.id)
    .where(_target.c.model_id == bindparam("mid"), _target.c.version == bindparam("number"))
    .scalar_subquery()
    .label("target"),
    select(_pointed.c.version)
    .select_from(s.model_aliases.join(_pointed, _pointed.c.id == s.model_aliases.c.model_version_id))
    .where(s.model_aliases.c.model_id == bindparam("mid"), s.model_aliases.c.alias == bindparam("alias_name"))
    .scalar_subquery()
    .label("current"),
)
_ALIAS_EVENT = s.alias_events.insert()
_ALIAS_UPSERTS: dict[str, Any] = {}


def _alias_upsert(dialect: str) -> Any:
    """INSERT ... ON CONFLICT (model_id, alias) DO UPDATE of the alias's version, built once per dialect."""
    stmt = _ALIAS_UPSERTS.get(dialect)
    if stmt is None:
        ins: Any = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(s.model_aliases)
        ins = ins.values(model_id=bindparam("mid"), alias=bindparam("alias_name"), model_version_id=bindparam("target"))
        stmt = _ALIAS_UPSERTS[dialect] = ins.on_conflict_do_update(
            index_elements=["model_id", "alias"], set_={"model_version_id": ins.excluded.model_version_id}
        )
    return stmt


def _datasets_of(listed: str | None) -> tuple[str, ...]:
    """'credit@10<SEP>credit@9' -> ('credit@9', 'credit@10'): by name, then version number."""
    if not listed:
        return ()
    refs = [ref.rpartition("@") for ref in listed.split(_SEP)]
    return tuple(f"{name}@{version}" for name, _, version in sorted(refs, key=lambda r: (r[0], int(r[2]))))
