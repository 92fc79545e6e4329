"""Access control: API tokens with roles. Tokens are random, shown once, and stored hashed.

May import: keel.storage and the base modules.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING

from keel.entities import ApiToken, Role
from keel.errors import InvalidInputError
from keel.refs import check_name

if TYPE_CHECKING:
    from keel.storage import MetadataStore

__all__ = ["Tokens", "hash_token"]


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


class Tokens:
    """The API tokens of one workspace: `ws.tokens`."""

    def __init__(self, meta: MetadataStore, *, author: str) -> None:
        self._meta = meta
        self._author = author

    def create(self, name: str, role: Role | str) -> tuple[str, ApiToken]:
        """Create a token; return (the token, shown only now, and its record)."""
        check_name(name, what="token name")
        try:
            role = Role(role)
        except ValueError:
            raise InvalidInputError(f"Unknown role {role!r}; use one of: {', '.join(r.value for r in Role)}") from None
        prefix = secrets.token_hex(4)
        token = f"keel_{prefix}_{secrets.token_urlsafe(32)}"
        record = self._meta.tokens.create(
            name=name, role=role, prefix=prefix, token_hash=hash_token(token), created_by=self._author
        )
        return token, record

    def list(self, *, include_revoked: bool = False) -> list[ApiToken]:
        return self._meta.tokens.list(include_revoked=include_revoked)

    def revoke(self, prefix_or_name: str) -> ApiToken:
        return self._meta.tokens.revoke(prefix_or_name)

    @staticmethod
    def digest(token: str) -> str:
        """The stored form of a token: also the key a cache of lookups may keep instead of the secret."""
        return hash_token(token)

    def authenticate(self, token: str) -> ApiToken | None:
        """The active token record for `token`, or None when it is unknown or revoked."""
        if not token or not token.startswith("keel_"):
            return None
        return self._meta.tokens.lookup(hash_token(token))

    def any_active(self) -> bool:
        return self._meta.tokens.count_active() > 0
