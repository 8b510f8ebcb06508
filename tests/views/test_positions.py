"""Read your writes: a waiting write wakes when this process's projector commits, and
falls back to the database when the partition is applied elsewhere."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import insert, update

from eventflow.consumers.base import StalePosition
from eventflow.log import Position, TopicPartition
from eventflow.views.db import open_views
from eventflow.views.positions import PROJECTOR, Progress, advance, stored_offsets, wait_for
from eventflow.views.tables import log_positions

TP = TopicPartition("eventflow.runs", 0)


def store(engine, next_offset: int) -> None:
    with engine.begin() as connection:
        moved = connection.execute(
            update(log_positions)
            .where(log_positions.c.consumer == PROJECTOR, log_positions.c.topic == TP.topic, log_positions.c.partition == TP.partition)
            .values(next_offset=next_offset)
        )
        if moved.rowcount == 0:
            connection.execute(insert(log_positions).values(consumer=PROJECTOR, topic=TP.topic, partition=TP.partition, next_offset=next_offset))


def test_a_waiter_wakes_when_the_local_projector_commits(tmp_path):
    engine = open_views(f"sqlite:///{tmp_path / 'views.db'}")
    progress = Progress()
    progress.advance({TP: 5})
    store(engine, 5)
    woke: list[float] = []

    def writer() -> None:
        assert wait_for(engine, [Position(TP.topic, TP.partition, 9)], timeout=10, progress=progress)
        woke.append(time.monotonic())

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.3)
    assert not woke, "offset 9 is not applied yet"
    committed = time.monotonic()
    progress.advance({TP: 10})  # the database is not even asked: the projector said so
    thread.join(5)
    assert woke and woke[0] - committed < 0.2


def test_a_partition_applied_elsewhere_is_read_from_the_database(tmp_path):
    engine = open_views(f"sqlite:///{tmp_path / 'views.db'}")
    store(engine, 3)
    position = Position(TP.topic, TP.partition, 7)
    assert not wait_for(engine, [position], timeout=0.2, progress=Progress())
    threading.Timer(0.2, store, (engine, 8)).start()
    assert wait_for(engine, [position], timeout=5, progress=Progress())


def test_a_partition_that_moved_away_after_a_rebalance_is_not_waited_for_in_vain(tmp_path):
    """This process's projector applied the partition once, then lost it to another
    instance: the database still answers within a slice, not at the timeout."""
    engine = open_views(f"sqlite:///{tmp_path / 'views.db'}")
    progress = Progress()
    progress.advance({TP: 2})
    store(engine, 20)  # the other instance got further
    started = time.monotonic()
    assert wait_for(engine, [Position(TP.topic, TP.partition, 15)], timeout=10, progress=progress)
    assert time.monotonic() - started < 1.0


# -- the fence: every partition of a batch moved at once, or the batch refused ------------------

TPS = [TopicPartition("eventflow.runs", p) for p in range(3)]


@pytest.fixture(params=["sqlite", "postgresql"])
def views(request, tmp_path):
    if request.param == "sqlite":
        engine = open_views(f"sqlite:///{tmp_path / 'views.db'}")
    else:
        engine = open_views(request.getfixturevalue("new_postgres_database")("fence"))
    yield engine
    engine.dispose()


def stored(engine) -> dict[TopicPartition, int]:
    return stored_offsets(engine, PROJECTOR, set(TPS))


def test_a_batch_over_several_partitions_moves_each_from_its_start_to_its_end(views):
    with views.begin() as connection:
        advance(connection, PROJECTOR, {TPS[0]: (0, 4), TPS[1]: (0, 2)})  # first seen: inserted
    with views.begin() as connection:
        advance(connection, PROJECTOR, {TPS[0]: (4, 9), TPS[1]: (2, 3), TPS[2]: (0, 7)})  # two moved, one new
    assert stored(views) == {TPS[0]: 9, TPS[1]: 3, TPS[2]: 7}


def test_one_stale_partition_refuses_the_whole_batch(views):
    with views.begin() as connection:
        advance(connection, PROJECTOR, {TPS[0]: (0, 4), TPS[1]: (0, 2)})
    with pytest.raises(StalePosition, match="another instance"):
        with views.begin() as connection:
            # Partition 1 is at 2, not 1: another instance applied it; 0 would move, 2 is new.
            advance(connection, PROJECTOR, {TPS[0]: (4, 9), TPS[1]: (1, 5), TPS[2]: (0, 7)})
    assert stored(views) == {TPS[0]: 4, TPS[1]: 2}, "the refused batch changed nothing"


def test_a_partition_another_instance_stored_first_is_stale(views):
    with views.begin() as other:
        advance(other, PROJECTOR, {TPS[1]: (0, 3)})
    with pytest.raises(StalePosition):
        with views.begin() as mine:  # believes partition 1 was never applied
            advance(mine, PROJECTOR, {TPS[0]: (0, 4), TPS[1]: (0, 6)})
    assert stored(views) == {TPS[1]: 3}
