"""The embedded log's partitioner is Kafka's: a key lands in the partition Kafka gives it."""

from __future__ import annotations

import random

import pytest
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from eventflow.log.partitioner import murmur2, partition_for

# Kafka's own expectations for Utils.murmur2 (clients' UtilsTest), as signed Java ints.
KAFKA_VALUES = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize("key,expected", sorted(KAFKA_VALUES.items()))
def test_murmur2_gives_kafkas_values(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected & 0xFFFFFFFF


def test_every_key_lands_where_kafka_python_puts_it() -> None:
    rng = random.Random(7)
    keys = [bytes(rng.randrange(256) for _ in range(rng.randrange(64))) for _ in range(5000)]
    keys += [f"run-{i:06d}".encode() for i in range(1000)]
    for key in keys:
        assert murmur2(key) == kafka_python_murmur2(key) & 0xFFFFFFFF, key
        for partitions in (1, 3, 12):
            assert partition_for(key, partitions) == (kafka_python_murmur2(key) & 0x7FFFFFFF) % partitions
