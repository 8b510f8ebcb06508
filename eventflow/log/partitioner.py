"""Which partition a keyed record goes to: Kafka's default partitioner, so that the
embedded log and a Kafka topic put one key in the same partition (an export copied to
Kafka keeps each key's order in the same place).

Written here rather than imported from kafka-python because importing ``kafka`` loads the
whole client (about 0.1 s), which every embedded process — a training script, ``eventflow
run`` — would otherwise pay before its first event.
"""

from __future__ import annotations

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 (32-bit) as Kafka's ``Utils.murmur2`` computes it, as an unsigned int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    body = length - length % 4
    for i in range(0, body, 4):
        k = (int.from_bytes(data[i:i + 4], "little") * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    tail = length - body
    if tail == 3:
        h ^= data[body + 2] << 16
    if tail >= 2:
        h ^= data[body + 1] << 8
    if tail >= 1:
        h = ((h ^ data[body]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner for keyed records (murmur2, positive, modulo)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
