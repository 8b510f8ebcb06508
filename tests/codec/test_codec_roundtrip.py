"""Encoding and decoding: round trips, the single-object header, earlier versions."""

from __future__ import annotations

import io
import math
import zlib

import pytest
from fastavro import schemaless_writer
from fastavro.schema import to_parsing_canonical_form

from eventflow.codec import decode, encode, registry
from eventflow.events import Event, metric_points

EVENT_TYPES = registry().event_types()
ALL_SCHEMAS = [(s.event_type, s.version) for s in registry().schemas()]

# ---- CRC-64-AVRO, written from the Avro specification ("Schema Fingerprints")
EMPTY = 0xC15D213AA4D7A795
_TABLE = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (EMPTY & -(_fp & 1))
    _TABLE.append(_fp)


def crc64_avro(data: bytes) -> int:
    fp = EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


def test_crc64_avro_reference_vector():
    # from the Avro test suite (share/test/data/schema-tests.txt): "null" -> 7195948357588979594
    assert crc64_avro(b'"null"') == 7195948357588979594


@pytest.mark.parametrize("event_type,version", ALL_SCHEMAS)
def test_fingerprint_is_crc64_avro_of_the_canonical_form(reg, event_type, version):
    s = reg.get(event_type, version)
    canonical = to_parsing_canonical_form(s.raw).encode("utf-8")
    assert s.fingerprint == crc64_avro(canonical).to_bytes(8, "little")


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_round_trip(reg, sample_events, event_type):
    for event in sample_events(reg.current(event_type), count=6, seed=zlib.crc32(event_type.encode())):
        data = encode(event)
        back = decode(data)
        assert back == event
        assert isinstance(back.time, int) and isinstance(back.event_id, str)
        assert back.key == event.key and back.topic == event.topic


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_single_object_layout_byte_by_byte(reg, sample_events, event_type):
    s = reg.current(event_type)
    event = sample_events(s, count=1, seed=7)[0]
    data = encode(event)
    assert data[0] == 0xC3 and data[1] == 0x01
    expected_fp = crc64_avro(to_parsing_canonical_form(s.raw).encode("utf-8")).to_bytes(8, "little")
    assert data[2:10] == expected_fp
    body = io.BytesIO()
    schemaless_writer(
        body,
        s.parsed,
        {
            "event_id": event.event_id,
            "event_type": event.type,
            "time": event.time,
            "actor": event.actor,
            "source": event.source,
            "correlation_id": event.correlation_id,
            "causation_id": event.causation_id,
            "payload": event.payload,
        },
    )
    assert data[10:] == body.getvalue()


def test_envelope_round_trips_exactly():
    event = Event(
        "run.failed",
        {"run_id": "r-1", "end_time": 1_717_171_717_171, "error_message": "ValueError: boom ✗"},
        event_id="6f1c0c8e-2d2a-4d8e-9a4b-0f1e2d3c4b5a",
        time=1_717_171_717_999,
        actor="alice",
        source={
            "host": "gpu-7", "process": "4242", "sdk_version": "0.1.0",
            "stamped_by": "server", "authenticated": True, "client_address": "10.1.2.3", "client_time": 1_717_171_717_000,
        },  # fmt: skip
        correlation_id="req-9",
        causation_id="5d9f0e0a-0000-4000-8000-000000000000",
    )
    back = decode(encode(event))
    assert back == event
    assert type(back.time) is int and type(back.event_id) is str
    assert type(back.payload["end_time"]) is int


def test_optional_fields_may_be_omitted_on_encode():
    event = Event("run.created", {
        "run_id": "r", "experiment_id": "0", "run_name": "n", "user_id": "u",
        "start_time": 1, "artifact_uri": "file:///a",
    })  # fmt: skip
    back = decode(encode(event))
    assert back.payload["parent_run_id"] is None and back.payload["tags"] == []


def test_metric_special_values_round_trip():
    values = [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308]
    points = [{"key": "m", "value": v, "step": i, "timestamp": 1} for i, v in enumerate(values)]
    columns = {"names": ["m"], "key_index": [0] * len(values), "values": values, "steps": list(range(len(values))), "timestamps": [1] * len(values)}
    for payload in ({"run_id": "r", "points": points}, {"run_id": "r", "points": [], "columns": columns}):
        back = decode(encode(Event("run.metrics_logged", payload)))
        got = [p.value for p in metric_points(back.payload)]
        assert math.isnan(got[0])
        assert got[1:] == values[1:] and math.copysign(1, got[3]) == -1


