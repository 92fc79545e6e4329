"""Error translation at the storage boundary and the retry of writes that lose a version race."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from keel import ConflictError, InvalidInputError, StoreUnavailableError
from keel.storage._common import retry_conflicts, translate_errors


class _DriverError(Exception):
    pass


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (IntegrityError("INSERT", {}, _DriverError("UNIQUE constraint failed: datasets.name")), ConflictError),
        (DataError("INSERT", {}, _DriverError("value too long for type character varying(128)")), InvalidInputError),
        (OperationalError("SELECT", {}, _DriverError("database is locked")), StoreUnavailableError),
        (
            DBAPIError("SELECT", {}, _DriverError("server closed the connection"), connection_invalidated=True),
            StoreUnavailableError,
        ),
        (PoolTimeoutError("QueuePool limit of size 5 overflow 10 reached"), StoreUnavailableError),
    ],
)
def test_sqlalchemy_errors_become_keel_errors_with_the_driver_message(raised: Exception, expected: type) -> None:
    with pytest.raises(expected) as info:
        with translate_errors():
            raise raised
    assert info.value.__cause__ is raised
    if isinstance(raised, DBAPIError):
        assert str(raised.orig) in str(info.value)


def test_programming_errors_are_not_disguised() -> None:
    error = ProgrammingError("SELECT nope", {}, _DriverError("syntax error"))
    with pytest.raises(ProgrammingError):  # a bug in keel, not something the caller can fix
        with translate_errors():
            raise error


def test_retry_conflicts_retries_until_the_write_wins() -> None:
    calls = []

    @retry_conflicts(attempts=4)
    def write() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConflictError("version 2 was taken")
        return "stored"

    assert write() == "stored" and len(calls) == 3


def test_retry_conflicts_gives_up_after_the_last_attempt() -> None:
    calls = []

    @retry_conflicts(attempts=3)
    def write() -> None:
        calls.append(1)
        raise ConflictError("always taken")

    with pytest.raises(ConflictError):
        write()
    assert len(calls) == 3


def test_retry_conflicts_does_not_retry_other_errors() -> None:
    calls = []

    @retry_conflicts()
    def write() -> None:
        calls.append(1)
        raise StoreUnavailableError("down")

    with pytest.raises(StoreUnavailableError):
        write()
    assert len(calls) == 1
