"""Backward compatibility: every current schema reads every earlier version, and the
checker really catches incompatible changes."""

from __future__ import annotations

import copy

import pytest

from eventflow.codec import check_backward, check_registry, registry

PAIRS = [
    (old.event_type, old.version, registry().current(old.event_type).version)
    for old in registry().schemas()
    if old is not registry().current(old.event_type)
]


def test_there_is_a_real_evolution_to_check():
    assert {("run.metrics_logged", v, 4) for v in (1, 2, 3)} <= set(PAIRS)
    assert ("run.renamed", 1, 2) in PAIRS  # the stamped envelope (issue 13)


@pytest.mark.parametrize("event_type,old_version,new_version", PAIRS)
def test_current_schema_reads_every_earlier_version(reg, event_type, old_version, new_version):
    old, new = reg.get(event_type, old_version), reg.get(event_type, new_version)
    assert check_backward(old.raw, new.raw) == []


def test_check_registry_covers_every_pair(reg):
    result = check_registry(reg)
    assert set(result) == set(PAIRS)
    assert all(problems == [] for problems in result.values())


@pytest.mark.parametrize("event_type", registry().event_types())
def test_every_schema_reads_itself(reg, event_type):
    s = reg.current(event_type)
    assert check_backward(s.raw, s.raw) == []


def _points(schema: dict) -> dict:
    return schema["fields"][-1]["type"]["fields"][1]["type"]["items"]


@pytest.fixture
def metrics(reg):
    v1, v2 = reg.get("run.metrics_logged", 1), reg.get("run.metrics_logged", 2)
    return copy.deepcopy(v1.raw), copy.deepcopy(v2.raw)


def test_adding_an_optional_field_is_compatible(metrics):
    v1, v2 = metrics
    _points(v2)["fields"].append({"name": "unit", "type": ["null", "string"], "default": None})
    assert check_backward(v1, v2) == []


def test_new_required_field_without_default_is_caught(metrics):
    v1, v2 = metrics
    _points(v2)["fields"].append({"name": "unit", "type": "string"})
    problems = check_backward(v1, v2)
    assert any("points[].unit" in p and "without a default" in p for p in problems)
    assert any("No default value for field unit" in p for p in problems)  # the real resolution failed too


def test_new_required_payload_field_is_caught(reg):
    old = reg.current("run.renamed").raw
    new = copy.deepcopy(old)
    new["fields"][-1]["type"]["fields"].append({"name": "reason", "type": "string"})
    assert any("payload.reason" in p for p in check_backward(old, new))


def test_type_change_string_to_long_is_caught(metrics):
    v1, _ = metrics
    new = copy.deepcopy(v1)
    _points(new)["fields"][0]["type"] = "long"  # key: string -> long
    problems = check_backward(v1, new)
    assert any("points[].key: type changed from string to long" in p for p in problems)
    assert any("SchemaResolutionError" in p for p in problems)


def test_type_promotion_is_compatible(metrics):
    v1, _ = metrics
    old = copy.deepcopy(v1)
    _points(old)["fields"][2]["type"] = "int"  # step: int -> long is a promotion
    assert check_backward(old, v1) == []


def test_removed_enum_symbol_is_caught(reg):
    old = reg.current("model_version.stage_transitioned").raw
    new = copy.deepcopy(old)
    stage = new["fields"][-1]["type"]["fields"][2]["type"]
    stage["symbols"].remove("Archived")
    # with a default symbol the reader maps Archived to it: still compatible
    assert check_backward(old, new) == []
    del stage["default"]
    problems = check_backward(old, new)
    assert any("lost symbol(s) Archived" in p for p in problems)
    assert any("Archived not found in reader symbol list" in p for p in problems)


def test_optional_becoming_required_is_caught(reg):
    old = reg.current("run.failed").raw
    new = copy.deepcopy(old)
    new["fields"][-1]["type"]["fields"][2] = {"name": "error_message", "type": "string"}
    problems = check_backward(old, new)
    assert any("payload.error_message" in p and "null" in p for p in problems)


def test_renamed_record_needs_an_alias(metrics):
    v1, v2 = metrics
    del v2["aliases"]
    problems = check_backward(v1, v2)
    assert any("name changed from eventflow.events.RunMetricsLoggedV1" in p for p in problems)
    # and v2 cannot be read by v1 (forward compatibility is not promised)
    assert check_backward(metrics[1], metrics[0]) != []
