"""The embedded log is kept and checked: a damaged record is never replayed as if it
were sound, never stops a consumer, and ``eventflow log verify`` finds every one.

The damage is done for real: bytes flipped in the SQLite file (or, where a precise
target is needed, in one column of one row), then the log reopened and read."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time

from eventflow import commands
from eventflow.codec import decode
from eventflow.consumers.base import ConsumerLoop, Delivery, Subscriber
from eventflow.consumers.dead_letters import read_dead_letters
from eventflow.events import DEAD_LETTER_TOPIC
from eventflow.log import TopicPartition
from eventflow.log.embedded import EmbeddedLog
from eventflow.log.event_log import EventLog


class Collect(Subscriber):
    """Keeps every event it is given, and its offsets (it rebuilds from zero each run)."""

    keeps_offsets = True

    def __init__(self, group: str = "collect") -> None:
        self.group = group
        self.events: list[Delivery] = []

    def apply(self, deliveries: list[Delivery], spans: dict[TopicPartition, tuple[int, int]]) -> None:
        self.events.extend(deliveries)


def consume_all(log: EmbeddedLog, subscriber: Subscriber | None = None) -> tuple[Subscriber, ConsumerLoop]:
    subscriber = subscriber or Collect()
    loop = ConsumerLoop(log, subscriber, join_group=False)
    loop.catch_up(timeout=120)
    loop.close()
    return subscriber, loop


def params_run(log: EmbeddedLog, value: str = "ABCDEFGHIJKLMNOP") -> str:
    run_id = commands.new_run_id()
    EventLog(log).append_many([
        commands.create_experiment("7", "integrity", "file:///a"),
        commands.create_run(run_id, "7", run_name="r", user_id="u", artifact_uri="file:///a/r"),
        commands.log_params(run_id, {"p": value}),
    ])
    return run_id


def db(directory) -> sqlite3.Connection:
    return sqlite3.connect(os.path.join(directory, "log.db"), isolation_level=None)


def test_a_flipped_byte_in_a_value_is_dead_lettered_never_replayed(tmp_path):
    log = EmbeddedLog(tmp_path / "log")
    params_run(log)
    with db(tmp_path / "log") as conn:
        (topic, partition, offset, value), = conn.execute(
            "SELECT topic, partition, offset, value FROM records WHERE instr(value, ?) > 0", (b"ABCDEFGHIJKLMNOP",)
        ).fetchall()
        conn.execute(
            "UPDATE records SET value = ? WHERE topic = ? AND partition = ? AND offset = ?",
            (value.replace(b"ABCDEFGHIJKLMNOP", b"ABCDEfGHIJKLMNOP"), topic, partition, offset),
        )
    subscriber, loop = consume_all(log)
    seen = [d.event.payload for d in subscriber.events if d.event.type == "run.params_logged"]
    assert seen == [], f"a damaged record was replayed as an event: {seen}"
    assert {d.event.type for d in subscriber.events} == {"experiment.created", "run.created"}, "the others still apply"
    letters = read_dead_letters(log)
    assert [(d.topic, d.partition, d.offset) for d in letters] == [(topic, partition, offset)]
    assert "checksum" in letters[0].reason and letters[0].consumers == ("collect",)


def test_undecodable_headers_are_dead_lettered_and_the_consumer_carries_on(tmp_path):
    log = EmbeddedLog(tmp_path / "log")
    params_run(log)
    with db(tmp_path / "log") as conn:
        (topic, partition, offset), = conn.execute(
            "SELECT topic, partition, offset FROM records WHERE headers LIKE '%run.created%'"
        ).fetchall()
        # One byte of the headers text made invalid UTF-8 (0xff never occurs in UTF-8).
        conn.execute(
            "UPDATE records SET headers = CAST(CAST(replace(headers, 'run.created', 'run.cre') AS BLOB) || x'ff' AS TEXT) "
            "WHERE topic = ? AND partition = ? AND offset = ?",
            (topic, partition, offset),
        )
    subscriber, loop = consume_all(log)
    assert {d.event.type for d in subscriber.events} == {"experiment.created", "run.params_logged"}
    letters = read_dead_letters(log)
    assert [(d.topic, d.partition, d.offset) for d in letters] == [(topic, partition, offset)]
    assert loop.dead_letters == 1


def _record_values(directory) -> list[bytes]:
    with db(directory) as conn:
        return [row[0] for row in conn.execute(f"SELECT value FROM records WHERE topic != '{DEAD_LETTER_TOPIC}'")]


def test_random_flips_in_the_file_change_no_replayed_value_silently(tmp_path):
    """The finding: 64 random flips in the file's record bytes changed metric values on
    replay while SQLite's integrity_check said "ok". Now every changed record is caught."""
    directory = tmp_path / "log"
    log = EmbeddedLog(directory)
    run_id = commands.new_run_id()
    EventLog(log).append_many([
        commands.log_metrics(run_id, commands.metric_columns((f"m{i}", 327.0 + i, 1000 + step, step) for i in range(10)))
        for step in range(200)
    ])
    originals = {decode(v).event_id: decode(v) for v in _record_values(directory)}
    log.close()
    with db(directory) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    path = directory / "log.db"
    data = bytearray(path.read_bytes())
    # Where the encoded events lie in the file: flip bits only there, as a bad sector or
    # a stray write would, so SQLite's own structure stays intact.
    spans = []
    for value in originals.values():
        from eventflow.codec import encode

        found = data.find(encode(value))
        assert found >= 0
        spans.append((found, found + len(encode(value))))
    rng = random.Random(12)
    for _ in range(64):
        start, end = rng.choice(spans)
        data[rng.randrange(start, end)] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    with db(directory) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "SQLite sees nothing wrong"
    changed = sum(1 for v in _record_values(directory) if v not in {encode(e) for e in originals.values()})
    assert changed > 0
    log = EmbeddedLog(directory)
    subscriber, loop = consume_all(log)
    for delivery in subscriber.events:
        original = originals.get(delivery.event.event_id)
        assert original is not None and delivery.event.payload == original.payload, "a changed value was replayed"
    assert len(subscriber.events) + len(read_dead_letters(log)) == 200
    assert len(read_dead_letters(log)) == changed


