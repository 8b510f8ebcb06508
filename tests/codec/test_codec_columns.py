"""The metric columns' bulk encoder (codec/columns.py) writes exactly fastavro's bytes, for
any columns a point can hold, and leaves what it cannot write to fastavro's own errors."""

from __future__ import annotations

import math
from io import BytesIO

import pytest
from fastavro import schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from eventflow import commands
from eventflow.codec import CodecError, decode, encode
from eventflow.codec import binary
from eventflow.codec.columns import fits
from eventflow.codec.registry import registry

LONG = st.integers(-(2**63), 2**63 - 1)
names = st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=5, unique=True)


@st.composite
def columns(draw) -> dict[str, list]:
    keys = draw(names)
    n = draw(st.integers(0, 300))
    small = draw(st.booleans())  # steps 0..63 take the one-byte route
    steps = st.integers(0, 63) if small else LONG
    return {"names": keys, "key_index": [draw(st.integers(0, len(keys) - 1)) for _ in range(n)],
            "values": draw(st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**53), 2**53), min_size=n, max_size=n)),
            "steps": draw(st.lists(steps, min_size=n, max_size=n)),
            "timestamps": draw(st.lists(st.integers(0, 2**63 - 1), min_size=n, max_size=n))}


def fastavro_bytes(event) -> bytes:
    schema = registry().current(event.type)
    record = {"event_id": event.event_id, "event_type": event.type, "time": event.time, "actor": event.actor,
              "source": event.source, "correlation_id": event.correlation_id, "causation_id": event.causation_id,
              "payload": event.payload}
    buf = BytesIO()
    buf.write(schema.header)
    schemaless_writer(buf, schema.wire, record)
    return buf.getvalue()


def test_the_current_metrics_schema_takes_the_bulk_route():
    assert fits(registry().current("run.metrics_logged").wire)
    encode(commands.log_metrics("a" * 32, {"names": [], "key_index": [], "values": [], "steps": [], "timestamps": []}))
    assert "run.metrics_logged" in binary._COLUMNS


@settings(max_examples=300, deadline=None)
@given(columns())
def test_the_bulk_encoder_writes_fastavros_bytes(cols):
    event = commands.log_metrics("b" * 32, cols)
    data = encode(event)
    assert data == fastavro_bytes(event)
    back = decode(data).payload["columns"]
    assert back["names"] == cols["names"] and back["steps"] == cols["steps"] and back["timestamps"] == cols["timestamps"]
    assert all(a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(back["values"], map(float, cols["values"])))


@pytest.mark.parametrize("column, bad", [("values", "0.5"), ("values", None), ("steps", 2**63), ("steps", "1"), ("names", 3)])
def test_what_the_bulk_encoder_cannot_write_is_fastavros_error(column, bad):
    cols = {"names": ["loss"], "key_index": [0], "values": [0.5], "steps": [1], "timestamps": [1]}
    cols[column] = [bad]
    with pytest.raises(CodecError, match=column):
        encode(commands.log_metrics("c" * 32, cols))


@pytest.mark.parametrize("column, odd", [("key_index", 2**31), ("steps", True), ("values", True)])
def test_what_fastavro_lets_by_it_writes_the_same(column, odd):
    """Outside the plain shape the bulk encoder steps aside: the bytes are fastavro's."""
    cols = {"names": ["loss"], "key_index": [0], "values": [0.5], "steps": [1], "timestamps": [1]}
    cols[column] = [odd]
    event = commands.log_metrics("d" * 32, cols)
    assert encode(event) == fastavro_bytes(event)
