"""Slack and Teams bodies for any event, and a format the API does not know is refused."""

from __future__ import annotations

import json

import pytest
from serving import running_server
from test_alerts import slack_message
from webhook_stack import FAST

from eventflow import commands
from eventflow.alerts.commands import raise_alert
from eventflow.sdk.webhooks import Webhooks
from eventflow.validation import InvalidInput
from eventflow.webhooks.payload import render


def test_a_failed_run_in_slack_and_teams_words():
    event = commands.end_run("a" * 32, "FAILED", 1_700_000_000_000, "CUDA out of memory")
    assert "failed" in slack_message(json.loads(render("slack", event))).lower()
    teams = json.loads(render("teams", event))
    assert teams["type"] == "message"
    (attachment,) = teams["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["body"][0]["type"] == "TextBlock" and "failed" in card["body"][0]["text"].lower()
    assert {"title": "Event", "value": "run.failed"} in card["body"][2]["facts"]


def test_slack_control_characters_are_escaped():
    event = raise_alert("b" * 32, "x <!channel> & y")
    section = json.loads(render("slack", event))["blocks"][0]["text"]["text"]
    assert "<!channel>" not in section and "x &lt;!channel&gt; &amp; y" in section


def test_an_unknown_format_is_refused(tmp_path):
    with running_server(tmp_path / "home", env=FAST) as url:
        hooks = Webhooks(url)
        with pytest.raises(InvalidInput) as refused:
            hooks.create("http://127.0.0.1:9/hook", ["run.*"], format="discord")
        assert "eventflow, slack, teams" in refused.value.message
        assert hooks.list() == []
        made = hooks.create("http://127.0.0.1:9/hook", ["run.*"], format="teams")["webhook"]
        assert made["format"] == "teams"
