"""Who uses a views database: a shared hold for every server and consumer, an exclusive
one for ``eventflow views rebuild``.

A rebuild that runs while a server writes to the views loses what the server writes
meanwhile (a new signing secret, a delivery's outcome), and the server keeps using the
views it opened. So every ``Runtime`` holds the views shared for its whole life, and a
rebuild takes them exclusively or is refused, naming the holders.

- SQLite: ``flock`` on ``<views file>.lock``. The OS releases it when its process ends,
  even by ``kill -9``, so a dead server never blocks a rebuild. Holders name themselves
  in ``<views file>.users/`` (pid, host, command); a name whose process is gone is stale
  and is removed when read.
- PostgreSQL: a session advisory lock on a connection of its own, named by its
  ``application_name``. PostgreSQL ends the session, and frees the lock, when the client's
  socket closes — a killed process included. (Behind a transaction-pooling proxy such as
  PgBouncer in transaction mode, session locks do not hold: connect directly.)
- Anything else (an in-memory database): nothing to hold.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import uuid
from pathlib import Path
from typing import IO, Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

# The advisory lock key of a views database on PostgreSQL ("evviewsu").
USE_LOCK_KEY = 0x6576_7669_6577_7375


class ViewsInUse(Exception):
    """The views are held by others in a way that excludes this hold."""


def this_process() -> str:
    """How a holder is named: pid, host and command line."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if program == "__main__.py":  # python -m eventflow
        program = Path(sys.argv[0]).parent.name
    command = " ".join([program, *sys.argv[1:]])[:200]
    return f"pid {os.getpid()} on {socket.gethostname()} ({command})"


class ViewsHold:
    """A hold on one views database; ``release`` it (or let the process end)."""

    def release(self) -> None:
        """Nothing held, nothing to release."""


def _alive(pid: int) -> bool:
    """Whether a process recorded as a user still runs (a zombie does not: it holds nothing)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


class _FileHold(ViewsHold):
    def __init__(self, views_file: Path, exclusive: bool):
        self.lock_path = Path(f"{views_file}.lock")
        self.users = Path(f"{views_file}.users")
        self._file: IO[bytes] | None = open(self.lock_path, "a+b")
        try:
            fcntl.flock(self._file, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except OSError as error:
            self._file.close()
            self._file = None
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise ViewsInUse(_described(self.holders(), views_file, exclusive)) from None
        self.users.mkdir(exist_ok=True)
        self._name = self.users / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        self._name.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "who": this_process()}))

    def holders(self) -> list[str]:
        found = []
        here = socket.gethostname()
        for entry in sorted(self.users.glob("*.json")) if self.users.is_dir() else []:
            try:
                named = json.loads(entry.read_text())
            except (OSError, ValueError):
                continue  # being written, or just removed
            if named["host"] == here and not _alive(named["pid"]):
                entry.unlink(missing_ok=True)  # a process that ended without releasing: the OS freed its lock
                continue
            found.append(named["who"])
        return found

    def release(self) -> None:
        if self._file is None:
            return
        self._name.unlink(missing_ok=True)
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None


class _AdvisoryHold(ViewsHold):
    def __init__(self, url: str, exclusive: bool):
        # PostgreSQL cuts application_name at 63 bytes.
        name = f"eventflow {' '.join(sys.argv[1:2])} pid {os.getpid()} on {socket.gethostname()}"[:63]
        self._engine = create_engine(url, poolclass=NullPool, connect_args={"application_name": name})
        self._connection: Any = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        take = "pg_try_advisory_lock" if exclusive else "pg_try_advisory_lock_shared"
        if not self._connection.execute(text(f"SELECT {take}(:key)"), {"key": USE_LOCK_KEY}).scalar():
            holders = self.holders()
            self.release()
            raise ViewsInUse(_described(holders, make_url(url).render_as_string(hide_password=True), exclusive))

    def holders(self) -> list[str]:
        rows = self._connection.execute(
            text(
                "SELECT a.application_name, a.client_addr, a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :high AND l.objid = :low AND l.objsubid = 1 "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND l.pid <> pg_backend_pid()"
            ),
            {"high": USE_LOCK_KEY >> 32, "low": USE_LOCK_KEY & 0xFFFF_FFFF},
        )
        return [f"{name or 'a client that did not name itself'} (PostgreSQL session {pid} from {addr or 'a local socket'})"
                for name, addr, pid in rows]

    def release(self) -> None:
        if self._connection is None:
            return
        with contextlib.suppress(Exception):  # a cut connection has freed the lock already
            self._connection.close()
        self._connection = None
        self._engine.dispose()


def _described(holders: list[str], where: object, exclusive: bool) -> str:
    said = f"the views {where} are in use by " + ("; ".join(holders) or "a process that has not named itself yet")
    # Only a rebuild holds the views alone.
    return said if exclusive else f"{said}, a views rebuild: start again once it has finished"


def hold_views(url: str, *, exclusive: bool = False) -> ViewsHold:
    """Hold the views at ``url``: shared (a server, a consumer) or exclusive (a rebuild);
    ViewsInUse, naming the holders, when the other kind holds them."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:" or parsed.query.get("mode") == "memory":
            return ViewsHold()
        return _FileHold(Path(parsed.database), exclusive)
    if parsed.get_backend_name() == "postgresql":
        return _AdvisoryHold(url, exclusive)
    return ViewsHold()
