"""The schema files: names, envelope, keys, routing, and how they are loaded."""

from __future__ import annotations

import json
import re
from importlib import resources

import pytest

from eventflow.codec import ENVELOPE_FIELDS, CodecError, registry
from eventflow.codec.registry import SchemaRegistry
from eventflow.events import FAMILIES, family_of

EXPECTED_EVENT_TYPES = {
    "experiment.created", "experiment.renamed", "experiment.deleted", "experiment.restored",
    "experiment.tag_set", "experiment.tag_deleted",
    "run.created", "run.finished", "run.failed", "run.killed", "run.renamed", "run.deleted",
    "run.restored", "run.params_logged", "run.metrics_logged", "run.tags_set", "run.tag_deleted",
    "run.artifact_logged", "run.inputs_logged", "run.outputs_logged", "run.project_recorded", "run.stop_requested",
    "logged_model.created", "logged_model.finalized", "logged_model.tags_set", "logged_model.tag_deleted",
    "logged_model.params_logged", "logged_model.deleted", "logged_model.artifact_logged",
    "registered_model.created", "registered_model.updated", "registered_model.renamed",
    "registered_model.deleted", "registered_model.tag_set", "registered_model.tag_deleted",
    "model_version.created", "model_version.updated", "model_version.deleted",
    "model_version.tag_set", "model_version.tag_deleted", "model_version.stage_transitioned",
    "model_version.alias_set", "model_version.alias_deleted",
    "deployment.started", "deployment.succeeded", "deployment.failed", "deployment.rolled_back",
    "webhook.created", "webhook.updated", "webhook.deleted", "webhook.disabled", "webhook.secret_rotated",
    "user.created", "user.password_changed", "user.admin_set", "user.deleted", "token.issued", "token.revoked",
    "permission.set", "permission.deleted",
    "alert_rule.created", "alert_rule.deleted", "alert.fired", "alert.resolved", "alert.raised",
    "run.alive", "run.crashed", "run.stalled", "run.stall_ended",
    "job.created", "job.updated", "job.deleted", "job.triggered",
    "job.claimed", "job.claim_renewed", "job.started", "job.succeeded", "job.failed", "job.skipped", "job.cancel_requested",
}  # fmt: skip

SCHEMA_FILES = sorted(p.name for p in resources.files("eventflow.schemas").iterdir() if p.name.endswith(".avsc"))


def _load(filename: str) -> dict:
    return json.loads((resources.files("eventflow.schemas") / filename).read_text(encoding="utf-8"))


def _camel(event_type: str, version: int) -> str:
    return "".join(p.capitalize() for p in re.split(r"[._]", event_type)) + f"V{version}"


def test_every_event_type_has_a_schema_and_no_other(reg):
    assert set(reg.event_types()) == EXPECTED_EVENT_TYPES


# Every type gained a version whose Source says who stamped it (issue 13), but
# model_version.created, whose next version comes with its pinned digests.
# model_version.created's v2 also pins its files' digests; the access events (users,
# tokens, permissions) were born stamped.
STAMPED_FROM = {"run.metrics_logged": 4, "webhook.created": 3, "webhook.updated": 3, "run.inputs_logged": 3, "model_version.created": 2,
                **dict.fromkeys(["user.created", "user.password_changed", "user.admin_set", "user.deleted", "token.issued",
                                 "token.revoked", "permission.set", "permission.deleted"], 1),
                "run.project_recorded": 1,  # born stamped (issue 14)
                **dict.fromkeys(["alert_rule.created", "alert_rule.deleted", "alert.fired", "alert.resolved", "alert.raised",
                                 "run.alive", "run.crashed", "run.stalled", "run.stall_ended"], 1),
                "run.stop_requested": 1,  # born stamped (issue 16)
                **dict.fromkeys(["job.created", "job.updated", "job.deleted", "job.triggered",
                                 "job.claimed", "job.claim_renewed", "job.started", "job.succeeded", "job.failed", "job.skipped", "job.cancel_requested"], 1)}  # born stamped (issue 17)
NOT_YET_STAMPED: set[str] = set()


def test_versions_of_each_type(reg):
    for event_type in reg.event_types():
        versions = [s.version for s in reg.versions(event_type)]
        last = 1 if event_type in NOT_YET_STAMPED else STAMPED_FROM.get(event_type, 2)
        assert versions == list(range(1, last + 1)), event_type
        assert reg.current(event_type).version == versions[-1]


def test_every_family_is_routed_and_used(reg):
    families = {t.split(".")[0] for t in reg.event_types()}
    assert families == set(FAMILIES)
    for event_type in reg.event_types():
        assert family_of(event_type) is FAMILIES[event_type.split(".")[0]]


