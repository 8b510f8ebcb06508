"""What a fault in a store means to a client: a sentence, never the driver's text.

A database that is down, a disk that is full or a lock held too long is not the client's
mistake nor a bug: it is answered ``503 TEMPORARILY_UNAVAILABLE`` with a sentence naming
the store and what to do. The driver's exception carries the SQL statement and its
parameters (other users' data, the schema): that goes to the server's log only.
"""

from __future__ import annotations

import errno
import sqlite3
from typing import Literal

from sqlalchemy import exc as sa

Fault = Literal["unreachable", "full", "busy"]

# SQLite's primary result codes (the low byte of an extended code).
_SQLITE_FAULTS: dict[int, Fault] = {5: "busy", 6: "busy", 10: "unreachable", 13: "full", 14: "unreachable"}
# PostgreSQL SQLSTATEs: class 08 is "connection exception"; 57P0x the server shutting down.
_POSTGRES_FAULTS: dict[str, Fault] = {"53100": "full", "53300": "busy", "57P01": "unreachable", "57P02": "unreachable", "57P03": "unreachable"}
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


def _driver_fault(error: BaseException) -> Fault | None:
    """The fault a DB-API exception (sqlite3, psycopg) reports through its code."""
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int):
        return _SQLITE_FAULTS.get(code & 0xFF)
    if isinstance(error, sqlite3.OperationalError) and "disk is full" in str(error):
        return "full"
    state = getattr(error, "sqlstate", None)
    if isinstance(state, str):
        return "unreachable" if state.startswith("08") else _POSTGRES_FAULTS.get(state)
    return None


def fault_of(error: BaseException) -> Fault | None:
    """Which store fault ``error`` is, or None when it is something else (a bug, a
    statement the database refused): those stay 500s."""
    if isinstance(error, sa.TimeoutError):  # no pooled connection came free in time
        return "busy"
    if isinstance(error, sa.DBAPIError):
        found = _driver_fault(error.orig) if error.orig is not None else None
        if found:
            return found
        if error.connection_invalidated:
            return "unreachable"
        # A connection that could not be made: no statement was sent yet.
        if isinstance(error, sa.OperationalError) and error.statement is None:
            return "unreachable"
        return None
    if isinstance(error, sqlite3.Error):
        return _driver_fault(error)
    if isinstance(error, OSError) and error.errno in _NO_SPACE:
        return "full"
    return None


_WHAT_TO_DO: dict[Fault, str] = {
    "unreachable": "cannot be reached: check that it is running and that this server can connect to it, then retry",
    "full": "is full (its disk has no space left): free space on it or give it more, then retry",
    "busy": "is busy (another writer held it too long): retry in a moment",
}


def sentence(fault: Fault, store: str) -> str:
    """The client's message: ``store`` names the store (``the views database (…)``)."""
    return f"{store} {_WHAT_TO_DO[fault]}"
