"""Events on a log: encode, route by family, append — and decode what is read back.

Headers repeat the event type and id in plain bytes, so tools (and Kafka's own
console consumer) can filter without decoding Avro.
"""

from __future__ import annotations

from collections.abc import Sequence

from eventflow.codec import encode
from eventflow.events import Event
from eventflow.log.base import Log, Message, Position


def to_message(event: Event) -> Message:
    """The log record for an event: its family's topic, its entity's key, Avro value."""
    return Message(
        topic=event.topic,
        key=event.key.encode(),
        value=encode(event),
        headers=(("event_type", event.type.encode()), ("event_id", event.event_id.encode())),
    )


class EventLog:
    """Appends events to a log; the one place where an event becomes a record."""

    def __init__(self, log: Log):
        self.log = log

    def append(self, event: Event) -> Position:
        message = to_message(event)
        return self.log.append(message.topic, message.key, message.value, message.headers)

    def append_many(self, events: Sequence[Event]) -> list[Position]:
        """Encode every event first, so one bad event appends nothing of the batch."""
        return self.log.append_batch([to_message(event) for event in events])