def test_schema_files_are_shipped_in_the_installed_package():
    # 50 types at v1, run.metrics_logged v2 and v3, webhook.created/updated and run.inputs_logged v2,
    # a stamped version of each of those types (model_version.created's also pins digests), 8 access types born
    # stamped, run.project_recorded and run.stop_requested born stamped, 5 alert types and run.alive/crashed/stalled/stall_ended born stamped,
    # 11 job types born stamped
    assert len(SCHEMA_FILES) == 55 + 50 + 8 + 2 + 5 + 4 + 11
    assert SchemaRegistry.load().event_types() == registry().event_types()


def test_a_released_schema_never_changes():
    """Events on the log name their writer schema by fingerprint, so a schema file edited
    in place would make every event already written with it unreadable. A change is a new
    version file; its fingerprint is then recorded in released_fingerprints.json."""
    import json
    from pathlib import Path

    released = json.loads((Path(__file__).parent / "released_fingerprints.json").read_text())
    current = {s.filename.rsplit("/", 1)[-1]: s.fingerprint_hex for s in registry().schemas()}
    assert {name for name, fp in released.items() if current.get(name) != fp} == set(), "edited in place: add a new version instead"
    assert set(current) - set(released) == set(), "a new schema file: record its fingerprint in released_fingerprints.json"


@pytest.mark.parametrize("filename", SCHEMA_FILES)
def test_file_name_matches_declared_type_and_version(filename):
    raw = _load(filename)
    m = re.fullmatch(r"(?P<type>[a-z_]+\.[a-z_]+)\.v(?P<v>\d+)\.avsc", filename)
    assert m, filename
    assert raw["eventflow.event_type"] == m["type"]
    assert raw["eventflow.version"] == int(m["v"])
    assert raw["type"] == "record"
    assert raw["namespace"] == "eventflow.events"
    assert raw["name"] == _camel(m["type"], int(m["v"]))
    assert raw.get("doc")


@pytest.mark.parametrize("filename", SCHEMA_FILES)
def test_envelope_fields_in_order(filename):
    raw = _load(filename)
    fields = raw["fields"]
    assert tuple(f["name"] for f in fields) == ENVELOPE_FIELDS
    by_name = {f["name"]: f for f in fields}
    assert by_name["event_id"]["type"] == {"type": "string", "logicalType": "uuid"}
    assert by_name["event_type"]["type"] == "string"
    assert by_name["time"]["type"] == {"type": "long", "logicalType": "timestamp-millis"}
    assert by_name["actor"]["type"] == "string"
    source = by_name["source"]["type"]
    assert (source["type"], source["name"], source["namespace"]) == ("record", "Source", "eventflow")
    produced = [("host", "string"), ("process", "string"), ("sdk_version", "string")]
    stamped = [
        ("stamped_by", "string", "client"),
        ("authenticated", "boolean", False),
        ("client_address", ["null", "string"], None),
        ("client_time", ["null", {"type": "long", "logicalType": "timestamp-millis"}], None),
    ]
    fields = source["fields"]
    assert [(f["name"], f["type"]) for f in fields[:3]] == produced
    assert [(f["name"], f["type"], f["default"]) for f in fields[3:]] in ([], stamped)  # every later field has a default
    assert all(f.get("doc") for f in fields)
    for name in ("correlation_id", "causation_id"):
        assert by_name[name]["type"] == ["null", "string"]
        assert "default" in by_name[name] and by_name[name]["default"] is None
    payload = by_name["payload"]["type"]
    assert payload["type"] == "record"
    assert payload["name"] == raw["name"] + "Payload"
    assert payload.get("doc")


@pytest.mark.parametrize("filename", SCHEMA_FILES)
def test_payload_has_the_family_key_as_a_required_string(filename):
    raw = _load(filename)
    key_field = FAMILIES[raw["eventflow.event_type"].split(".")[0]].key_field
    payload = raw["fields"][-1]["type"]
    fields = {f["name"]: f for f in payload["fields"]}
    assert key_field in fields
    assert fields[key_field]["type"] == "string"
    assert "default" not in fields[key_field]
    assert payload["fields"][0]["name"] == key_field  # the key comes first


def _walk_types(schema):
    if isinstance(schema, list):
        for s in schema:
            yield from _walk_types(s)
    elif isinstance(schema, dict):
        yield schema
        if schema.get("type") in ("record", "error"):
            for f in schema["fields"]:
                yield from _walk_types(f["type"])
        elif schema.get("type") == "array":
            yield from _walk_types(schema["items"])
        elif schema.get("type") == "map":
            yield from _walk_types(schema["values"])


