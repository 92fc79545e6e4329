"""API tokens: only their SHA-256 is stored; the token itself is shown once, at creation."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, select

from keel.entities import ApiToken, Role
from keel.errors import NotFoundError
from keel.storage import schema as s
from keel.storage._common import Transactional, now, utc

__all__ = ["TokenStore"]

t = s.api_tokens


class TokenStore(Transactional):
    def create(self, *, name: str, role: Role, prefix: str, token_hash: str, created_by: str) -> ApiToken:
        with self.begin() as conn:
            row_id = conn.execute(
                t.insert().values(
                    name=name,
                    role=role.value,
                    prefix=prefix,
                    token_hash=token_hash,
                    created_at=now(),
                    created_by=created_by,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            return _token(conn.execute(select(t).where(t.c.id == row_id)).one())

    def list(self, *, include_revoked: bool = False) -> list[ApiToken]:
        q = select(t).order_by(t.c.id)
        if not include_revoked:
            q = q.where(t.c.revoked_at.is_(None))
        with self.connect() as conn:
            return [_token(r) for r in conn.execute(q)]

    def revoke(self, prefix_or_name: str) -> ApiToken:
        with self.begin() as conn:
            rows = conn.execute(
                select(t).where((t.c.prefix == prefix_or_name) | (t.c.name == prefix_or_name), t.c.revoked_at.is_(None))
            ).all()
            if not rows:
                raise NotFoundError(f"No active token with prefix or name {prefix_or_name!r}")
            if len(rows) > 1:
                from keel.errors import InvalidInputError

                raise InvalidInputError(f"Several active tokens are named {prefix_or_name!r}; revoke by prefix")
            conn.execute(t.update().where(t.c.id == rows[0].id).values(revoked_at=now()))
            return _token(conn.execute(select(t).where(t.c.id == rows[0].id)).one())

    def lookup(self, token_hash: str) -> ApiToken | None:
        """The active token with this hash, or None."""
        with self.connect() as conn:
            row = conn.execute(select(t).where(t.c.token_hash == token_hash, t.c.revoked_at.is_(None))).first()
            return None if row is None else _token(row)

    def touch(self, token_id: int) -> None:
        with self.begin() as conn:
            conn.execute(t.update().where(t.c.id == token_id).values(last_used_at=now()))

    def count_active(self) -> int:
        with self.connect() as conn:
            return len(conn.execute(select(t.c.id).where(t.c.revoked_at.is_(None))).all())


def _token(r: Row[Any]) -> ApiToken:
    return ApiToken(
        id=r.id,
        name=r.name,
        role=Role(r.role),
        prefix=r.prefix,
        created_at=utc(r.created_at),  # type: ignore[arg-type]
        created_by=r.created_by,
        last_used_at=utc(r.last_used_at),
        revoked_at=utc(r.revoked_at),
    )
