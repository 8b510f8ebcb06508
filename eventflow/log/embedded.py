"""The embedded log: Kafka's semantics in one SQLite file, for one machine and no broker.

Why SQLite: its write-ahead log with ``synchronous=FULL`` makes an acknowledged append
survive ``kill -9`` and power loss, and its locking lets a training script append while
the server's consumers read from other processes. Offsets are assigned inside an
``IMMEDIATE`` transaction, so concurrent writers never share an offset and readers never
see a gap.

Consumer groups are cooperative: every member heartbeats in ``group_members``, computes
the same assignment (partition *i* of the sorted list goes to live member *i mod n*),
hands away partitions it no longer should own (calling ``on_revoke`` first, so it can
commit), and claims a partition only once no live member owns it. Two members therefore
never read one partition at the same time.

Every record carries a checksum (see ``record_checksum``), checked on every read: SQLite
guards its own structure, not the bytes inside a row, so a flipped bit in a value would
otherwise replay as a different metric. A record that fails it, or whose headers no
longer decode, or whose row is gone, is handed out as unreadable at its position
(``Record.error``), never raised out of ``poll``. Rows written before checksums existed
have none ("unchecked"): they are read as before, and ``eventflow log verify`` counts them.

The checksum catches accidents; a deliberate edit can redo it. So each record also gets a
tamper-evidence digest chained to the previous record of its partition
(``eventflow.log.chain``), computed in the same transaction that assigns the offset (the
partition's last digest is kept in ``partition_ends``) and handed out as ``Record.chain``.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import sqlite3
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from eventflow.log.chain import GENESIS, link
from eventflow.log.partitioner import partition_for
from eventflow.log.base import (
    Consumer,
    Headers,
    Log,
    LogError,
    Message,
    Position,
    RebalanceCallback,
    Record,
    TopicPartition,
    unreadable,
)

DEFAULT_PARTITIONS = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS partition_ends (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    last_timestamp INTEGER NOT NULL,
    chain BLOB,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    key BLOB,
    value BLOB NOT NULL,
    headers TEXT,
    checksum INTEGER,
    chain BLOB,
    PRIMARY KEY (topic, partition, offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_offsets (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_members (
    grp TEXT NOT NULL,
    member TEXT NOT NULL,
    heartbeat REAL NOT NULL,
    PRIMARY KEY (grp, member)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_owners (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    member TEXT NOT NULL,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
"""


def _encode_headers(headers: Headers) -> str | None:
    if not headers:
        return None
    # latin-1 maps every byte to one code point, so any header value survives JSON
    # (and json.dumps escapes the rest: the text is plain ASCII, its bytes are its UTF-8).
    return json.dumps([[name, value.decode("latin-1")] for name, value in headers])


def _decode_headers(raw: bytes | None) -> Headers:
    """The headers from the column's bytes; raises ValueError on anything else."""
    if not raw:
        return ()
    pairs = json.loads(raw.decode("utf-8"))
    if not isinstance(pairs, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(part, str) for part in pair) for pair in pairs
    ):
        raise ValueError("not a list of [name, value] pairs")
    return tuple((name, value.encode("latin-1")) for name, value in pairs)


_POSITION = struct.Struct(">qqq")
_LENGTH = struct.Struct(">i")


def record_checksum(
    topic: str, partition: int, offset: int, timestamp: int, key: bytes | None, value: bytes, headers: bytes | None
) -> int:
    """CRC-32 (zlib's, the IEEE polynomial) over where the record is and what it holds.

    Not CRC-32C as Kafka uses: no CRC-32C library is installed here, and both catch every
    burst of up to 32 flipped bits; zlib's runs in C at several GB/s. Each part is
    length-prefixed (-1 for none), so moving bytes between key, value and headers, or a
    record to another position, changes the sum too. ``headers`` are the column's bytes.
    """
    crc = zlib.crc32(_POSITION.pack(partition, offset, timestamp))
    for part in (topic.encode(), key, value, headers):
        if part is None:
            crc = zlib.crc32(_LENGTH.pack(-1), crc)
        else:
            crc = zlib.crc32(part, zlib.crc32(_LENGTH.pack(len(part)), crc))
    return crc


