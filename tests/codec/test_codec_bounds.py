"""Decoding a client's event is bounded by its size: a few bytes cannot become gigabytes."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from eventflow import commands
from eventflow.codec import DecodeError, decode, decode_untrusted, encode
from eventflow.codec.binary import SCAN_ABOVE
from eventflow.events import Event

RUN = "a" * 32


def _zigzag(n: int) -> bytes:
    n, out = n << 1, bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def empty_tags(count: int, *, blocks: int = 1) -> bytes:
    """run.tags_set holding ``count`` empty tags (2 bytes each), in ``blocks`` array blocks."""
    small = encode(Event("run.tags_set", {"run_id": RUN, "tags": []}))
    per = count // blocks
    body = b"".join(_zigzag(per) + b"\x00\x00" * per for _ in range(blocks))
    return small[:-1] + body + b"\x00"


def test_millions_of_empty_tags_are_refused_before_one_is_materialised():
    bomb = empty_tags(8_000_000)
    tracemalloc.start()
    started = time.process_time()
    try:
        with pytest.raises(DecodeError, match="8000000 or more items"):
            decode_untrusted(bomb, 1024 + len(bomb) // 8)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000, f"{peak} bytes allocated"  # decode() takes ~2 GB for the same bytes
    assert time.process_time() - started < 2


def test_a_bomb_split_into_many_small_blocks_is_refused_as_soon_as_the_count_passes():
    bomb = empty_tags(400_000, blocks=400_000)
    with pytest.raises(DecodeError, match="items"):
        decode_untrusted(bomb, 10_000)


def test_a_small_event_is_counted_after_decoding():
    event = empty_tags(2000)
    assert len(event) < SCAN_ABOVE
    with pytest.raises(DecodeError, match="2000 or more items"):
        decode_untrusted(event, 1000)
    assert decode_untrusted(event, 2000)[1] == 2000


@pytest.mark.parametrize("size", [100, 5000])
def test_real_events_decode_the_same_and_report_their_records(size):
    tags = commands.set_tags(RUN, {f"key-{i}": "v" * 50 for i in range(size)})
    columns = commands.metric_columns((f"m{i % 7}", i / 3, 1_700_000_000_000 + i, i) for i in range(size * 10))
    metrics = commands.log_metrics(RUN, columns)
    for event, records in ((tags, size), (metrics, 0)):
        data = encode(event)
        decoded, counted = decode_untrusted(data, records)
        assert decoded == decode(data) and counted == records


def test_a_truncated_or_lying_large_event_is_a_decode_error():
    data = encode(commands.set_tags(RUN, {f"key-{i}": "v" * 50 for i in range(5000)}))
    assert len(data) > SCAN_ABOVE
    with pytest.raises(DecodeError):
        decode_untrusted(data[:-100], 10_000)
    liar = empty_tags(0)[:-1] + _zigzag(10**12)  # a count no body could hold, and nothing after it
    with pytest.raises(DecodeError):
        decode_untrusted(liar + b"\x00" * SCAN_ABOVE, 10**13)