def test_an_existing_log_without_checksums_keeps_working_its_records_unchecked(tmp_path):
    """A log written before checksums: migrated on open, its records read as they are and
    reported as unchecked by verify, new ones checksummed."""
    directory = tmp_path / "log"
    directory.mkdir()
    with db(directory) as conn:
        conn.executescript(
            """
            CREATE TABLE topics (name TEXT PRIMARY KEY, partitions INTEGER NOT NULL) WITHOUT ROWID;
            CREATE TABLE partition_ends (topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
                last_timestamp INTEGER NOT NULL, PRIMARY KEY (topic, partition)) WITHOUT ROWID;
            CREATE TABLE records (topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
                timestamp INTEGER NOT NULL, key BLOB, value BLOB NOT NULL, headers TEXT,
                PRIMARY KEY (topic, partition, offset)) WITHOUT ROWID;
            INSERT INTO topics VALUES ('old', 1);
            INSERT INTO partition_ends VALUES ('old', 0, 2, 5);
            INSERT INTO records VALUES ('old', 0, 0, 5, x'6b', x'01', '[["h", "v"]]');
            INSERT INTO records VALUES ('old', 0, 1, 5, NULL, x'02', NULL);
            """
        )
    log = EmbeddedLog(directory)
    log.append("old", b"k", b"\x03")
    with log.consumer(["old"]) as consumer:
        records = consumer.poll(timeout=5)
    assert [(r.offset, r.value, r.headers, r.error) for r in records] == [
        (0, b"\x01", (("h", b"v"),), None), (1, b"\x02", (), None), (2, b"\x03", (), None),
    ]
    log.close()
    done = verify("--home", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 records" in done.stdout and "2 unchecked" in done.stdout and "no bad record" in done.stdout


def verify(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "eventflow", "log", "verify", *args],
        capture_output=True, text=True, timeout=300,
    )


def test_log_verify_reports_every_bad_record_with_its_position(tmp_path):
    home = tmp_path / "home"
    log = EmbeddedLog(home / "log")
    params_run(log)
    for i in range(50):
        log.append("eventflow.runs", b"k%d" % i, b"value %d" % i)
    done = verify("--home", str(home))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "53 records" in done.stdout and "no bad record" in done.stdout
    with db(home / "log") as conn:
        bad = conn.execute(
            "SELECT topic, partition, offset FROM records WHERE value IN (x'76616c75652037', x'76616c7565203432') ORDER BY value"
        ).fetchall()
        conn.execute("UPDATE records SET value = x'76616c75652038' WHERE value = x'76616c75652037'")  # "value 7" → "value 8"
        conn.execute("UPDATE records SET headers = CAST(x'5b5bff' AS TEXT) WHERE value = x'76616c7565203432'")
        # a hole: a record gone from the middle of a partition
        (gone,) = conn.execute("SELECT topic, partition, offset FROM records WHERE value = x'76616c7565203230'").fetchall()
        conn.execute("DELETE FROM records WHERE topic = ? AND partition = ? AND offset = ?", gone)
    log.close()
    done = verify("--home", str(home))
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert "3 bad records" in out, out
    for topic, partition, offset in [*bad, gone]:
        assert f"{topic}[{partition}]@{offset}" in out, out
    assert "checksum" in out and "headers" in out and "missing" in out


def test_a_consumer_group_survives_a_damaged_record_and_commits_past_it(tmp_path):
    """A group member (the server's projector is one) hits the damaged record, dead-letters
    it and goes on; its committed offsets pass it, so a restart does not meet it again."""
    log = EmbeddedLog(tmp_path / "log")
    params_run(log)
    with db(tmp_path / "log") as conn:
        conn.execute("UPDATE records SET headers = CAST(x'ff' AS TEXT) WHERE headers LIKE '%experiment.created%'")

    class Group(Subscriber):
        group = "grp"

        def __init__(self) -> None:
            self.types: list[str] = []

        def apply(self, deliveries, spans):
            self.types += [d.event.type for d in deliveries]

    subscriber = Group()
    loop = ConsumerLoop(log, subscriber)
    loop.catch_up(timeout=120)
    loop.close()
    assert sorted(subscriber.types) == ["run.created", "run.params_logged"]
    again = ConsumerLoop(log, Group())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        again.step(timeout=0.2)
    again.close()
    assert again.dead_letters == 0, "committed past it: a restart does not meet it again"
    assert len(read_dead_letters(log)) == 1
