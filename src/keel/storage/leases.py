"""Leases in the metadata store: one holder at a time for work that must run once per workspace.

Several processes share a workspace in server mode (`keel serve --workers N`, several servers
behind one address, `keel worker`s): each runs the background tick, but a due monitor must be
checked once, not once per process, and the prediction log compacted by one process at a time.
Such work runs under a lease: a row (name, holder, expires_at). `acquire` takes it when it is
free, expired, or already ours (then it is renewed), in one conditional UPDATE, else one INSERT
that loses to a concurrent one on the primary key; so two processes can never both hold it. A
holder that dies stops renewing and the lease passes to another process after its time to live.

Times are the acquiring process's UTC clock: hosts sharing a store must keep their clocks within
a small part of the time to live (NTP does).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import Column, DateTime, Engine, String, Table, and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from keel.storage._common import Transactional, now, utc
from keel.storage.schema import metadata

__all__ = ["LeaseStore", "leases"]

logger = logging.getLogger(__name__)

# Declared here, on schema.metadata (so migrations are checked against it like every other table).
leases = Table(
    "leases",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)


class LeaseStore(Transactional):
    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        # who this store object is, among every process and workspace sharing the store
        self.me = f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(4)}"

    @contextmanager
    def held(self, name: str, *, ttl_s: float = 30.0) -> Iterator[bool]:
        """Hold lease `name` for the body (yields True), renewed every ttl_s/3 seconds by a
        thread while the body runs, and released after it; yields False, and holds nothing,
        when another process holds it. Work done under it is done by one process at a time."""
        if not self.acquire(name, self.me, ttl_s):
            yield False
            return
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(ttl_s / 3):
                try:
                    if not self.acquire(name, self.me, ttl_s):
                        logger.error("lease %r was lost while held (a stall longer than %.0f s?)", name, ttl_s)
                except Exception:  # a store outage: try again at the next beat
                    logger.exception("renewing lease %r failed", name)

        beat = threading.Thread(target=renew, name=f"keel-lease-{name}", daemon=True)
        beat.start()
        try:
            yield True
        finally:
            stop.set()
            beat.join()
            try:
                self.release(name, self.me)
            except Exception:  # it expires on its own
                logger.exception("releasing lease %r failed", name)

    def acquire(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take or renew lease `name` for `holder` for `ttl_s` seconds; False when another holds it."""
        at = now()
        expires = at + timedelta(seconds=ttl_s)
        free_or_ours = and_(leases.c.name == name, or_(leases.c.holder == holder, leases.c.expires_at < at))
        with self.begin() as conn:
            won = conn.execute(update(leases).where(free_or_ours).values(holder=holder, expires_at=expires)).rowcount
        if won == 1:
            return True
        try:  # no row yet: the first to insert it holds the lease
            with self.engine.begin() as conn:
                conn.execute(insert(leases).values(name=name, holder=holder, expires_at=expires))
        except IntegrityError:
            return False  # another process inserted it (or holds it) first
        return True

    def release(self, name: str, holder: str) -> None:
        """Give lease `name` up at once if `holder` holds it (a clean stop: no wait for expiry)."""
        with self.begin() as conn:
            conn.execute(delete(leases).where(and_(leases.c.name == name, leases.c.holder == holder)))

    def holder(self, name: str) -> tuple[str, object] | None:
        """(holder, expires_at) of lease `name`, or None when nobody holds it (expired leases included)."""
        with self.connect() as conn:
            row = conn.execute(select(leases.c.holder, leases.c.expires_at).where(leases.c.name == name)).first()
        return None if row is None else (row.holder, utc(row.expires_at))
