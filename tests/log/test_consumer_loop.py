"""The consumer loop's linger: a subscriber nobody waits on gathers a stream of small
appends into one batch (one transaction) instead of one batch per append."""

from __future__ import annotations

import threading
import time

from eventflow import commands
from eventflow.consumers.base import ConsumerLoop, Delivery, Subscriber
from eventflow.log import TopicPartition
from eventflow.log.embedded import EmbeddedLog
from eventflow.log.event_log import EventLog


class Batches(Subscriber):
    group = "batches"
    keeps_offsets = True

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def apply(self, deliveries: list[Delivery], spans: dict[TopicPartition, tuple[int, int]]) -> None:
        self.sizes.append(len(deliveries))


def trickle(log: EmbeddedLog, count: int, every: float) -> threading.Thread:
    def append() -> None:
        events = EventLog(log)
        for i in range(count):
            events.append(commands.create_experiment(str(1000 + i), f"e{i}", "file:///a"))
            time.sleep(every)

    thread = threading.Thread(target=append)
    thread.start()
    return thread


def step_through(loop: ConsumerLoop, appending: threading.Thread, count: int = 5) -> None:
    """Step until ``count`` records are handled (or 10 s pass), then close the loop."""
    handled = 0
    deadline = time.monotonic() + 10
    while handled < count and time.monotonic() < deadline:
        handled += loop.step(timeout=0.5)
    appending.join()
    loop.close()


def test_a_lingering_loop_gathers_appends_that_arrive_within_its_linger(tmp_path):
    log = EmbeddedLog(tmp_path / "log")
    subscriber = Batches()
    loop = ConsumerLoop(log, subscriber, join_group=False, linger=1.0)
    loop.consumer  # positioned before the first append
    step_through(loop, trickle(log, 5, every=0.05))  # all five within 0.25 s of the first
    assert subscriber.sizes == [5]


def test_without_linger_each_append_is_applied_as_soon_as_it_is_read(tmp_path):
    log = EmbeddedLog(tmp_path / "log")
    subscriber = Batches()
    loop = ConsumerLoop(log, subscriber, join_group=False)
    loop.consumer
    step_through(loop, trickle(log, 5, every=0.2))
    assert sum(subscriber.sizes) == 5 and len(subscriber.sizes) >= 3, subscriber.sizes
