"""The dashboard feed while no page watches: it reads the log a burst at a time instead
of waking per append, and keeps what it read as the log's records, prepared for a page
only if one attaches from a position among them; once a page subscribes it hands every
append over at once, prepared."""

from __future__ import annotations

import asyncio
import json
import threading
import time

from eventflow import commands
from eventflow.consumers.base import ConsumerLoop
from eventflow.consumers.dashboard_feed import DashboardFeed
from eventflow.log import open_log
from eventflow.log.event_log import EventLog
from eventflow.server import hub as hub_module
from eventflow.server.hub import Hub, Subscription


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


class Feed:
    """A feed reading a new embedded log into a hub, on its own thread and event loop."""

    def __init__(self, directory: str) -> None:
        self.log = open_log(directory)
        self.events = EventLog(self.log)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.hub = Hub(ring_bytes=1 << 30)
        self.hub.bind(self.loop)
        self.stop = threading.Event()
        self.reader = threading.Thread(
            target=ConsumerLoop(self.log, DashboardFeed(self.log, self.hub), join_group=False, poll_timeout=0.2).run,
            args=(self.stop,), daemon=True)
        self.reader.start()

    def on_loop(self, function):  # noqa: ANN001, ANN201
        async def call():  # noqa: ANN202
            return function()
        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=60)

    def close(self) -> None:
        self.stop.set()
        self.reader.join(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.log.close()


def test_with_no_page_the_feed_reads_bursts_and_with_one_every_append(tmp_path):
    feed = Feed(str(tmp_path / "log"))
    hub, events, loop = feed.hub, feed.events, feed.loop
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
        feed.close()


def test_with_no_page_the_feed_prepares_nothing_and_a_page_attaching_gets_every_event_from_its_position(tmp_path, monkeypatch):
    prepared: list[tuple[str, int]] = []  # (the thread, how many events)
    real_prepare = hub_module.prepare_items

    def counting_prepare(deliveries, *rest):  # noqa: ANN001, ANN202
        deliveries = list(deliveries)
        prepared.append((threading.current_thread().name, len(deliveries)))
        return real_prepare(deliveries, *rest)

    monkeypatch.setattr(hub_module, "prepare_items", counting_prepare)
    feed = Feed(str(tmp_path / "log"))
    hub, events = feed.hub, feed.events
    try:
        until(hub.ready.is_set)
        run_id = commands.new_run_id()
        for i in range(30):
            columns = commands.metric_columns((f"m{k}", float(i * 10 + k), 1_700_000_000_000 + i, i) for k in range(10))
            events.append_many([commands.set_tags(run_id, {"k": str(i)}), commands.log_metrics(run_id, columns)])
        until(lambda: hub.dispatched == 60)
        assert prepared == [], f"the feed prepared {sum(n for _, n in prepared)} events that no page watched"

        # A page whose snapshot reflects the log up to the 21st append attaches: it gets
        # exactly the events from there on, tags as entries and points as series.
        (tp,) = [tp for tp, end in hub.positions.items() if end > hub.ring_base[tp]]  # the run's partition
        since = {**hub.positions, tp: hub.ring_base[tp] + 40}
        page = Subscription("s1", "runs", {"run_ids": [run_id]}, hub, asyncio.Event())
        # What the connection does first, in a worker thread: prepare what it will replay,
        # so that attaching on the loop prepares nothing there.
        hub.prepare_since(dict(hub.positions))
        assert prepared == [], "prepared batches that a page attaching at the hub's position does not replay"
        hub.prepare_since(since)
        loop_thread = feed.on_loop(lambda: threading.current_thread().name)
        backlog = feed.on_loop(lambda: hub.attach(page, since))
        assert [n for thread, n in prepared if thread == loop_thread] == []
        tags = [json.loads(entry)["event"]["payload"]["tags"] for entry in backlog.entries]
        assert tags == [[{"key": "k", "value": str(i)}] for i in range(20, 30)]
        series = [json.loads(chunk)["series"] for chunk in backlog.chunks]
        assert [s["m3"]["value"] for s in series] == [[float(i * 10 + 3)] for i in range(20, 30)]
        assert [s["m3"]["step"] for s in series] == [[i] for i in range(20, 30)]

        # Watched from now on: each append is prepared in the feed's thread and reaches the page.
        events.append_many([commands.set_tags(run_id, {"k": "watched"})])
        until(lambda: bool(page.pending))
        assert json.loads(page.pending.entries[-1])["event"]["payload"]["tags"] == [{"key": "k", "value": "watched"}]
    finally:
        feed.close()
