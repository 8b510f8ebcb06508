"""The log's contract: one test class that every implementation must pass unchanged.

A backend's test module subclasses ``LogContract`` and provides the ``log_uri`` fixture.
Every test uses topics and groups of its own, so runs can share one broker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import defaultdict

import pytest

from eventflow.log import Log, LogError, Message, Record, TopicPartition, open_log


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def drain(consumer, expected: int, timeout: float = 30.0) -> list[Record]:
    """Poll until ``expected`` records arrived (or fail), then once more to catch extras."""
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    while len(records) < expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"got {len(records)} of {expected} records within {timeout} s")
        records.extend(consumer.poll(timeout=0.5))
    records.extend(consumer.poll(timeout=0.3))
    return records


def values(records: list[Record]) -> list[bytes]:
    return [record.value for record in records]


class LogContract:
    @pytest.fixture
    def log_uri(self) -> str:  # pragma: no cover - provided by each backend
        raise NotImplementedError

    @pytest.fixture
    def log(self, log_uri: str):
        with open_log(log_uri) as log:
            yield log

    # -- appending ------------------------------------------------------------------

    def test_append_returns_where_the_record_landed(self, log: Log):
        topic = unique("append")
        first = log.append(topic, b"run-1", b"a")
        second = log.append(topic, b"run-1", b"b")
        assert first.topic == topic and second.topic == topic
        assert second.partition == first.partition
        assert second.offset == first.offset + 1
        assert log.end_offsets(topic)[first.partition] == second.offset + 1
        assert topic in log.topics()
        assert log.partitions(topic) == [0, 1, 2]

    def test_batch_positions_follow_input_order(self, log: Log):
        topic = unique("batch")
        messages = [Message(topic, f"key-{i % 4}".encode(), f"{i}".encode(), (("n", str(i).encode()),)) for i in range(40)]
        positions = log.append_batch(messages)
        assert len(positions) == 40
        by_partition: dict[int, list[int]] = defaultdict(list)
        for position in positions:
            by_partition[position.partition].append(position.offset)
        for offsets in by_partition.values():
            assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
        with log.consumer([topic]) as consumer:
            records = drain(consumer, 40)
        found = {(r.partition, r.offset): r for r in records}
        for message, position in zip(messages, positions):
            record = found[(position.partition, position.offset)]
            assert record.value == message.value and record.key == message.key
            assert record.header("n") == message.headers[0][1]

    def test_headers_and_binary_values_survive(self, log: Log):
        topic = unique("bytes")
        payload = bytes(range(256))
        log.append(topic, None, payload, (("event_type", b"run.created"), ("raw", b"\x00\xff\xc3\x01")))
        with log.consumer([topic]) as consumer:
            [record] = drain(consumer, 1)
        assert record.value == payload and record.key is None
        assert record.header("event_type") == b"run.created"
        assert record.header("raw") == b"\x00\xff\xc3\x01"
        assert record.header("missing") is None
        assert abs(record.timestamp - time.time() * 1000) < 60_000

    # -- order ----------------------------------------------------------------------

    def test_one_keys_records_stay_in_order_in_one_partition(self, log: Log):
        topic = unique("order")
        keys = [f"run-{i}".encode() for i in range(7)]
        expected: dict[bytes, list[bytes]] = defaultdict(list)
        for round_ in range(20):
            batch = []
            for key in keys:
                value = f"{key.decode()}:{round_}".encode()
                expected[key].append(value)
                batch.append(Message(topic, key, value))
            if round_ % 2:
                log.append_batch(batch)
            else:
                for message in batch:
                    log.append(message.topic, message.key, message.value)
        with log.consumer([topic]) as consumer:
            records = drain(consumer, 140)
        assert len(records) == 140
        seen: dict[bytes, list[bytes]] = defaultdict(list)
        partitions: dict[bytes, set[int]] = defaultdict(set)
        for record in records:
            seen[record.key].append(record.value)
            partitions[record.key].add(record.partition)
        assert seen == expected
        assert all(len(p) == 1 for p in partitions.values())

    # -- groups and offsets -----------------------------------------------------------

    def test_a_restarted_group_member_resumes_without_loss_or_duplicate(self, log: Log):
        topic, group = unique("resume"), unique("group")
        log.append_batch([Message(topic, f"k{i}".encode(), f"{i}".encode()) for i in range(30)])
        consumed: list[bytes] = []
        with log.consumer([topic], group) as consumer:
            first = drain(consumer, 30)
            # Keep only part of what was read: commit the position after record 10 of each partition.
            keep = [r for r in first if r.offset < 4]
            consumer.commit({r.tp: r.offset + 1 for r in keep} | {tp: 0 for tp in consumer.assignment() if tp not in {r.tp for r in keep}})
            consumed.extend(values(keep))
        log.append_batch([Message(topic, f"k{i}".encode(), f"{i}".encode()) for i in range(30, 50)])
        with log.consumer([topic], group) as consumer:
            rest = drain(consumer, 50 - len(consumed))
            consumer.commit()
            consumed.extend(values(rest))
        assert sorted(consumed, key=int) == [f"{i}".encode() for i in range(50)]
        with log.consumer([topic], group) as consumer:
            assert consumer.poll(timeout=1.0) == []

    def test_a_reopened_log_keeps_records_and_committed_offsets(self, log_uri: str):
        topic, group = unique("reopen"), unique("group")
        with open_log(log_uri) as log:
            log.append_batch([Message(topic, b"k", f"{i}".encode()) for i in range(10)])
            with log.consumer([topic], group) as consumer:
                drain(consumer, 10)
                consumer.commit()
            log.append_batch([Message(topic, b"k", f"{i}".encode()) for i in range(10, 15)])
        with open_log(log_uri) as log:
            with log.consumer([topic], group) as consumer:
                rest = drain(consumer, 5)
        assert values(rest) == [f"{i}".encode() for i in range(10, 15)]

    def test_two_members_split_the_partitions_and_take_over_from_each_other(self, log: Log):
        topic, group = unique("rebalance"), unique("group")
        log.create_topic(topic, 4)
        log.append_batch([Message(topic, f"k{i}".encode(), f"a{i}".encode()) for i in range(40)])
        got: dict[str, list[Record]] = {"one": [], "two": []}

        def member():
            # Commit what was processed before a partition is handed away.
            def commit_revoked(revoked):
                consumer.commit({tp: consumer.position(tp) for tp in revoked})

            consumer = log.consumer([topic], group, on_revoke=commit_revoked)
            return consumer

        consumers = {"one": member(), "two": member()}
        try:
            deadline = time.monotonic() + 90
            while True:
                for name, consumer in consumers.items():
                    got[name].extend(consumer.poll(timeout=0.2))
                one, two = consumers["one"].assignment(), consumers["two"].assignment()
                if one and two and not one & two and len(one | two) == 4:
                    break
                assert time.monotonic() < deadline, f"no split assignment within 90 s: {one} / {two}"
            log.append_batch([Message(topic, f"k{i}".encode(), f"b{i}".encode()) for i in range(40)])
            deadline = time.monotonic() + 30
            while sum(len(v) for v in got.values()) < 80 and time.monotonic() < deadline:
                for name, consumer in consumers.items():
                    got[name].extend(consumer.poll(timeout=0.2))
            assert got["one"] and got["two"], "both members must have read something"
            for name, consumer in consumers.items():
                consumer.commit()
            # The second member leaves: the first takes every partition and reads on.
            consumers.pop("two").close()
            log.append_batch([Message(topic, f"k{i}".encode(), f"c{i}".encode()) for i in range(40)])
            deadline = time.monotonic() + 60
            while sum(len(v) for v in got.values()) < 120 and time.monotonic() < deadline:
                got["one"].extend(consumers["one"].poll(timeout=0.2))
            assert len(consumers["one"].assignment()) == 4
        finally:
            for consumer in consumers.values():
                consumer.close()
        everything = sorted(values(got["one"] + got["two"]))
        expected = sorted(f"{p}{i}".encode() for p in "abc" for i in range(40))
        assert everything == expected, "every record read exactly once across the rebalances"

    def test_commit_needs_a_group_and_seek_needs_an_assigned_partition(self, log: Log):
        topic = unique("errors")
        log.append(topic, b"k", b"v")
        with log.consumer([topic]) as consumer:
            with pytest.raises(LogError, match="group"):
                consumer.commit()
            with pytest.raises(LogError, match="not assigned"):
                consumer.seek(TopicPartition(unique("other"), 0), 0)

    def test_a_consumer_can_start_at_the_end(self, log: Log):
        topic = unique("tail")
        log.append_batch([Message(topic, b"k", b"old") for _ in range(5)])
        with log.consumer([topic], from_beginning=False) as consumer:
            assert consumer.poll(timeout=0.5) == []
            log.append(topic, b"k", b"new")
            assert values(drain(consumer, 1)) == [b"new"]

    def test_a_reader_made_patient_gathers_a_burst_into_one_read(self, log: Log):
        """``set_patience``: a reader opened impatient hands each append over alone; made
        patient, the records of a burst arrive in one read (on Kafka the broker holds the
        fetch). The dashboard feed is patient so while no page watches."""
        topic = unique("patience")
        log.create_topic(topic, partitions=1)
        with log.consumer([topic]) as consumer:
            log.append(topic, b"k", b"alone")
            assert values(drain(consumer, 1)) == [b"alone"]
            consumer.set_patience(3.0)
            for _ in range(3):  # a fetch sent impatient before may still be at the broker
                assert consumer.poll(timeout=1.0) == []
            burst = [f"burst-{i}".encode() for i in range(5)]

            def append_burst() -> None:
                for value in burst:
                    log.append(topic, b"k", value)

            appender = threading.Thread(target=append_burst)
            appender.start()
            got: list[Record] = []
            deadline = time.monotonic() + 30
            while not got:
                assert time.monotonic() < deadline, "the burst never arrived"
                got = consumer.poll(timeout=0.5)
            appender.join()
            assert values(got) == burst

    # -- replay ---------------------------------------------------------------------

    def test_seek_to_an_offset_and_to_the_beginning_replays(self, log: Log):
        topic = unique("replay")
        positions = log.append_batch([Message(topic, b"one-key", f"{i}".encode()) for i in range(10)])
        tp = TopicPartition(topic, positions[0].partition)
        with log.consumer([topic]) as consumer:
            drain(consumer, 10)
            consumer.seek(tp, positions[6].offset)
            assert consumer.position(tp) == positions[6].offset
            assert values(drain(consumer, 4)) == [b"6", b"7", b"8", b"9"]
            consumer.seek_to_beginning()
            assert len(drain(consumer, 10)) == 10

    def test_seek_to_time_reads_what_was_appended_from_then_on(self, log: Log):
        topic = unique("time")
        log.append_batch([Message(topic, f"k{i}".encode(), b"before") for i in range(12)])
        time.sleep(0.05)
        cut = int(time.time() * 1000)
        time.sleep(0.05)
        log.append_batch([Message(topic, f"k{i}".encode(), b"after") for i in range(12)])
        with log.consumer([topic]) as consumer:
            drain(consumer, 24)
            consumer.seek_to_time(cut)
            again = drain(consumer, 12)
            assert values(again) == [b"after"] * 12
            assert all(record.timestamp >= cut for record in again)
            consumer.seek_to_time(int(time.time() * 1000) + 60_000)
            assert consumer.poll(timeout=0.5) == []

    # -- crashes ----------------------------------------------------------------------

    def test_nothing_acknowledged_is_lost_when_the_producer_is_killed(self, log_uri: str, tmp_path):
        """A writer process prints each position once append returns; kill -9 it mid-stream."""
        topic = unique("crash")
        writer = textwrap.dedent(
            f"""
            import json, sys
            from eventflow.log import Message, open_log
            log = open_log({log_uri!r})
            i = 0
            while True:
                batch = [Message({topic!r}, f"k{{j % 5}}".encode(), f"{{j}}".encode()) for j in range(i, i + 20)]
                for p in log.append_batch(batch):
                    print(json.dumps([p.partition, p.offset]), flush=True)
                i += 20
            """
        )
        process = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
        acknowledged = []
        try:
            while len(acknowledged) < 300:
                line = process.stdout.readline()
                assert line, "the writer died before it acknowledged 300 records"
                acknowledged.append(tuple(json.loads(line)))
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        with open_log(log_uri) as log:
            ends = log.end_offsets(topic)
            with log.consumer([topic]) as consumer:
                records = drain(consumer, sum(ends.values()))
        present = {(r.partition, r.offset) for r in records}
        assert set(acknowledged) <= present
        assert len(present) == len(records), "no offset appears twice"

    # -- poison ---------------------------------------------------------------------

    def test_poison_bytes_are_dead_lettered_and_the_consumer_carries_on(self, log: Log):
        from eventflow.consumers.base import ConsumerLoop, Subscriber
        from eventflow.events import DEAD_LETTER_TOPIC, Event
        from eventflow.log.event_log import EventLog

        run_id = uuid.uuid4().hex

        def tagged(value: str) -> Event:
            return Event("run.tag_deleted", {"run_id": run_id, "key": value})

        events = EventLog(log)
        events.append_many([tagged("first"), tagged("second")])
        garbage = b"\xc3\x01" + b"\x00" * 8 + b"not avro " + run_id.encode()
        log.append("eventflow.runs", run_id.encode(), garbage)
        log.append("eventflow.runs", run_id.encode(), b"no marker at all " + run_id.encode())
        events.append(tagged("third"))

        class Collector(Subscriber):
            group = unique("collector")
            seen: list[str] = []

            def apply(self, deliveries, spans):
                self.seen += [d.event.payload["key"] for d in deliveries if d.event.payload.get("run_id") == run_id]

        collector = Collector()
        loop = ConsumerLoop(log, collector)
        deadline = time.monotonic() + 30
        try:
            while len(collector.seen) < 3 and time.monotonic() < deadline:
                loop.step(timeout=0.5)
        finally:
            loop.close()
        assert collector.seen == ["first", "second", "third"]
        assert loop.dead_letters >= 2
        with log.consumer([DEAD_LETTER_TOPIC]) as consumer:
            deadline = time.monotonic() + 30
            mine: list[Record] = []
            while len(mine) < 2 and time.monotonic() < deadline:
                mine += [r for r in consumer.poll(timeout=0.5) if run_id.encode() in r.value]
        assert [r.value for r in mine] == [garbage, b"no marker at all " + run_id.encode()]
        reasons = [r.header("dead_letter.reason").decode() for r in mine]
        assert "fingerprint" in reasons[0].lower() and "marker" in reasons[1].lower()
        assert all(r.header("dead_letter.group") == Collector.group.encode() for r in mine)
