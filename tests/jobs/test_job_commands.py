"""A job's definition is checked at the edge: every bad field is refused with a message
naming it and what to write instead."""

from __future__ import annotations

import pytest

from eventflow.events import Event
from eventflow.jobs import commands
from eventflow.validation import InvalidInput

GOOD = {"name": "nightly", "project_uri": "/srv/projects/train", "cron": "0 3 * * *", "timezone": "Europe/Berlin"}


def _refused(**changes) -> str:
    with pytest.raises(InvalidInput) as refused:
        commands.create_job({**GOOD, **changes})
    return refused.value.message


def test_a_good_job_has_every_field_filled_in():
    event = commands.create_job(GOOD)
    assert event.type == "job.created" and len(event.payload["job_id"]) == 32
    p = event.payload
    assert (p["entry_point"], p["retries"], p["max_concurrent"], p["on_overlap"], p["queue"], p["catch_up"]) == ("main", 0, 1, "skip", "default", False)
    assert p["cron"] == "0 3 * * *" and p["timezone"] == "Europe/Berlin"


@pytest.mark.parametrize("changes, words", [
    ({"cron": "0 3 * *"}, "five fields"),
    ({"cron": "61 3 * * *"}, "'cron'"),
    ({"cron": "0 3 * * funday"}, "'cron'"),
    ({"timezone": "Europe/Berlln"}, "unknown time zone"),
    ({"timezone": "Mars/Olympus"}, "unknown time zone"),
    ({"entry_point": "../escape.py"}, "entry point"),
    ({"entry_point": "train me"}, "entry point"),
    ({"project_uri": "relative/dir"}, "absolute path"),
    ({"project_uri": None}, "'project_uri'"),
    ({"name": ""}, "'name'"),
    ({"parameters": {"model_uri": "{event.model_uri}"}}, "no event trigger"),
    ({"parameters": {"x": "{model_uri}"}, "on_events": ["model_version.alias_set"]}, "{event.FIELD}"),
    ({"on_events": ["nosuch.thing"]}, "matches no event family"),
    ({"on_events": ["run.failed"], "condition": "status === 'x'"}, "condition"),
    ({"alias": "staging"}, "needs an event trigger"),
    ({"experiment_id": "7"}, "needs an event trigger"),
    ({"retries": -1}, "'retries'"),
    ({"retries": 1.5}, "whole number"),
    ({"timeout": 0}, "'timeout'"),
    ({"on_overlap": "wait"}, "skip or queue"),
    ({"queue": "no spaces"}, "queue"),
    ({"env_manager": "pipenv"}, "environment manager"),
    ({"colour": "blue"}, "Unknown job field"),
])  # fmt: skip
def test_a_bad_field_is_refused_naming_it(changes, words):
    assert words in _refused(**changes)


def test_a_placeholder_is_filled_from_the_triggering_event():
    alias_set = Event("model_version.alias_set", {"name": "churn", "alias": "staging", "version": "3"})
    filled = commands.resolve_parameters({"model_uri": "{event.model_uri}", "note": "alias {event.alias} of {event.name}"},
                                         commands.event_context(alias_set))
    assert filled == {"model_uri": "models:/churn/3", "note": "alias staging of churn"}
    with pytest.raises(commands.Unfilled):
        commands.resolve_parameters({"x": "{event.nosuch}"}, commands.event_context(alias_set))


def test_an_update_keeps_what_it_does_not_change_and_is_checked_whole():
    created = commands.create_job({**GOOD, "retries": 2})
    updated = commands.update_job(created.payload, {"cron": "30 4 * * *"}, paused=True)
    assert updated.payload["cron"] == "30 4 * * *" and updated.payload["retries"] == 2 and updated.payload["paused"] is True
    with pytest.raises(InvalidInput, match="'cron'"):
        commands.update_job(created.payload, {"cron": "every day"})
