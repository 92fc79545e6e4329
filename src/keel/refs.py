"""One reference grammar for the CLI, HTTP and Python.

name            the newest version
name@latest     the newest version
name@7          version 7
name@champion   whatever the alias 'champion' points at (models)
name@9f2c1ab    a content-hash prefix, at least 6 hex digits (datasets); 'sha256:' may prefix it,
                and must when the prefix is all decimal digits (name@123456 is version 123456)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from keel.errors import InvalidInputError

__all__ = ["Ref", "parse_ref", "check_name", "MAX_VERSION", "CHAMPION", "CHALLENGER"]

# The aliases Keel itself moves: the version that serves (retraining promotes to it, monitors watch
# it, the server answers with it), and a retraining's candidate before its gate.
CHAMPION = "champion"
CHALLENGER = "challenger"

# Database drivers bind integers in at most 64 bits (Python's sqlite3 raises OverflowError past
# them): a larger number names no version, so it is refused here instead of failing in the store.
MAX_VERSION = 2**63 - 1

# Used with fullmatch: `$` would also accept a trailing newline ("credit\n").
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SELECTOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_VERSION = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also accepts '²' and other digits
_HEX = re.compile(r"(sha256:)?[0-9a-fA-F]{6,64}")


def check_name(name: str, *, what: str = "name") -> str:
    """Return `name` if it is a valid dataset, model, experiment or alias name; raise otherwise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInputError(
            f"Invalid {what} {name!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Ref:
    """A parsed reference: exactly one of version, alias, digest is set, or none (= latest)."""

    name: str
    version: int | None = None
    alias: str | None = None
    digest: str | None = None  # hex prefix without 'sha256:'

    @property
    def is_latest(self) -> bool:
        return self.version is None and self.alias is None and self.digest is None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        if self.digest is not None:
            return f"{self.name}@{self.digest}"
        return f"{self.name}@latest"


def parse_ref(text: str, *, hashes: bool = False) -> Ref:
    """Parse 'name', 'name@7', 'name@latest', 'name@alias' (or a hash prefix when `hashes`).

    >>> parse_ref("credit@3")
    Ref(name='credit', version=3, alias=None, digest=None)
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(f"Empty reference {text!r}: expected NAME, NAME@VERSION or NAME@ALIAS")
    name, sep, selector = text.strip().partition("@")
    check_name(name)
    if sep and not selector:
        raise InvalidInputError(f"Reference {text!r} has nothing after '@': give a version, 'latest' or an alias")
    if not sep or selector == "latest":
        return Ref(name)
    if _VERSION.fullmatch(selector):
        # Checked on the digits, before int(): a 5,000-digit selector must not reach int() at all.
        digits = selector.lstrip("0")
        if len(digits) > len(str(MAX_VERSION)) or (digits and int(digits) > MAX_VERSION):
            hint = "; a hash prefix of decimal digits needs 'sha256:' before it" if hashes else ""
            raise InvalidInputError(f"Reference {text!r}: a version is at most {MAX_VERSION}{hint}")
        version = int(digits or "0")
        if version < 1:
            raise InvalidInputError(f"Reference {text!r}: versions start at 1")
        return Ref(name, version=version)
    if hashes and _HEX.fullmatch(selector):
        return Ref(name, digest=selector.removeprefix("sha256:").lower())
    if selector.startswith("sha256:"):
        if hashes:
            raise InvalidInputError(f"Reference {text!r}: a hash prefix needs 6 to 64 hex digits after 'sha256:'")
        raise InvalidInputError(f"Reference {text!r}: only datasets are addressed by hash")
    if not _SELECTOR.fullmatch(selector):
        raise InvalidInputError(f"Reference {text!r}: {selector!r} is not a version, alias or hash")
    return Ref(name, alias=selector)
