"""The background sender: order, batching, durability at flush, retries, bounded memory."""

from __future__ import annotations

import threading
import time

import pytest

from eventflow import commands
from eventflow.codec import decode
from eventflow.events import metric_points
from eventflow.log import LogError
from eventflow.log.embedded import EmbeddedLog
from eventflow.log.event_log import EventLog
from eventflow.sdk.sender import SendError, Sender


def read_all(log: EmbeddedLog) -> list:
    with log.consumer(["eventflow.runs"]) as consumer:
        records = []
        while batch := consumer.poll(timeout=0.2, max_records=10_000):
            records += batch
    return [decode(r.value) for r in sorted(records, key=lambda r: (r.partition, r.offset))]


def test_points_are_packed_into_events_and_order_is_kept_per_run(tmp_path):
    log = EmbeddedLog(tmp_path)
    sender = Sender(EventLog(log).append_many, points_per_event=100)
    run = commands.new_run_id()
    sender.event(commands.create_run(run, "0", run_name="r", user_id="u", artifact_uri="file:///x"))
    for step in range(250):
        sender.metric(run, "loss", 1.0 / (step + 1), 1000 + step, step)
    sender.event(commands.log_params(run, {"lr": 0.1}))
    sender.metric(run, "loss", 0.0, 2000, 250)
    sender.event(commands.end_run(run, "FINISHED"))
    sender.flush()
    events = [e for e in read_all(log) if e.payload["run_id"] == run]
    assert events[0].type == "run.created" and events[-1].type == "run.finished"
    kinds = [e.type for e in events]
    assert kinds.index("run.params_logged") > max(i for i, k in enumerate(kinds[:-3]) if k == "run.metrics_logged")
    steps = [p.step for e in events if e.type == "run.metrics_logged" for p in metric_points(e.payload)]
    assert steps == list(range(251)), "every point once, in order"
    assert max(len(metric_points(e.payload)) for e in events if e.type == "run.metrics_logged") <= 100
    sender.close()
    log.close()


class FlakyLog:
    """A real log that refuses appends while `down` is set, as an unreachable broker does."""

    def __init__(self, log: EmbeddedLog):
        self.events = EventLog(log)
        self.down = threading.Event()
        self.refused = 0

    def append(self, events):
        if self.down.is_set():
            self.refused += 1
            raise LogError("broker unreachable")
        return self.events.append_many(events)


def test_while_the_log_is_down_points_are_kept_and_sent_once_it_is_back(tmp_path):
    log = EmbeddedLog(tmp_path)
    flaky = FlakyLog(log)
    sender = Sender(flaky.append, retry_max=0.05)
    run = commands.new_run_id()
    flaky.down.set()
    for step in range(1000):
        sender.metric(run, "acc", step / 1000, 1000 + step, step)
    time.sleep(0.3)
    assert flaky.refused >= 1
    flaky.down.clear()
    sender.flush(timeout=30)
    steps = [p.step for e in read_all(log) for p in metric_points(e.payload)]
    assert steps == list(range(1000))
    sender.close()


def test_a_full_buffer_blocks_the_caller_instead_of_dropping(tmp_path):
    log = EmbeddedLog(tmp_path)
    flaky = FlakyLog(log)
    sender = Sender(flaky.append, max_pending=50, retry_max=0.05)
    run = commands.new_run_id()
    flaky.down.set()
    done = threading.Event()

    def produce():
        for step in range(200):
            sender.metric(run, "x", 1.0, 1000, step)
        done.set()

    threading.Thread(target=produce, daemon=True).start()
    time.sleep(0.5)
    assert not done.is_set(), "the producer must block while the buffer is full"
    assert sender.pending <= 50 + 1
    flaky.down.clear()
    assert done.wait(30)
    sender.flush(timeout=30)
    assert [p.step for e in read_all(log) for p in metric_points(e.payload)] == list(range(200))


def test_refused_events_are_reported_at_flush(tmp_path):
    log = EmbeddedLog(tmp_path)
    sender = Sender(EventLog(log).append_many)
    bad = commands.log_params(commands.new_run_id(), {"k": "v"})
    bad.payload["params"] = "not a list"  # what no command would build
    sender.event(bad)
    with pytest.raises(SendError, match="run.params_logged"):
        sender.flush(timeout=10)
