"""What the truth tests share: real servers and projectors, a wait for the views to catch
up with the log, a rebuild into a fresh database, and the views dumped row by row.

A test names its backend ``"embedded"`` (a home directory: the embedded log and SQLite
views) or ``"kafka+postgresql"`` (the session's broker and a fresh PostgreSQL database of
its own); `Backend` carries the options that every command of that test then takes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "server"))
sys.path.insert(0, str(HERE.parent / "views"))
from projector_contract import dump  # noqa: E402
from serving import running_server  # noqa: E402

__all__ = ["Backend", "backend_for", "caught_up", "dump", "events_named", "rebuild_into", "running_projector", "running_server"]

BACKENDS = ["embedded", "kafka+postgresql"]


@dataclass
class Backend:
    """Where one test's log and views live, as command-line options and URLs."""

    kind: str
    home: Path
    kafka: str | None = None
    db: str | None = None
    fresh_database: object = field(default=None, repr=False)  # makes another empty database (PostgreSQL)

    @property
    def options(self) -> list[str]:
        """Options for ``eventflow server`` / ``consume`` / ``views rebuild``."""
        return ["--kafka", self.kafka, "--db", self.db] if self.kafka else []

    @property
    def views_url(self) -> str:
        return self.db or f"sqlite:///{self.home / 'views.db'}"

    @property
    def sdk_uri(self) -> str:
        """The tracking URI that makes the SDK write to this log itself (no server)."""
        return f"kafka://{self.kafka}" if self.kafka else str(self.home)

    def sdk_env(self) -> dict[str, str]:
        """Environment for an SDK process writing to this backend directly."""
        env = {"EVENTFLOW_TRACKING_URI": self.sdk_uri, "EVENTFLOW_CAPTURE_ENV": "false", "EVENTFLOW_HOME": str(self.home)}
        if self.db:
            env["EVENTFLOW_DB"] = self.db
        return env

    def empty_views(self, label: str) -> str:
        """An empty database of the same engine, for a rebuild to fill."""
        if self.fresh_database is not None:
            return self.fresh_database(label)  # type: ignore[operator]
        return f"sqlite:///{self.home.parent / (label + '.db')}"


def backend_for(request: pytest.FixtureRequest, kind: str, home: Path, prefix: str) -> Backend:
    home.mkdir(parents=True, exist_ok=True)
    if kind == "embedded":
        return Backend(kind, home)
    make = request.getfixturevalue("new_postgres_database")
    return Backend(kind, home, kafka=request.getfixturevalue("kafka_bootstrap"), db=make(prefix), fresh_database=make)


@contextlib.contextmanager
def running_projector(backend: Backend, log_name: str = "projector.out") -> Iterator[subprocess.Popen]:
    """``eventflow consume projector`` as its own process; stopped with SIGTERM (it leaves its group)."""
    log = open(backend.home / log_name, "a")
    command = [sys.executable, "-m", "eventflow", "consume", "projector", "--home", str(backend.home), *backend.options]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop(process)
        log.close()


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until(condition, timeout: float, what: str, pause: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll ``condition`` until it returns something true; fail saying ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(pause)


def log_ends(backend: Backend) -> dict[tuple[str, int], int]:
    """The end offset of every lifecycle partition of the backend's log."""
    from eventflow.events import LIFECYCLE_TOPICS
    from eventflow.log import open_log

    log = open_log(f"kafka://{backend.kafka}" if backend.kafka else str(backend.home / "log"))
    try:
        return {(t, p): end for t in LIFECYCLE_TOPICS if t in log.topics() for p, end in log.end_offsets(t).items()}
    finally:
        log.close()


def caught_up(backend: Backend, timeout: float = 120) -> None:
    """Wait until the live projector has applied the whole log (every partition's end)."""
    from sqlalchemy import create_engine, text

    ends = log_ends(backend)
    engine = create_engine(backend.views_url)

    def applied() -> bool:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT topic, partition, next_offset FROM log_positions WHERE consumer = 'projector'"))
            positions = {(t, p): o for t, p, o in rows}
        return all(positions.get(tp, 0) >= end for tp, end in ends.items() if end > 0)

    try:
        wait_until(applied, timeout, f"the live views to apply the log up to {ends}", pause=0.2)
    finally:
        engine.dispose()


def rebuild_into(backend: Backend, label: str = "rebuilt") -> str:
    """``eventflow views rebuild --into`` a fresh database, as a user runs it; its URL."""
    into = backend.empty_views(label)
    command = [sys.executable, "-m", "eventflow", "views", "rebuild", "--home", str(backend.home), *backend.options, "--into", into]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    return into


def events_named(url: str, type_pattern: str, **match: object) -> list[dict]:
    """Events on the log (through the server's audit API) of a type whose payload has these fields."""
    found, token = [], None
    while True:
        query = {"type": type_pattern, "max_results": 10000, **({"page_token": token} if token else {})}
        page = httpx.get(url + "/api/2.0/eventflow/events", params=query, timeout=60).json()
        found += [
            e["event"] for e in page["events"]
            if "event" in e and all(e["event"]["payload"].get(k) == v for k, v in match.items())
        ]
        token = page.get("next_page_token")
        if not token:
            return found