def _record(topic: str, partition: int, row: tuple) -> Record:
    """A row as a record, or as an unreadable record saying what is wrong with it."""
    offset, timestamp, key, value, headers, checksum, chain = row
    try:
        try:  # first, as the more telling reason (the checksum then fails too)
            decoded = _decode_headers(headers)
        except ValueError as error:
            return unreadable(topic, partition, offset, 0, f"undecodable headers: {error}")
        if checksum is not None:
            actual = record_checksum(topic, partition, offset, timestamp, key, value, headers)
            if actual != checksum:
                return unreadable(
                    topic, partition, offset, 0,
                    f"checksum mismatch: the record changed after it was appended (stored {checksum:08x}, read {actual:08x})",
                )
        return Record(topic, partition, offset, key, value, timestamp, decoded, chain=chain)
    except (TypeError, struct.error, AttributeError) as error:  # a column of the wrong type
        return unreadable(topic, partition, offset, 0, f"unreadable record: {error}")


def _missing(tp: TopicPartition, offset: int) -> Record:
    return unreadable(tp.topic, tp.partition, offset, 0, "missing: the partition has no record at this offset")


# Every column as the bytes stored, so a damaged text column cannot fail in the driver.
_COLUMNS = "offset, timestamp, CAST(key AS BLOB), CAST(value AS BLOB), CAST(headers AS BLOB), checksum, CAST(chain AS BLOB)"


def _damaged(error: sqlite3.DatabaseError) -> bool:
    """A damaged file ("malformed"), not a busy or unreachable one (OperationalError)."""
    return not isinstance(error, sqlite3.OperationalError)


