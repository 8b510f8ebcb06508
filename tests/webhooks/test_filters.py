"""Which events a subscription wants: patterns, model, experiment, conditions."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from eventflow import commands
from eventflow.consumers.webhooks import _Subscription
from eventflow.events import Event
from eventflow.webhooks import filters


def subscription(events=("*",), experiment_id=None, model_name=None, condition=None, created_time=0):
    return _Subscription(SimpleNamespace(
        subscription_id="s", events=json.dumps(list(events)), experiment_id=experiment_id,
        model_name=model_name, condition=condition, created_time=created_time, flavor=None,
    ))


def version_event(name: str, alias: str = "production") -> Event:
    return Event("model_version.alias_set", {"name": name, "version": "3", "alias": alias})


def test_patterns():
    assert filters.type_matches(["run.*"], "run.failed")
    assert not filters.type_matches(["run.*"], "runner.failed")
    assert filters.type_matches(["*"], "model_version.alias_set")
    assert not filters.type_matches(["run.failed"], "run.finished")
    # the SDK's signs of life only by name: a run.* subscriber would get two a minute per run
    assert not filters.type_matches(["run.*"], "run.alive") and not filters.type_matches(["*"], "run.alive")
    assert filters.type_matches(["run.alive"], "run.alive")
    with pytest.raises(filters.InvalidFilter, match="no event family"):
        filters.check_patterns(["runs.*"])


def test_model_and_alias_condition():
    wanted = subscription(["model_version.*"], model_name="churn", condition="alias = 'production'")
    assert wanted.wants(version_event("churn"), None)
    assert not wanted.wants(version_event("other"), None)
    assert not wanted.wants(version_event("churn", "staging"), None)
    run_failed = commands.end_run(commands.new_run_id(), "FAILED")
    assert not subscription(["*"], model_name="churn").wants(run_failed, None)


def test_experiment_and_time():
    event = commands.end_run(commands.new_run_id(), "FAILED")
    assert subscription(experiment_id="7").wants(event, "7")
    assert not subscription(experiment_id="7").wants(event, "8")
    assert not subscription(experiment_id="7").wants(event, None)
    assert not subscription(created_time=event.time + 1).wants(event, None)  # older than the subscription


@pytest.mark.parametrize(
    "condition, points, expected",
    [
        ("metrics.accuracy > 0.9", [("accuracy", 0.95)], True),
        ("metrics.accuracy > 0.9", [("accuracy", 0.5), ("loss", 3.0)], False),
        ("metrics.accuracy > 0.9", [("loss", 3.0)], False),
        ("metrics.accuracy >= 0.5 AND metrics.loss < 1", [("accuracy", 0.5), ("loss", 0.2)], True),
        ("metrics.accuracy >= 0.5 and metrics.loss < 1", [("accuracy", 0.5), ("loss", 2.0)], False),
        ("metrics.accuracy > 0.9", [("accuracy", float("nan"))], False),
        ("run_id != 'x'", [("a", 1.0)], True),
    ],
)
def test_metric_conditions(condition, points, expected):
    event = commands.log_metrics("r1", commands.metric_columns([(k, v, 1, 0) for k, v in points]))
    assert subscription(condition=condition).wants(event, None) is expected


def test_tag_and_field_conditions():
    tags = commands.set_tags("r1", {"team": "vision"})
    assert subscription(condition="tags.team = 'vision'").wants(tags, None)
    assert not subscription(condition="tags.team = \"nlp\"").wants(tags, None)
    failed = commands.end_run("r1", "FAILED", error_message="OOM")
    assert subscription(condition="error_message = 'OOM'").wants(failed, None)


@pytest.mark.parametrize("bad", ["metrics.acc >", "metrics.acc ~ 3", "1 > metrics.acc", "metrics.acc > 0.9 OR x = 1", "x" * 1001])
def test_bad_conditions_say_why(bad):
    with pytest.raises(filters.InvalidFilter):
        filters.parse_condition(bad)