@pytest.mark.parametrize("filename", SCHEMA_FILES)
def test_payload_conventions(filename):
    raw = _load(filename)
    for t in _walk_types(raw["fields"][-1]["type"]):
        if t.get("type") != "record":
            continue
        for f in t["fields"]:
            assert re.fullmatch(r"[a-z][a-z0-9_]*", f["name"]), f["name"]  # snake_case
            assert f.get("doc"), f"{t['name']}.{f['name']} has no doc"
            ftype = f["type"]
            if isinstance(ftype, list):  # optional: ["null", T] with default null
                assert len(ftype) == 2 and ftype[0] == "null", f["name"]
                assert "default" in f and f["default"] is None, f["name"]
            if f["name"].endswith("_time") or f["name"] == "timestamp":
                assert ftype == {"type": "long", "logicalType": "timestamp-millis"}, f["name"]
            assert f["name"] != "secret"  # secrets never go on the log


@pytest.mark.parametrize("filename", SCHEMA_FILES)
def test_tags_are_arrays_of_key_value_records(filename):
    raw = _load(filename)
    for t in _walk_types(raw["fields"][-1]["type"]):
        for f in t.get("fields", []) if t.get("type") == "record" else []:
            if f["name"] in ("tags", "params"):
                assert f["type"]["type"] == "array"
                items = f["type"]["items"]
                if isinstance(items, dict):
                    assert [(x["name"], x["type"]) for x in items["fields"]] == [("key", "string"), ("value", "string")]


def test_registry_lookup_api(reg):
    for s in reg.schemas():
        assert reg.by_fingerprint(s.fingerprint) is s
        assert len(s.fingerprint) == 8
        assert s.name == f"eventflow.events.{_camel(s.event_type, s.version)}"
        assert s.header == b"\xc3\x01" + s.fingerprint
        assert reg.get(s.event_type, s.version) is s
    assert registry() is registry()
    with pytest.raises(CodecError, match="not known to this version of eventflow"):
        reg.by_fingerprint(b"\x00" * 8)
    with pytest.raises(CodecError, match="unknown event type 'run.exploded'"):
        reg.current("run.exploded")
    with pytest.raises(CodecError):
        reg.versions("nope")


def test_metrics_logged_v2_adds_mlflow3_links_to_points(reg):
    v1, v2 = reg.versions("run.metrics_logged")[:2]

    def point_fields(s):
        return {f["name"]: f for f in s.payload_schema["fields"][1]["type"]["items"]["fields"]}

    p1, p2 = point_fields(v1), point_fields(v2)
    assert set(p2) - set(p1) == {"model_id", "dataset_name", "dataset_digest"}
    for name in ("model_id", "dataset_name", "dataset_digest"):
        assert p2[name]["type"] == ["null", "string"] and p2[name]["default"] is None
    assert v2.raw["aliases"] == ["eventflow.events.RunMetricsLoggedV1"]


def test_model_version_created_v2_pins_files_with_an_empty_default(reg):
    v1, v2 = reg.get("model_version.created", 1), reg.get("model_version.created", 2)
    fields = {f["name"]: f for f in v2.payload_schema["fields"]}
    assert set(fields) - {f["name"] for f in v1.payload_schema["fields"]} == {"files"}
    assert fields["files"]["default"] == []
    assert [(f["name"], f["type"]) for f in fields["files"]["type"]["items"]["fields"]] == [("path", "string"), ("size", "long"), ("sha256", "string")]
    assert v2.raw["aliases"] == ["eventflow.events.ModelVersionCreatedV1"]


def test_metrics_logged_v3_adds_columns_with_an_empty_default(reg):
    v2, v3 = reg.get("run.metrics_logged", 2), reg.get("run.metrics_logged", 3)
    fields = {f["name"]: f for f in v3.payload_schema["fields"]}
    assert fields["points"]["default"] == []
    assert fields["columns"]["default"] == {"names": [], "key_index": [], "values": [], "steps": [], "timestamps": []}
    assert set(fields) - {f["name"] for f in v2.payload_schema["fields"]} == {"columns"}


def test_the_current_schema_of_every_type_carries_the_stamp(reg):
    """What the server stamps (stamping.py) must reach the log: a type whose current schema
    lacked these fields would silently drop them on encode."""
    for event_type in reg.event_types():
        source = next(f for f in reg.current(event_type).raw["fields"] if f["name"] == "source")["type"]
        names = [f["name"] for f in source["fields"]]
        if event_type in NOT_YET_STAMPED:
            continue
        assert names[3:] == ["stamped_by", "authenticated", "client_address", "client_time"], event_type
