"""The exceptions keel raises on purpose.

    KeelError
    ├── NotFoundError (LookupError)          a dataset, run, model, version or alias does not exist
    ├── ConflictError                        the write collides with existing state
    ├── InvalidInputError (ValueError)       an argument or payload is malformed
    │   ├── SignatureError                   model input does not match the version's signature
    │   ├── InvalidModelError                a model artifact that does not load, is not fitted or cannot predict
    │   └── NotFittedError (AttributeError)  fit() has not been called yet
    ├── ConfigError (ValueError)             a KEEL_* variable has an unusable value
    ├── MissingDependencyError (ImportError) an optional extra is not installed
    ├── UnsafeLoadError (PermissionError)    loading would run code of the file's choosing without trusted=True
    ├── CorruptArtifactError                 stored bytes no longer match their SHA-256
    ├── SchemaVersionError                   the workspace was written by a newer keel
    ├── StoreUnavailableError (ConnectionError) the metadata or artifact store cannot be reached
    ├── AccessDeniedError (PermissionError)  the server refused the token (401) or its role (403)
    └── UserCodeError                        code you supplied raised; see __cause__

Every message names the offending value and, where there is one, a way out.
"""

from __future__ import annotations

__all__ = [
    "KeelError",
    "NotFoundError",
    "ConflictError",
    "InvalidInputError",
    "SignatureError",
    "NotFittedError",
    "InvalidModelError",
    "ConfigError",
    "MissingDependencyError",
    "UnsafeLoadError",
    "CorruptArtifactError",
    "SchemaVersionError",
    "StoreUnavailableError",
    "UserCodeError",
    "AccessDeniedError",
]


class KeelError(Exception):
    """Base of every error keel raises on purpose."""


class NotFoundError(KeelError, LookupError):
    """A dataset, run, model, version or alias does not exist."""

    def __str__(self) -> str:  # LookupError would repr() a single argument (KeyError does)
        return str(self.args[0]) if self.args else ""


class ConflictError(KeelError):
    """The write collides with existing state (duplicate name, moved alias)."""


class InvalidInputError(KeelError, ValueError):
    """An argument or payload is malformed."""


class SignatureError(InvalidInputError):
    """Model input does not match the signature stored with the model version."""

    def __init__(
        self,
        message: str,
        *,
        missing: tuple[str, ...] = (),
        extra: tuple[str, ...] = (),
        mistyped: tuple[tuple[str, str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.missing = missing
        self.extra = extra
        self.mistyped = mistyped  # (column, expected, got)


class InvalidModelError(InvalidInputError):
    """A model artifact that does not load under the trust rules, is not fitted, or fails on its input example."""


class NotFittedError(InvalidInputError, AttributeError):
    """fit() has not been called yet."""


class ConfigError(KeelError, ValueError):
    """A KEEL_* variable or a Settings field has an unusable value."""


class MissingDependencyError(KeelError, ImportError):
    """An optional extra is not installed."""


class UnsafeLoadError(KeelError, PermissionError):
    """Loading this artifact could run code it names (pickle, functions); pass trusted=True if you trust its source."""


class CorruptArtifactError(KeelError):
    """An artifact's bytes no longer match the SHA-256 it was stored under."""


class SchemaVersionError(KeelError):
    """The workspace's metadata schema is newer than this keel understands."""


class StoreUnavailableError(KeelError, ConnectionError):
    """The metadata store or artifact store cannot be reached."""


class UserCodeError(KeelError):
    """Code you supplied (a recipe, a custom metric, a callable model) raised; see __cause__."""


class AccessDeniedError(KeelError, PermissionError):
    """A Keel server refused the request: no token, an unknown one, or a role too low."""
