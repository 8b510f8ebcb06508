"""The embedded log: the shared contract, plus what only a file shared by processes needs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest

from contract import LogContract, drain, unique
from eventflow.log import Message, TopicPartition, open_log
from eventflow.log.embedded import EmbeddedLog


class TestEmbeddedLog(LogContract):
    @pytest.fixture
    def log_uri(self, tmp_path) -> str:
        return str(tmp_path / "log")


def test_processes_appending_at_once_never_share_an_offset(tmp_path):
    directory = str(tmp_path / "log")
    topic = unique("shared")
    writer = textwrap.dedent(
        f"""
        import sys
        from eventflow.log import Message, open_log
        log = open_log({directory!r})
        for i in range(50):
            log.append_batch([Message({topic!r}, b"same-key", f"{{sys.argv[1]}}-{{i}}-{{j}}".encode()) for j in range(4)])
        """
    )
    writers = [subprocess.Popen([sys.executable, "-c", writer, name]) for name in ("a", "b", "c")]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0]
    with open_log(directory) as log, log.consumer([topic]) as consumer:
        records = drain(consumer, 600)
    offsets = [r.offset for r in records]
    assert sorted(offsets) == list(range(600)), "one partition, offsets contiguous and unique"
    for name in "abc":
        mine = [r.value.decode() for r in records if r.value.startswith(name.encode())]
        assert mine == [f"{name}-{i}-{j}" for i in range(50) for j in range(4)], "each writer's order is kept"


def test_a_consumer_in_another_process_sees_appends_as_they_happen(tmp_path):
    directory = str(tmp_path / "log")
    topic = unique("live")
    log = EmbeddedLog(directory)
    log.create_topic(topic)
    reader = textwrap.dedent(
        f"""
        from eventflow.log import open_log
        log = open_log({directory!r})
        with log.consumer([{topic!r}]) as consumer:
            seen = 0
            while seen < 5:
                seen += len(consumer.poll(timeout=1.0))
        print(seen)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", reader], stdout=subprocess.PIPE, text=True)
    for i in range(5):
        log.append(topic, b"k", f"{i}".encode())
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0 and out.strip() == "5"
    log.close()


def test_sync_level_is_checked(tmp_path):
    with pytest.raises(ValueError, match="FULL or NORMAL"):
        EmbeddedLog(tmp_path, sync="sometimes")


def _open_at_once(path: str, barrier, answers) -> None:
    from eventflow.log import open_log

    barrier.wait()
    try:
        open_log(path).close()
        answers.put(None)
    except Exception as error:  # reported to the test, which names it
        answers.put(repr(error))


def test_processes_that_open_a_new_log_at_the_same_moment_all_open_it(tmp_path):
    """A server and two projectors started together on a fresh home once failed with
    'database is locked': SQLite answers a concurrent switch to WAL with SQLITE_BUSY at
    once, without waiting on the busy timeout."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    failures = []
    for attempt in range(20):
        barrier, answers = context.Barrier(6), context.Queue()
        where = tmp_path / f"log-{attempt}"
        where.mkdir()
        openers = [context.Process(target=_open_at_once, args=(str(where), barrier, answers)) for _ in range(6)]
        for process in openers:
            process.start()
        for process in openers:
            process.join(timeout=120)
        failures += [answer for answer in (answers.get(timeout=10) for _ in openers) if answer]
    assert failures == []


def test_an_idle_consumer_does_not_reread_the_log_until_something_changes(tmp_path):
    """Polling with nothing new asks SQLite whether the file changed (``data_version``)
    instead of reading every partition's end again: the in-process consumers of a server
    poll every few milliseconds, and each read cost the writers GIL time. Appends by
    another connection (another process) and seeks are still seen at once."""
    from eventflow.log import Message, TopicPartition

    directory = str(tmp_path / "log")
    topic = unique("idle")
    with EmbeddedLog(directory) as log, EmbeddedLog(directory) as other:
        log.append(topic, b"k", b"first")
        consumer = log.consumer([topic])
        assert [r.value for r in drain(consumer, 1)] == [b"first"]
        reads: list[str] = []
        consumer._conn.set_trace_callback(lambda sql: reads.append(sql) if "FROM partition_ends" in sql else None)
        assert consumer.poll(timeout=0.5) == []
        assert len(reads) <= 1, f"{len(reads)} reads of the partition ends in half a second of nothing"

        other.append_batch([Message(topic, b"k", b"second")])
        assert [r.value for r in consumer.poll(timeout=5)] == [b"second"]
        tp = next(tp for tp in consumer.assignment() if consumer.position(tp) == 2)
        assert consumer.poll(timeout=0.1) == []
        consumer.seek(tp, 0)
        assert [r.value for r in consumer.poll(timeout=5)] == [b"first", b"second"]
        consumer.close()


def test_an_append_between_a_consumers_read_and_its_wait_does_not_wait(tmp_path):
    """A consumer notes the appends it has seen before it reads; an append that lands after
    its read and before its wait must not leave it asleep (the wait would be the first
    thing the append's writer, waiting for the projector, pays for)."""
    import time

    with EmbeddedLog(str(tmp_path / "log")) as log:
        seen = log.appends  # noted before the read that finds nothing
        log.append(unique("wake"), b"k", b"v")  # then the append, before the wait
        started = time.monotonic()
        log.wait_for_append(60, seen)
        assert time.monotonic() - started < 30, "the consumer slept through an append it had not read"


def test_a_consumers_bookkeeping_commits_without_an_fsync_and_survives_kill_9(tmp_path):
    """Heartbeats, partition claims and group offsets are not records: a consumer's own
    connection commits them at ``synchronous=NORMAL`` (no fsync; WAL frames are written
    at commit, so a killed process loses none), while appends stay FULL. A consumer
    killed with -9 right after committing resumes from that commit."""
    directory = str(tmp_path / "log")
    topic = unique("bookkeeping")
    with EmbeddedLog(directory) as log:
        log.append_batch([Message(topic, f"k{i}".encode(), f"{i}".encode()) for i in range(200)])
        consumer = log.consumer([topic], "readers")
        assert consumer._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert log._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: the record
        consumer.close()
    reader = textwrap.dedent(
        f"""
        import json
        from eventflow.log import open_log
        log = open_log({directory!r})
        consumer = log.consumer([{topic!r}], "readers")
        while True:
            for record in consumer.poll(timeout=1.0, max_records=7):
                consumer.commit({{record.tp: record.offset + 1}})
                print(json.dumps([record.partition, record.offset + 1]), flush=True)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", reader], stdout=subprocess.PIPE, text=True)
    committed: dict[int, int] = {}
    try:
        while sum(committed.values()) < 100:
            line = process.stdout.readline()
            assert line, "the reader died before committing 100 offsets"
            partition, offset = json.loads(line)
            committed[partition] = offset
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    with EmbeddedLog(directory) as log, log.consumer([topic], "readers") as consumer:
        for partition, offset in committed.items():
            assert (consumer.committed(TopicPartition(topic, partition)) or 0) >= offset
