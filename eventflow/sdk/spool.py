"""The spool: events a process could not send before it had to stop, kept on local disk.

Why: training code must be free to exit (Ctrl-C, SIGTERM, the end of the script) while
its server or broker is unreachable, and nothing it logged may be lost. What the sender
still holds is written here, under ``EVENTFLOW_HOME/spool/<target>/``, and sent by the
next process that logs to the same target, or by ``eventflow sync``.

A spool file is the encoded events as they would have been sent (laid out as the body
of ``POST /api/2.0/eventflow/events``). Each keeps its event id, so a file sent twice
after a partial send is applied once: the projector skips event ids it has applied.
A file is written to a temporary name, fsynced, renamed and its directory fsynced, so
a file that exists is whole. Files are sent oldest first, one process at a time (an
``fcntl`` lock per target), and a file is removed only after the target took all its
events durably.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from eventflow.codec import CodecError, decode, encode
from eventflow.codec.framing import pack, unpack
from eventflow.events import Event
from eventflow.sdk.sender import append_all_but_refused
from eventflow.sdk.stores import HomeUnavailable

logger = logging.getLogger(__name__)

MAGIC = b"eventflow-spool 1\n"
SUFFIX = ".events"

Append = Callable[[Sequence[Event]], object]


class SpoolBusy(RuntimeError):
    """Another process holds the target's lock: it is sending these files now."""


def normalize(uri: str) -> str:
    """One spelling per target, so every process finds the same spool directory."""
    if uri.startswith(("http://", "https://", "kafka://")):
        return uri.rstrip("/")
    return str(Path(uri.removeprefix("file://")).expanduser().resolve())


def root(home: str | os.PathLike[str] | None = None) -> Path:
    """The spool of a home (``EVENTFLOW_HOME`` by default); made only when written to."""
    from eventflow.config import DEFAULT_HOME

    return Path(home or os.environ.get("EVENTFLOW_HOME") or DEFAULT_HOME).expanduser().resolve() / "spool"


def directory(spool: Path, uri: str) -> Path:
    return spool / hashlib.sha256(normalize(uri).encode()).hexdigest()[:16]


def targets(spool: Path) -> dict[str, Path]:
    """Every target with spooled events: its URI and its directory."""
    found: dict[str, Path] = {}
    if spool.is_dir():
        for entry in sorted(spool.iterdir()):
            target = entry / "target"
            if target.is_file() and any(entry.glob("*" + SUFFIX)):
                found[target.read_text(encoding="utf-8").strip()] = entry
    return found


def files(where: Path) -> list[Path]:
    """A target's spool files, oldest first (names start with the time they were written)."""
    return sorted(where.glob("*" + SUFFIX))


def count(where: Path) -> int:
    return sum(len(read(path)) for path in files(where))


def write(spool: Path, uri: str, events: Sequence[Event]) -> Path:
    """Write ``events`` for ``uri`` durably as one new spool file; returns its path."""
    uri = normalize(uri)
    where = directory(spool, uri)
    body = pack(_encoded(events))
    name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
    try:
        fresh = not where.is_dir()
        where.mkdir(parents=True, exist_ok=True)
        target = where / "target"
        if not target.is_file():
            _write_durably(target, uri.encode() + b"\n")
        path = where / name
        _write_durably(path, MAGIC + body)
        if fresh:
            _fsync_dir(where.parent)
    except OSError as error:
        raise HomeUnavailable.because(error, spool) from error
    return path


def _encoded(events: Sequence[Event]) -> list[bytes]:
    """Each event encoded; one that cannot be (the log would refuse it too) is left out, loudly."""
    encoded = []
    for event in events:
        try:
            encoded.append(encode(event))
        except CodecError as error:
            logger.error("eventflow: not spooling %s %s: %s", event.type, event.event_id, error)
    return encoded


def read(path: Path) -> list[bytes]:
    """The encoded events of one spool file."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise ValueError(f"{path} is not an eventflow spool file (it does not start with {MAGIC!r})")
    return _unpack(data[len(MAGIC) :], path)


def send(
    where: Path,
    append: Append,
    *,
    batch: int = 500,
    progress: Callable[[int], None] | None = None,
    stop: Callable[[], bool] | None = None,
    lock_wait: float | None = None,
) -> int:
    """Send a target's spool files, oldest first; returns how many events were sent.

    Each file is removed once ``append`` returned for all its events (durable). An
    ``append`` error propagates and leaves the file, to be sent again whole later.
    ``stop`` ends the wait for the lock, and the sending between files, when it is true;
    ``SpoolBusy`` is raised if the lock was not had (by ``stop`` or after ``lock_wait`` s).
    """
    if not where.is_dir():
        return 0
    sent = 0
    deadline = None if lock_wait is None else time.monotonic() + lock_wait

    def give_up() -> bool:
        return bool(stop and stop()) or (deadline is not None and time.monotonic() > deadline)

    with locked(where, give_up) as held:
        if not held:
            raise SpoolBusy(f"another eventflow process is sending the spool in {where} now")
        while not (stop and stop()):
            pending = files(where)
            if not pending:
                break
            path = pending[0]
            try:
                events = [decode(item) for item in read(path)]
            except (ValueError, CodecError) as error:
                # Never block the files after it: keep it aside, for a person to look at.
                aside = path.with_name(path.name + ".damaged")
                os.replace(path, aside)
                logger.error("eventflow: %s cannot be read (%s); kept as %s, not sent", path, error, aside)
                continue
            refused: list[Event] = []
            for start in range(0, len(events), batch):
                chunk = events[start : start + batch]
                for event, error in append_all_but_refused(append, chunk):
                    logger.error("eventflow: the target refused spooled %s %s: %s", event.type, event.event_id, error)
                    refused.append(event)
                if progress is not None:
                    progress(len(chunk))
            if refused:
                # Never resent (it would be refused again), never lost: kept for a person to look at.
                _write_durably(path.with_name(path.name + ".refused"), MAGIC + pack(_encoded(refused)))
            path.unlink()
            _fsync_dir(where)
            sent += len(events)
    return sent


@contextlib.contextmanager
def locked(where: Path, stop: Callable[[], bool] | None = None) -> Iterator[bool]:
    """Hold the target's lock (one sender at a time); yields False if ``stop`` came first."""
    with open(where / "lock", "a+b") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if stop and stop():
                yield False
                return
            time.sleep(0.1)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _unpack(body: bytes, path: Path) -> list[bytes]:
    try:
        return unpack(body)
    except CodecError as error:
        raise ValueError(f"{path} is damaged ({error})") from error


def _write_durably(path: Path, data: bytes) -> None:
    temporary = path.with_name("." + path.name + ".tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