def enable_wal(conn: Any, timeout: float = 60.0) -> None:
    """``PRAGMA journal_mode=WAL`` on a connection (or cursor) of a SQLite file.

    Processes that open a new database at the same moment (a server and its projectors
    started together) race to switch it to WAL, and SQLite answers the losers "database
    is locked" at once, without waiting on the busy timeout: wait for the winner here."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _connect(path: Path, sync: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60.0)
    try:
        enable_wal(conn)
    except sqlite3.OperationalError:
        conn.close()
        raise
    conn.execute(f"PRAGMA synchronous={sync}")
    conn.execute("PRAGMA busy_timeout=60000")
    return conn


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: takes the write lock first, so no upgrade deadlock."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


class EmbeddedLog(Log):
    """A durable, multi-process log in ``<directory>/log.db``.

    ``sync`` is SQLite's synchronous level: ``FULL`` (the default) fsyncs every commit,
    so an acknowledged append survives power loss; ``NORMAL`` survives a crashed process
    but not a crashed machine, and is about twenty times faster for single appends.
    """

    def __init__(self, directory: str | os.PathLike[str], *, partitions: int = DEFAULT_PARTITIONS, sync: str = "FULL"):
        if sync.upper() not in ("FULL", "NORMAL"):
            raise ValueError(f"sync must be FULL or NORMAL, not {sync!r}")
        self.directory = Path(directory).expanduser()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "log.db"
        self.default_partitions = partitions
        self.sync = sync.upper()
        self._lock = threading.Lock()
        self._conn = _connect(self.path, self.sync)
        with self._lock, _Transaction(self._conn) as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            # A log from before checksums: its rows stay unchecked, new ones get one.
            columns = {row[1] for row in conn.execute("PRAGMA table_info(records)")}
            if "checksum" not in columns:
                conn.execute("ALTER TABLE records ADD COLUMN checksum INTEGER")
            # A log from before the chain: its rows stay unchained, new ones start it.
            if "chain" not in columns:
                conn.execute("ALTER TABLE records ADD COLUMN chain BLOB")
                conn.execute("ALTER TABLE partition_ends ADD COLUMN chain BLOB")
        self._partition_counts: dict[str, int] = {}
        self._round_robin = itertools.count()
        self._appended = threading.Condition()  # wakes this process's consumers at once
        self.appends = 0  # this process's appends so far: a consumer notes it before it reads
        self._closed = False

    # -- topics ---------------------------------------------------------------------

    def create_topic(self, topic: str, partitions: int | None = None) -> None:
        self._check_open()
        with self._lock, _Transaction(self._conn) as conn:
            self._create_topic_locked(conn, topic, partitions)

    def _create_topic_locked(self, conn: sqlite3.Connection, topic: str, partitions: int | None) -> int:
        if not topic or len(topic) > 249:
            raise LogError(f"invalid topic name {topic!r}: it must have 1 to 249 characters")
        row = conn.execute("SELECT partitions FROM topics WHERE name = ?", (topic,)).fetchone()
        if row:
            return row[0]
        count = partitions or self.default_partitions
        if count < 1:
            raise LogError(f"a topic needs at least one partition, not {count}")
        conn.execute("INSERT INTO topics (name, partitions) VALUES (?, ?)", (topic, count))
        conn.executemany(
            "INSERT INTO partition_ends (topic, partition, next_offset, last_timestamp) VALUES (?, ?, 0, 0)",
            [(topic, p) for p in range(count)],
        )
        return count

    def topics(self) -> list[str]:
        self._check_open()
        with self._lock:
            return [row[0] for row in self._conn.execute("SELECT name FROM topics ORDER BY name")]

    def partitions(self, topic: str) -> list[int]:
        return list(range(self._partition_count(topic)))

    def _partition_count(self, topic: str) -> int:
        count = self._partition_counts.get(topic)
        if count is None:
            with self._lock:
                row = self._conn.execute("SELECT partitions FROM topics WHERE name = ?", (topic,)).fetchone()
            if row is None:
                raise LogError(f"topic {topic!r} does not exist")
            count = self._partition_counts[topic] = row[0]
        return count

    def end_offsets(self, topic: str) -> dict[int, int]:
        self._check_open()
        with self._lock:
            rows = self._conn.execute(
                "SELECT partition, next_offset FROM partition_ends WHERE topic = ?", (topic,)
            ).fetchall()
        if not rows:
            raise LogError(f"topic {topic!r} does not exist")
        return dict(rows)

    # -- appending ------------------------------------------------------------------

    def append(self, topic: str, key: bytes | None, value: bytes, headers: Headers = ()) -> Position:
        return self.append_batch([Message(topic, key, value, headers)])[0]

    def append_batch(self, messages: Sequence[Message]) -> list[Position]:
        self._check_open()
        if not messages:
            return []
        positions: list[Position] = []
        with self._lock, _Transaction(self._conn) as conn:
            ends: dict[TopicPartition, list[int]] = {}
            counts: dict[str, int] = {}
            rows = []
            now = time.time_ns() // 1_000_000
            for message in messages:
                count = counts.get(message.topic)
                if count is None:
                    count = counts[message.topic] = self._create_topic_locked(conn, message.topic, None)
                if message.key is None:
                    partition = next(self._round_robin) % count
                else:
                    partition = partition_for(message.key, count)
                tp = TopicPartition(message.topic, partition)
                end = ends.get(tp)
                if end is None:
                    end = ends[tp] = list(
                        conn.execute(
                            "SELECT next_offset, last_timestamp, chain FROM partition_ends WHERE topic = ? AND partition = ?",
                            tp,
                        ).fetchone()
                    )
                offset = end[0]
                # Log-append time, never going backwards in a partition, so seek by time
                # can binary-search offsets.
                timestamp = end[1] = max(now, end[1])
                end[0] += 1
                headers = _encode_headers(message.headers)
                crc = record_checksum(
                    tp.topic, tp.partition, offset, timestamp, message.key, message.value, headers and headers.encode()
                )
                # The tamper-evidence chain: this writer holds the partition's lock, so it
                # knows the digest before this record (eventflow.log.chain).
                end[2] = link(end[2] or GENESIS, tp.topic, tp.partition, offset, timestamp, message.key, message.value, message.headers)
                rows.append((tp.topic, tp.partition, offset, timestamp, message.key, message.value, headers, crc, end[2]))
                positions.append(Position(tp.topic, tp.partition, offset))
            conn.executemany(
                "INSERT INTO records (topic, partition, offset, timestamp, key, value, headers, checksum, chain) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.executemany(
                "UPDATE partition_ends SET next_offset = ?, last_timestamp = ?, chain = ? WHERE topic = ? AND partition = ?",
                [(end[0], end[1], end[2], tp.topic, tp.partition) for tp, end in ends.items()],
            )
        with self._appended:
            self.appends += 1
            self._appended.notify_all()
        return positions

    # -- consuming ------------------------------------------------------------------

    def consumer(
        self,
        topics: Sequence[str],
        group: str | None = None,
        *,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
        from_beginning: bool = True,
        session_timeout: float = 10.0,
        patience: float = 0.0,
    ) -> "EmbeddedConsumer":
        self._check_open()
        if isinstance(topics, str):
            topics = [topics]
        for topic in topics:
            self.create_topic(topic)
        return EmbeddedConsumer(
            self,
            list(topics),
            group,
            on_assign=on_assign,
            on_revoke=on_revoke,
            from_beginning=from_beginning,
            session_timeout=session_timeout,
            patience=patience,
        )

    def unchecked(self) -> int:
        """How many records were appended before checksums existed (not checkable)."""
        self._check_open()
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM records WHERE checksum IS NULL").fetchone()[0]

    @contextlib.contextmanager
    def guard(self, name: str) -> Iterator[None]:
        """A file lock beside the log: held off across threads and processes alike
        (``flock`` locks belong to each opened file, so two opens in one process exclude
        each other too)."""
        with open(self.directory / f"{name}.lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def wait_for_append(self, timeout: float, seen: int | None = None) -> None:
        """Block until this process appends something, or ``timeout`` passes. ``seen``:
        ``appends`` as it was before the caller last read; an append since then (after
        the read, before this wait) returns at once instead of being slept through."""
        with self._appended:
            if seen is None or self.appends == seen:
                self._appended.wait(timeout)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with self._lock:
                self._conn.close()

    def _check_open(self) -> None:
        if self._closed:
            raise LogError("the embedded log is closed")


class EmbeddedConsumer(Consumer):
    """A consumer of the embedded log, with its own connection (so it may live in any thread)."""

    # How often a group member heartbeats and looks at the group while polling.
    SYNC_INTERVAL = 0.2

    def __init__(
        self,
        log: EmbeddedLog,
        topics: list[str],
        group: str | None,
        *,
        on_assign: RebalanceCallback | None,
        on_revoke: RebalanceCallback | None,
        from_beginning: bool,
        session_timeout: float,
        patience: float = 0.0,
    ):
        self._log = log
        self._topics = topics
        self._patience = patience
        self._group = group
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._from_beginning = from_beginning
        self._session_timeout = session_timeout
        self._member = uuid.uuid4().hex
        # This connection writes only bookkeeping (heartbeats every SYNC_INTERVAL, claims,
        # group offsets), never a record: no fsync for it (a killed process loses none of
        # it; a crashed machine at worst re-delivers, as at-least-once allows).
        self._conn = _connect(log.path, "NORMAL")
        self._positions: dict[TopicPartition, int] = {}
        # What the file and the positions were when a read last found nothing (see poll).
        self._found_nothing: tuple[int, dict[TopicPartition, int]] | None = None
        self._last_sync = 0.0
        self._closed = False
        if group is None:
            self._sync(force=True)  # alone: every partition, at once (as Kafka's assign())
        else:
            with _Transaction(self._conn) as conn:
                conn.execute(
                    "INSERT OR REPLACE INTO group_members (grp, member, heartbeat) VALUES (?, ?, ?)",
                    (group, self._member, time.time()),
                )

    # -- assignment -----------------------------------------------------------------

    def _all_partitions(self) -> list[TopicPartition]:
        placeholders = ",".join("?" * len(self._topics))
        rows = self._conn.execute(
            f"SELECT name, partitions FROM topics WHERE name IN ({placeholders})", self._topics
        ).fetchall()
        return sorted(TopicPartition(name, p) for name, count in rows for p in range(count))

    def _sync(self, force: bool = False) -> None:
        """Heartbeat and settle the assignment (at most every SYNC_INTERVAL unless forced)."""
        now = time.monotonic()
        if not force and now - self._last_sync < self.SYNC_INTERVAL:
            return
        self._last_sync = now
        if self._group is None:
            self._assign(set(self._all_partitions()) - set(self._positions))
            return
        with _Transaction(self._conn) as conn:
            wall = time.time()
            conn.execute(
                "INSERT OR REPLACE INTO group_members (grp, member, heartbeat) VALUES (?, ?, ?)",
                (self._group, self._member, wall),
            )
            conn.execute(
                "DELETE FROM group_members WHERE grp = ? AND heartbeat < ?",
                (self._group, wall - self._session_timeout),
            )
            members = [row[0] for row in conn.execute("SELECT member FROM group_members WHERE grp = ? ORDER BY member", (self._group,))]
            partitions = self._all_partitions()
            me = members.index(self._member)
            target = {tp for i, tp in enumerate(partitions) if i % len(members) == me}
        revoked = set(self._positions) - target
        if revoked:
            if self._on_revoke:
                self._on_revoke(revoked)
            with _Transaction(self._conn) as conn:
                conn.executemany(
                    "DELETE FROM group_owners WHERE grp = ? AND topic = ? AND partition = ? AND member = ?",
                    [(self._group, tp.topic, tp.partition, self._member) for tp in revoked],
                )
            for tp in revoked:
                del self._positions[tp]
        wanted = target - set(self._positions)
        if not wanted:
            return
        claimed: set[TopicPartition] = set()
        with _Transaction(self._conn) as conn:
            live = set(members)
            for tp in wanted:
                row = conn.execute(
                    "SELECT member FROM group_owners WHERE grp = ? AND topic = ? AND partition = ?",
                    (self._group, tp.topic, tp.partition),
                ).fetchone()
                if row is None or row[0] == self._member or row[0] not in live:
                    conn.execute(
                        "INSERT OR REPLACE INTO group_owners (grp, topic, partition, member) VALUES (?, ?, ?, ?)",
                        (self._group, tp.topic, tp.partition, self._member),
                    )
                    claimed.add(tp)
        self._assign(claimed)
        if wanted - claimed:
            self._last_sync = 0.0  # someone still holds one: look again at the next poll

    def _assign(self, new: set[TopicPartition]) -> None:
        if not new:
            return
        for tp in new:
            committed = self.committed(tp) if self._group is not None else None
            if committed is not None:
                self._positions[tp] = committed
            elif self._from_beginning:
                self._positions[tp] = 0
            else:
                self._positions[tp] = self._end_offset(tp)
        if self._on_assign:
            self._on_assign(set(new))

    def assignment(self) -> set[TopicPartition]:
        return set(self._positions)

    def set_patience(self, seconds: float) -> None:
        self._patience = seconds

    # -- reading --------------------------------------------------------------------

    def poll(self, timeout: float = 1.0, max_records: int = 500) -> list[Record]:
        self._check_open()
        records = self._poll(timeout, max_records)
        if records and self._patience and len(records) < max_records:
            # Sleep through the patience, then read once: reading on at every append woke
            # each patient reader per append, as it gathered.
            time.sleep(self._patience)
            records += self._poll(0.0, max_records - len(records))
        return records

    def _poll(self, timeout: float, max_records: int) -> list[Record]:
        deadline = time.monotonic() + timeout
        pause = 0.001
        while True:
            seen = self._log.appends
            self._sync()
            records = self._read_if_changed(max_records)
            remaining = deadline - time.monotonic()
            if records or remaining <= 0:
                return records
            # Same-process appends wake us at once; other processes' within `pause`.
            self._log.wait_for_append(min(pause, remaining), seen)
            pause = min(pause * 2, 0.02)

    def _read_if_changed(self, max_records: int) -> list[Record]:
        """Read on, unless nothing changed since a read found nothing: SQLite's
        ``data_version`` moves when any other connection (another process's, this
        process's log) commits, and is far cheaper than reading every partition's end,
        which each of a server's idle consumers did every few milliseconds."""
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        if self._found_nothing == (version, self._positions):
            return []
        records = self._read(max_records)
        # The version from before the read: a commit during it is looked at next time.
        self._found_nothing = None if records else (version, dict(self._positions))
        return records

    def _read(self, max_records: int) -> list[Record]:
        if not self._positions:
            return []
        ends = dict(
            ((topic, partition), end)
            for topic, partition, end in self._conn.execute(
                f"SELECT topic, partition, next_offset FROM partition_ends WHERE topic IN ({','.join('?' * len(self._topics))})",
                self._topics,
            )
        )
        records: list[Record] = []
        for tp, position in sorted(self._positions.items()):
            if len(records) >= max_records:
                break
            end = ends.get(tp, 0)
            if end <= position:
                continue
            read = self._read_partition(tp, position, min(end, position + max_records - len(records)))
            records.extend(read)
            if read:
                self._positions[tp] = read[-1].offset + 1
        return records

    def _read_partition(self, tp: TopicPartition, start: int, stop: int) -> list[Record]:
        """Offsets ``start`` to ``stop`` (all below the partition's end, so all appended):
        every one comes out, as a record or as an unreadable one."""
        try:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM records WHERE topic = ? AND partition = ? AND offset >= ? AND offset < ? ORDER BY offset",
                (tp.topic, tp.partition, start, stop),
            ).fetchall()
        except sqlite3.DatabaseError as error:
            if not _damaged(error):
                raise
            return [self._read_one(tp, offset) for offset in range(start, stop)]
        records: list[Record] = []
        expected = start
        for row in rows:
            records.extend(_missing(tp, gap) for gap in range(expected, row[0]))
            records.append(_record(tp.topic, tp.partition, row))
            expected = row[0] + 1
        records.extend(_missing(tp, gap) for gap in range(expected, stop))
        return records

    def _read_one(self, tp: TopicPartition, offset: int) -> Record:
        """One offset alone, when a damaged page spoils reading the range around it."""
        try:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM records WHERE topic = ? AND partition = ? AND offset = ?",
                (tp.topic, tp.partition, offset),
            ).fetchone()
        except sqlite3.DatabaseError as error:
            if not _damaged(error):
                raise
            return unreadable(tp.topic, tp.partition, offset, 0, f"unreadable record: SQLite says {error}")
        return _missing(tp, offset) if row is None else _record(tp.topic, tp.partition, row)

    def position(self, tp: TopicPartition) -> int:
        try:
            return self._positions[tp]
        except KeyError:
            raise LogError(f"{tp.topic}[{tp.partition}] is not assigned to this consumer") from None

    def _end_offset(self, tp: TopicPartition) -> int:
        row = self._conn.execute(
            "SELECT next_offset FROM partition_ends WHERE topic = ? AND partition = ?", tp
        ).fetchone()
        return row[0] if row else 0

    # -- offsets --------------------------------------------------------------------

    def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        self._check_open()
        if self._group is None:
            raise LogError("commit needs a consumer group: this consumer was opened without one")
        if offsets is None:
            offsets = dict(self._positions)
        if not offsets:
            return
        with _Transaction(self._conn) as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO group_offsets (grp, topic, partition, offset) VALUES (?, ?, ?, ?)",
                [(self._group, tp.topic, tp.partition, offset) for tp, offset in offsets.items()],
            )

    def committed(self, tp: TopicPartition) -> int | None:
        if self._group is None:
            return None
        row = self._conn.execute(
            "SELECT offset FROM group_offsets WHERE grp = ? AND topic = ? AND partition = ?",
            (self._group, tp.topic, tp.partition),
        ).fetchone()
        return row[0] if row else None

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position(tp)  # raises if not assigned
        if offset < 0:
            raise LogError(f"cannot seek to a negative offset ({offset})")
        self._positions[tp] = offset

    def seek_to_beginning(self, tps: Iterable[TopicPartition] | None = None) -> None:
        for tp in self._selected(tps):
            self._positions[tp] = 0

    def seek_to_time(self, timestamp_ms: int, tps: Iterable[TopicPartition] | None = None) -> None:
        for tp in self._selected(tps):
            # Timestamps never decrease within a partition: binary search the offsets.
            low, high = 0, self._end_offset(tp)
            while low < high:
                middle = (low + high) // 2
                row = self._conn.execute(
                    "SELECT timestamp FROM records WHERE topic = ? AND partition = ? AND offset = ?",
                    (tp.topic, tp.partition, middle),
                ).fetchone()
                if row[0] < timestamp_ms:
                    low = middle + 1
                else:
                    high = middle
            self._positions[tp] = low

    def _selected(self, tps: Iterable[TopicPartition] | None) -> list[TopicPartition]:
        self._check_open()
        if tps is None:
            return list(self._positions)
        selected = list(tps)
        for tp in selected:
            self.position(tp)
        return selected

    def close(self) -> None:
        if self._closed:
            return
        if self._group is not None:
            revoked = set(self._positions)
            if revoked and self._on_revoke:
                self._on_revoke(revoked)
            with _Transaction(self._conn) as conn:
                conn.execute("DELETE FROM group_owners WHERE grp = ? AND member = ?", (self._group, self._member))
                conn.execute("DELETE FROM group_members WHERE grp = ? AND member = ?", (self._group, self._member))
        self._positions.clear()
        self._closed = True
        self._conn.close()

    def _check_open(self) -> None:
        if self._closed:
            raise LogError("this consumer is closed")
