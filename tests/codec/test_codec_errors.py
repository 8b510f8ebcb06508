"""What the codec says when it cannot encode or decode."""

from __future__ import annotations

import io
import random

import pytest
from fastavro import schemaless_writer

from eventflow.codec import CodecError, DecodeError, EncodeError, decode, encode
from eventflow.events import Event


def _run_created(**overrides):
    payload = {
        "run_id": "r-1",
        "experiment_id": "0",
        "run_name": "bright-owl",
        "user_id": "alice",
        "start_time": 1_700_000_000_000,
        "parent_run_id": None,
        "tags": [{"key": "mlflow.source.name", "value": "train.py"}],
        "artifact_uri": "file:///tmp/a",
    }
    payload.update(overrides)
    return Event("run.created", payload)


@pytest.fixture
def encoded():
    return encode(_run_created())


def test_error_hierarchy():
    assert issubclass(EncodeError, CodecError) and issubclass(DecodeError, CodecError)
    assert issubclass(CodecError, ValueError)


# ------------------------------------------------------------------ decode


@pytest.mark.parametrize("data", [b"\x00\x01" + bytes(20), b"{\"json\": true}", b"\xc3\x02" + bytes(20), b"\x01"])
def test_bad_marker(data):
    with pytest.raises(DecodeError, match="single-object marker c3 01") as info:
        decode(data)
    assert data[:4].hex(" ") in str(info.value)  # shows the first bytes


@pytest.mark.parametrize("data", [b"", b"\xc3\x01", b"\xc3\x01\x00\x01\x02"])
def test_too_short(data):
    with pytest.raises(DecodeError, match="too short|marker"):
        decode(data)


def test_header_without_body_is_corrupt(encoded):
    with pytest.raises(DecodeError, match="corrupt event body"):
        decode(encoded[:10])


def test_unknown_fingerprint(encoded):
    data = b"\xc3\x01" + bytes.fromhex("0123456789abcdef") + encoded[10:]
    with pytest.raises(DecodeError, match="0123456789abcdef.*not known to this version of eventflow"):
        decode(data)


def test_truncated_body_at_every_length(encoded):
    for cut in range(10, len(encoded)):
        with pytest.raises(DecodeError, match=r"corrupt event body.*RunCreatedV2") as info:
            decode(encoded[:cut])
        assert info.value.__cause__ is not None  # the underlying error is wrapped


def test_corrupt_long_varint(encoded):
    # the body starts with the event_id string: its length is a zigzag varint; make it
    # claim a huge length (continuation bits set), then a huge string follows nowhere
    data = encoded[:10] + b"\xff\xff\xff\xff\xff\xff\x7f" + encoded[11:]
    with pytest.raises(DecodeError, match="corrupt event body.*RunCreatedV2"):
        decode(data)
    # a varint whose continuation bits never stop before the end of the data
    with pytest.raises(DecodeError, match="corrupt event body"):
        decode(encoded[:10] + b"\x80" * 12)


def test_trailing_bytes(encoded):
    with pytest.raises(DecodeError, match="trailing byte"):
        decode(encoded + b"\x00")


def test_body_of_another_event_type(reg):
    s = reg.current("run.created")
    body = io.BytesIO()
    rec = {
        "event_id": "x", "event_type": "run.deleted", "time": 1, "actor": "a",
        "source": {"host": "h", "process": "p", "sdk_version": "v"},
        "payload": {"run_id": "r", "experiment_id": "0", "run_name": "n", "user_id": "u",
                    "start_time": 1, "artifact_uri": "a"},
    }  # fmt: skip
    schemaless_writer(body, s.wire, rec)
    with pytest.raises(DecodeError, match="event_type 'run.deleted'"):
        decode(s.header + body.getvalue())


def test_decode_of_non_bytes():
    with pytest.raises(DecodeError, match="takes bytes"):
        decode("c3 01")  # type: ignore[arg-type]


def test_random_corruption_only_ever_raises_decode_error(reg, sample_events):
    rng = random.Random(1234)
    for event_type in reg.event_types():
        data = encode(sample_events(reg.current(event_type), count=1, seed=5)[0])
        for _ in range(40):
            b = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                b[rng.randrange(10, len(b))] = rng.randrange(256)
            cut = rng.choice([len(b), rng.randrange(10, len(b) + 1)])
            try:
                decode(bytes(b[:cut]))
            except DecodeError:
                pass


# ------------------------------------------------------------------ encode


def test_unknown_event_type():
    with pytest.raises(EncodeError, match="unknown event type 'run.exploded'"):
        encode(Event("run.exploded", {"run_id": "r"}))


def test_wrong_typed_field():
    with pytest.raises(EncodeError, match=r"run.created.*payload\.start_time: expected long, got str") as info:
        encode(_run_created(start_time="yesterday"))
    assert "RunCreatedV2" in str(info.value)


def test_missing_required_field():
    event = _run_created()
    del event.payload["run_name"]
    with pytest.raises(EncodeError, match=r"run.created.*payload\.run_name: required field is missing"):
        encode(event)


def test_wrong_nested_field():
    with pytest.raises(EncodeError, match=r"payload\.tags\[1\]\.value: expected string, got NoneType"):
        encode(_run_created(tags=[{"key": "a", "value": "b"}, {"key": "c", "value": None}]))


def test_wrong_optional_field():
    with pytest.raises(EncodeError, match=r"payload\.parent_run_id: expected one of \[null, string\], got int"):
        encode(_run_created(parent_run_id=42))


def test_unknown_payload_field():
    with pytest.raises(EncodeError, match="run.created.*not in schema.*parent_run\\b"):
        encode(_run_created(parent_run="r-0"))


def test_wrong_envelope_field():
    event = Event("run.deleted", {"run_id": "r"}, time="now")  # type: ignore[arg-type]
    with pytest.raises(EncodeError, match=r"run.deleted.*\btime: expected long, got str"):
        encode(event)


def test_bad_enum_symbol():
    event = Event(
        "model_version.stage_transitioned",
        {"name": "m", "version": "1", "stage": "production", "archive_existing_versions": False},
    )
    with pytest.raises(EncodeError, match=r"payload\.stage: expected one of the symbols"):
        encode(event)


def test_payload_not_a_dict():
    with pytest.raises(EncodeError, match="payload must be a dict"):
        encode(Event("run.deleted", ["r"]))  # type: ignore[arg-type]


def test_encode_of_non_event():
    with pytest.raises(EncodeError, match="takes an eventflow.events.Event"):
        encode({"type": "run.deleted"})  # type: ignore[arg-type]
