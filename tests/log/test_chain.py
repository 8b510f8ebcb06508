"""Tamper evidence (issue 15): every record's digest is chained to the one before it in
its partition, and ``eventflow log verify`` reports the first position where the chain
breaks — an embedded record edited in the SQLite file (even with its checksum redone), a
digest removed, a record deleted; on Kafka, a sealed partition rewritten. An export made
before carries the chain and pinpoints the changed record even when the tamperer
re-chained everything after it.

The damage is done for real, in the log's file or on the real broker."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import uuid

import pytest

from eventflow.log import open_log
from eventflow.log.chain import GENESIS, link
from eventflow.log.embedded import EmbeddedLog, _decode_headers, record_checksum


def eventflow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eventflow", "log", *args], capture_output=True, text=True, timeout=300)


def db(home) -> sqlite3.Connection:  # type: ignore[no-untyped-def]
    return sqlite3.connect(os.path.join(home, "log", "log.db"), isolation_level=None)


def filled(home) -> EmbeddedLog:  # type: ignore[no-untyped-def]
    log = EmbeddedLog(home / "log")
    for i in range(60):
        log.append("eventflow.runs", b"k%d" % (i % 7), b"value %d" % i, (("event_id", b"id-%d" % i),))
    return log


def position_of(home, value: bytes) -> tuple[str, int, int]:  # type: ignore[no-untyped-def]
    with db(home) as conn:
        return conn.execute("SELECT topic, partition, offset FROM records WHERE value = ?", (value,)).fetchone()


def rewrite(home, where: tuple[str, int, int], value: bytes, *, rechain: str = "none") -> None:  # type: ignore[no-untyped-def]
    """Change a record's value as a deliberate tamperer would: its checksum recomputed, and
    its chain digest left (``none``), recomputed (``record``) or recomputed for it and every
    record after it in the partition (``tail``)."""
    topic, partition, offset = where
    with db(home) as conn:
        rows = conn.execute(
            "SELECT offset, timestamp, key, value, headers, chain FROM records WHERE topic = ? AND partition = ? ORDER BY offset",
            (topic, partition),
        ).fetchall()
        previous = GENESIS
        for o, timestamp, key, old, headers, chain in rows:
            new = value if o == offset else old
            raw = headers.encode() if headers else None
            if o == offset:
                conn.execute(
                    "UPDATE records SET value = ?, checksum = ? WHERE topic = ? AND partition = ? AND offset = ?",
                    (new, record_checksum(topic, partition, o, timestamp, key, new, raw), topic, partition, o),
                )
            digest = link(previous, topic, partition, o, timestamp, key, new, _decode_headers(raw))
            if (rechain == "record" and o == offset) or (rechain == "tail" and o >= offset):
                conn.execute("UPDATE records SET chain = ? WHERE topic = ? AND partition = ? AND offset = ?", (digest, topic, partition, o))
                chain = digest
            previous = chain
        if rechain == "tail":
            conn.execute("UPDATE partition_ends SET chain = ? WHERE topic = ? AND partition = ?", (previous, topic, partition))


def test_an_intact_log_verifies_and_appends_keep_chaining_across_reopens(tmp_path):
    home = tmp_path / "home"
    filled(home).close()
    log = EmbeddedLog(home / "log")  # reopened: the chain goes on from the stored last digest
    log.append("eventflow.runs", b"k1", b"after reopen")
    log.close()
    done = eventflow("verify", "--home", str(home))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "chain: 61 record digests checked" in done.stdout and "no chain break" in done.stdout


def test_a_record_edited_with_its_checksum_redone_is_reported_at_its_position(tmp_path):
    home = tmp_path / "home"
    filled(home).close()
    where = position_of(home, b"value 17")
    rewrite(home, where, b"value 71")
    done = eventflow("verify", "--home", str(home))
    assert done.returncode == 1, done.stdout
    assert "no bad record" in done.stdout, "the checksum was redone: only the chain can tell"
    assert f"{where[0]}[{where[1]}]@{where[2]}: chain digest mismatch" in done.stdout, done.stdout


def test_a_record_re_digested_breaks_the_chain_at_the_next_record(tmp_path):
    home = tmp_path / "home"
    filled(home).close()
    where = position_of(home, b"value 17")
    rewrite(home, where, b"value 71", rechain="record")
    done = eventflow("verify", "--home", str(home))
    assert done.returncode == 1, done.stdout
    assert f"{where[0]}[{where[1]}]@{where[2] + 1}: chain digest mismatch" in done.stdout, done.stdout


def test_an_earlier_export_pinpoints_a_record_whose_whole_tail_was_re_chained(tmp_path):
    home = tmp_path / "home"
    filled(home).close()
    assert eventflow("export", "--home", str(home), "--out", str(tmp_path / "export")).returncode == 0
    where = position_of(home, b"value 17")
    rewrite(home, where, b"value 71", rechain="tail")
    alone = eventflow("verify", "--home", str(home))
    assert alone.returncode == 0 and "no chain break" in alone.stdout, "re-chained to the end: the log alone cannot tell"
    done = eventflow("verify", "--export", str(tmp_path / "export"), "--home", str(home))
    assert done.returncode == 1, done.stdout
    assert f"{where[0]}[{where[1]}]@{where[2]}: the log's record differs from the exported one" in done.stdout, done.stdout


def test_a_removed_digest_and_a_deleted_record_are_breaks(tmp_path):
    home = tmp_path / "home"
    filled(home).close()
    stripped = position_of(home, b"value 20")
    deleted = position_of(home, b"value 40")
    with db(home) as conn:
        conn.execute("UPDATE records SET chain = NULL WHERE topic = ? AND partition = ? AND offset = ?", stripped)
        conn.execute("DELETE FROM records WHERE topic = ? AND partition = ? AND offset = ?", deleted)
    done = eventflow("verify", "--home", str(home))
    assert done.returncode == 1
    assert f"{stripped[0]}[{stripped[1]}]@{stripped[2]}: the record carries no chain digest" in done.stdout, done.stdout
    assert f"{deleted[0]}[{deleted[1]}]@{deleted[2]}: unreadable" in done.stdout, done.stdout


def test_a_log_from_before_the_chain_starts_it_at_its_next_append(tmp_path):
    """Records appended before chains existed are counted as carrying none, not as breaks."""
    home = tmp_path / "home"
    filled(home).close()
    with db(home) as conn:
        conn.execute("UPDATE records SET chain = NULL")
        conn.execute("UPDATE partition_ends SET chain = NULL")
    log = EmbeddedLog(home / "log")
    log.append("eventflow.runs", b"k1", b"new")
    log.close()
    done = eventflow("verify", "--home", str(home))
    assert done.returncode == 0, done.stdout
    assert "chain: 1 record digests checked" in done.stdout and "60 records carry no digest" in done.stdout


# -- Kafka: the sealer's chain ----------------------------------------------------------


def _wait(condition, what: str, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.kafka
def test_kafka_a_sealed_partition_rewritten_is_reported_between_its_seals(kafka_bootstrap, tmp_path):
    """The tamperer recreates the topic with CreateTime and the original timestamps and
    keys, changing one value: Kafka's own CRCs are all fine; the seals are not."""
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import NewTopic

    topic = f"chain-test-{uuid.uuid4().hex[:8]}"
    uri = f"kafka://{kafka_bootstrap}"
    log = open_log(uri)
    log.create_topic(topic, 1)
    log.append_batch([_message(topic, i) for i in range(35)])
    log.close()
    sealed = eventflow("seal", "--log", uri, "--topic", topic, "--every", "10")
    assert sealed.returncode == 0 and "wrote 4 seals on 1 partitions" in sealed.stdout, sealed.stdout + sealed.stderr
    again = eventflow("seal", "--log", uri, "--topic", topic, "--every", "10")
    assert "wrote 0 seals" in again.stdout, "a second run resumes from the last seal"
    done = eventflow("verify", "--log", uri, "--topic", topic)
    assert done.returncode == 0 and "4 seals matched" in done.stdout, done.stdout + done.stderr
    assert eventflow("export", "--log", uri, "--topic", topic, "--out", str(tmp_path / "export")).returncode == 0

    log = open_log(uri)
    with log.consumer([topic]) as consumer:
        original = []
        while len(original) < 35:
            original += consumer.poll(timeout=1)
    log.close()
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.delete_topics([topic])
    _wait(lambda: topic not in admin.list_topics(), "the topic to be deleted")

    def recreated() -> bool:
        try:
            admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"message.timestamp.type": "CreateTime"})])
            return True
        except Exception:  # noqa: BLE001 - the deletion is still being finished
            return False

    _wait(recreated, "the topic to be recreated")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for record in original:
        value = b"value 99" if record.offset == 23 else record.value
        producer.send(topic, key=record.key, value=value, headers=list(record.headers), timestamp_ms=record.timestamp).get(30)
    producer.close()
    admin.close()

    done = eventflow("verify", "--log", uri, "--topic", topic)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{topic}[0]@29: the seal of offset 29 does not match" in done.stdout, done.stdout
    assert "between offsets 20 and 29" in done.stdout, done.stdout
    pinpointed = eventflow("verify", "--export", str(tmp_path / "export"), "--log", uri)
    assert pinpointed.returncode == 1
    assert f"{topic}[0]@23: the log's record differs from the exported one" in pinpointed.stdout, pinpointed.stdout


def _message(topic: str, i: int):  # type: ignore[no-untyped-def]
    from eventflow.log.base import Message

    return Message(topic, b"k", b"value %d" % i, (("event_id", b"id-%d" % i),))
