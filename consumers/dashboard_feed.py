"""The dashboard feed: this server's own tail of the log, handed to its websocket hub.

Every server instance pushes to the browsers connected to it, so each one reads every
partition itself (no group to share with: sharing would leave each server with a part
of the events). It keeps its offsets in memory and starts at the end of the log: what
came before is what the views' snapshots show.

A page may answer an event by reading the REST API again (the model page does), so a
lifecycle event is handed on only once the views have applied it: the read shows it.
Metric batches — most of what a page gets, and applied by the page itself — need not wait.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from eventflow.consumers.base import Delivery, Subscriber
from eventflow.log import Log, TopicPartition
from eventflow.views.positions import Needed

# Applied by the page from the event itself (its points), not re-read.
SELF_CONTAINED = frozenset({"run.metrics_logged"})

# How long records may wait while no page watches: the feed then reads a burst at a time
# instead of waking per append (with no page open it cost a sync log_metric on Kafka
# about a sixth of the server's CPU). A page that opens meanwhile gets its first events
# at most this late; the ring keeps its snapshot's gap closed either way.
UNWATCHED_PATIENCE = 0.25

if TYPE_CHECKING:
    from eventflow.server.hub import Hub


class DashboardFeed(Subscriber):
    group = "dashboard-feed"
    # Offsets live in this process (it starts from the log's end each time), which is
    # what lets the loop read outside any group.
    keeps_offsets = True

    def __init__(self, log: Log, hub: "Hub", views_applied: Callable[[Needed], bool] | None = None):
        """``views_applied(needed)``: waits until the views have applied those offsets
        (bounded: False at its timeout, and the events go on regardless, late views or not)."""
        self.log = log
        self.hub = hub
        self.views_applied = views_applied
        self.next: dict[TopicPartition, int] = {}  # where to go on after a restart

    def stored_offsets(self, tps: set[TopicPartition]) -> dict[TopicPartition, int]:
        if self.next:  # restarted after a crash: on from where the hub is, no gap
            return {tp: self.next.get(tp, 0) for tp in tps}
        ends: dict[TopicPartition, int] = {}
        for topic in {tp.topic for tp in tps}:
            ends.update({TopicPartition(topic, p): end for p, end in self.log.end_offsets(topic).items()})
        start = {tp: ends.get(tp, 0) for tp in tps}
        self.next.update(start)
        self.hub.started(start)
        return start

    def patience(self, linger: float) -> float:
        return linger if self.hub.subscriptions else UNWATCHED_PATIENCE

    def apply(self, deliveries: list[Delivery], spans: dict[TopicPartition, tuple[int, int]]) -> None:
        if self.views_applied is not None:
            needed: Needed = {}
            for delivery in deliveries:
                if delivery.event.type not in SELF_CONTAINED:
                    tp = (delivery.record.topic, delivery.record.partition)
                    needed[tp] = max(needed.get(tp, -1), delivery.record.offset)
            if needed:
                self.views_applied(needed)
        self.hub.publish(deliveries, spans)
        self.next.update({tp: end for tp, (_, end) in spans.items()})
        return None
