"""The dashboard feed while no page watches: it reads the log a burst at a time instead
of waking per append; once a page subscribes it hands every append over at once."""

from __future__ import annotations

import asyncio
import threading
import time

from eventflow import commands
from eventflow.consumers.base import ConsumerLoop
from eventflow.consumers.dashboard_feed import DashboardFeed
from eventflow.log import open_log
from eventflow.log.event_log import EventLog
from eventflow.server.hub import Hub


class Page:
    """Stands in for a websocket subscription: it only counts the batches it gets."""

    def __init__(self) -> None:
        self.batches = 0

    def receive(self, batch) -> None:  # noqa: ANN001 - the hub's Batch
        self.batches += 1


def until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_with_no_page_the_feed_reads_bursts_and_with_one_every_append(tmp_path):
    log = open_log(str(tmp_path / "log"))
    events = EventLog(log)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    hub = Hub(ring_bytes=1 << 30)
    hub.bind(loop)
    feed = ConsumerLoop(log, DashboardFeed(log, hub), join_group=False, poll_timeout=0.2)
    stop = threading.Event()
    reader = threading.Thread(target=feed.run, args=(stop,), daemon=True)
    reader.start()
    try:
        until(hub.ready.is_set)
        run_id = commands.new_run_id()
        # Nobody watches: 40 appends in a row reach the hub in a few batches.
        for i in range(40):
            events.append_many([commands.set_tags(run_id, {"k": str(i)})])
        until(lambda: hub.dispatched == 40)
        assert len(hub.ring) <= 10, f"{len(hub.ring)} batches for 40 appends"

        # A page subscribes: from its next read on the feed hands each append over alone.
        page = Page()
        loop.call_soon_threadsafe(hub.subscriptions.add, page)
        until(lambda: page in hub.subscriptions)
        # The read under way when it subscribed may still be a patient one: once an
        # append made after it is through, the next read is not.
        events.append_many([commands.set_tags(run_id, {"k": "marker"})])
        until(lambda: hub.dispatched == 41)
        page.batches = 0
        for i in range(10):
            events.append_many([commands.set_tags(run_id, {"k": f"watched-{i}"})])
            until(lambda: hub.dispatched == 42 + i)
        assert page.batches == 10
    finally:
        stop.set()
        reader.join(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        log.close()