def test_decode_accepts_bytearray_and_memoryview(reg, sample_events):
    event = sample_events(reg.current("experiment.created"), count=1, seed=3)[0]
    data = encode(event)
    assert decode(bytearray(data)) == event
    assert decode(memoryview(data)) == event


def current_source_fields(schema) -> list[str]:
    return [f["name"] for f in next(f for f in schema.raw["fields"] if f["name"] == "source")["type"]["fields"]]


def test_an_event_from_before_stamping_decodes_as_the_client_s_claim(reg):
    """Events written before the server stamped anything read back as unstamped claims."""
    v1 = reg.get("run.renamed", 1)
    rec = {
        "event_id": "0b7e6c9a-1111-4222-8333-944455556666", "event_type": "run.renamed", "time": 5, "actor": "mallory",
        "source": {"host": "h", "process": "1", "sdk_version": "0.0.9"}, "correlation_id": None, "causation_id": None,
        "payload": {"run_id": "r", "run_name": "n"},
    }  # fmt: skip
    body = io.BytesIO()
    schemaless_writer(body, v1.wire, rec)
    event = decode(v1.header + body.getvalue())
    assert event.source == {
        "host": "h", "process": "1", "sdk_version": "0.0.9",
        "stamped_by": "client", "authenticated": False, "client_address": None, "client_time": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    "event_type,version",
    [(s.event_type, s.version) for s in registry().schemas() if s is not registry().current(s.event_type)],
)
def test_earlier_versions_decode_with_the_current_reader(reg, sample_records, event_type, version):
    old = reg.get(event_type, version)
    current = reg.current(event_type)
    current_fields = list(current.payload_fields)
    for rec in sample_records(old, 5, seed=version):
        rec["event_type"] = event_type
        body = io.BytesIO()
        schemaless_writer(body, old.wire, rec)
        event = decode(old.header + body.getvalue())
        assert event.type == event_type
        unstamped = {"stamped_by": "client", "authenticated": False, "client_address": None, "client_time": None}
        expected_source = {**unstamped, **rec["source"]} if "stamped_by" in current_source_fields(current) else rec["source"]
        assert (event.event_id, event.time, event.actor, event.source) == (
            rec["event_id"], rec["time"], rec["actor"], expected_source,
        )  # fmt: skip
        assert list(event.payload) == current_fields


def test_metrics_v1_decodes_as_current_with_null_links_and_no_columns(reg):
    v1, current = reg.get("run.metrics_logged", 1), reg.current("run.metrics_logged")
    points = [{"key": "loss", "value": 0.1 * i, "step": i, "timestamp": 1_700_000_000_000 + i} for i in range(3)]
    rec = {
        "event_id": "0b7e6c9a-1111-4222-8333-944455556666", "event_type": "run.metrics_logged",
        "time": 1_700_000_000_123, "actor": "bob",
        "source": {"host": "h", "process": "1", "sdk_version": "0.0.9"},
        "correlation_id": None, "causation_id": None,
        "payload": {"run_id": "run-1", "points": points},
    }  # fmt: skip
    body = io.BytesIO()
    schemaless_writer(body, v1.parsed, rec)
    data = b"\xc3\x01" + crc64_avro(to_parsing_canonical_form(v1.raw).encode()).to_bytes(8, "little") + body.getvalue()
    event = decode(data)
    assert event.payload == {
        "run_id": "run-1",
        "points": [dict(p, model_id=None, dataset_name=None, dataset_digest=None) for p in points],
        "columns": {"names": [], "key_index": [], "values": [], "steps": [], "timestamps": []},
    }
    assert [tuple(p) for p in metric_points(event.payload)] == [(p["key"], p["value"], p["step"], p["timestamp"]) for p in points]
    assert event.time == 1_700_000_000_123 and event.event_id == rec["event_id"]
    # and a new event is written with the current version
    assert encode(event)[2:10] == current.fingerprint
