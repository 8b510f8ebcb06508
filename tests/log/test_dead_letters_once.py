"""Dead letters once: one dead-letter record per poison record, however many consumer
groups meet it and however often the log is replayed, each naming every consumer that
skipped it — on the embedded log and on a real Kafka broker."""

from __future__ import annotations

import uuid

import pytest

from eventflow import commands
from eventflow.consumers.base import ConsumerLoop, Delivery, Subscriber
from eventflow.consumers.dead_letters import SKIPS_TOPIC, read_dead_letters
from eventflow.events import DEAD_LETTER_TOPIC
from eventflow.log import Log, Message, TopicPartition, open_log
from eventflow.log.event_log import to_message


class Group(Subscriber):
    """A consumer that commits to its group (at-least-once), as the webhook dispatcher."""

    def __init__(self, group: str, topics: list[str]) -> None:
        self.group = group
        self.topics = topics
        self.applied = 0

    def apply(self, deliveries: list[Delivery], spans: dict[TopicPartition, tuple[int, int]]) -> None:
        self.applied += len(deliveries)


class Rebuild(Group):
    """Keeps its own offsets, none yet: reads from zero, as ``views rebuild`` does."""

    keeps_offsets = True


@pytest.fixture(params=["embedded", "kafka"])
def log(request, tmp_path):
    if request.param == "embedded":
        uri = str(tmp_path / "log")
    else:
        uri = "kafka://" + request.getfixturevalue("kafka_bootstrap")
    with open_log(uri) as log:
        yield log


def raw_dead_letters(log: Log, topic: str) -> list[tuple[str, int, int]]:
    """Every dead-letter record about ``topic``, copies included."""
    if DEAD_LETTER_TOPIC not in log.topics():
        return []
    found = []
    with log.consumer([DEAD_LETTER_TOPIC]) as consumer:
        ends = log.end_offsets(DEAD_LETTER_TOPIC)
        while any(consumer.position(tp) < ends[tp.partition] for tp in consumer.assignment()):
            for record in consumer.poll(timeout=0.5):
                if record.header("dead_letter.topic") == topic.encode():
                    found.append((topic, int(record.header("dead_letter.partition")), int(record.header("dead_letter.offset"))))
    return found


def run(log: Log, subscriber: Subscriber, join_group: bool = True) -> ConsumerLoop:
    loop = ConsumerLoop(log, subscriber, join_group=join_group)
    loop.catch_up(timeout=120)
    loop.close()
    return loop


def test_four_poison_records_two_groups_and_rebuilds_make_four_dead_letters(log: Log):
    topic = f"eventflow.poison-{uuid.uuid4().hex[:8]}"
    good = [to_message(commands.create_experiment(str(i), f"e{i}", "file:///a")) for i in range(8)]
    poison = [(f"bad-{i}".encode(), b"not an event %d" % i) for i in range(4)]
    positions = []
    for i, message in enumerate(good):
        log.append(topic, message.key, message.value, message.headers)
        if i % 2:
            positions.append(log.append(topic, *poison[i // 2]))
    poisoned = sorted((p.topic, p.partition, p.offset) for p in positions)

    alpha, beta = f"alpha-{uuid.uuid4().hex[:6]}", f"beta-{uuid.uuid4().hex[:6]}"
    first = run(log, Group(alpha, [topic]))
    assert first.dead_letters == 4
    run(log, Group(beta, [topic]))
    for _ in range(2):  # a rebuild, twice
        rebuilt = Rebuild("rebuild", [topic])
        run(log, rebuilt, join_group=False)
        assert rebuilt.applied == 8
    run(log, Rebuild(alpha, [topic]), join_group=False)  # the first group again, from zero

    assert sorted(raw_dead_letters(log, topic)) == poisoned, "exactly one dead-letter record per poison record"
    letters = [d for d in read_dead_letters(log) if d.topic == topic]
    assert sorted((d.topic, d.partition, d.offset) for d in letters) == poisoned
    for letter in letters:
        assert letter.consumers == tuple(sorted([alpha, beta, "rebuild"])), letter
        assert letter.reason and letter.group == alpha


def test_dead_letters_written_by_older_versions_are_reported_once(log: Log):
    """Logs written before this rule hold a copy per group and per rebuild: the reader
    folds them into one per poison record, naming each group that wrote one."""
    from eventflow.consumers.base import dead_letter
    from eventflow.log import Record

    topic = f"eventflow.legacy-{uuid.uuid4().hex[:8]}"
    bad = log.append(topic, b"k", b"garbage")
    record = Record(bad.topic, bad.partition, bad.offset, b"k", b"garbage", 0)
    log.append_batch([dead_letter(record, "not an event", group) for group in ("projector", "projector", "webhooks")])
    letters = [d for d in read_dead_letters(log) if d.topic == topic]
    assert [(d.offset, d.consumers) for d in letters] == [(bad.offset, ("projector", "webhooks"))]
    assert SKIPS_TOPIC != DEAD_LETTER_TOPIC


def test_groups_meeting_the_same_poison_at_once_write_it_once(log: Log):
    """The server runs its consumers side by side: they meet a poison record together."""
    import threading

    topic = f"eventflow.together-{uuid.uuid4().hex[:8]}"
    positions = log.append_batch([Message(topic, f"k{i}".encode(), b"junk %d" % i) for i in range(6)])
    poisoned = sorted((p.topic, p.partition, p.offset) for p in positions)
    groups = [f"g{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
    start = threading.Barrier(len(groups))
    failures: list[BaseException] = []

    def consume(group: str) -> None:
        try:
            # Each reads every partition alone (as the server's projector catching up
            # beside its group does), so the race is the dead letters', not the groups' join.
            loop = ConsumerLoop(log, Rebuild(group, [topic]), join_group=False)
            loop.consumer  # positioned before the race starts
            start.wait()
            loop.catch_up(timeout=120)
            loop.close()
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=consume, args=(group,)) for group in groups]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert failures == []
    assert sorted(raw_dead_letters(log, topic)) == poisoned
    for letter in read_dead_letters(log):
        if letter.topic == topic:
            assert letter.consumers == tuple(sorted(groups)), letter
