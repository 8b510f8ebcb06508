"""Alerts on a real server: a NaN loss fires one alert (not one per NaN point), resolves
once, fires again, each delivered once to a real receiver in Slack's format; a restart
replays nothing twice; training code raises its own alert; a bad rule never reaches the log.
On the embedded log and on Kafka + PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from serving import kafka_postgres_options, ok, running_server
from webhook_receiver import Receiver
from webhook_stack import FAST

from eventflow.sdk.alerts import Alerts
from eventflow.sdk.webhooks import Webhooks
from eventflow.validation import InvalidInput

NAN = float("nan")


def slack_message(body: dict) -> str:
    """Check a body is what a Slack incoming webhook posts (its documented shape: a
    non-empty text, and blocks of known types whose text objects are mrkdwn or
    plain_text); returns the text."""
    assert set(body) <= {"text", "blocks"}, body
    assert isinstance(body["text"], str) and body["text"].strip(), body
    assert isinstance(body["blocks"], list) and 0 < len(body["blocks"]) <= 50
    for block in body["blocks"]:
        assert block["type"] in ("section", "context"), block
        texts = [block["text"]] if block["type"] == "section" else block["elements"]
        for text in texts:
            assert text["type"] in ("mrkdwn", "plain_text") and isinstance(text["text"], str) and len(text["text"]) <= 3000
    return body["text"]


@pytest.fixture(params=["embedded", pytest.param("kafka+postgresql", marks=pytest.mark.kafka)])
def options(request) -> list[str]:
    return kafka_postgres_options(request, "alerts") if request.param != "embedded" else []


def _alert_events(url: str, run_id: str) -> list[dict]:
    answer = httpx.get(f"{url}/api/2.0/eventflow/audit", params={"target": run_id}, timeout=60)
    assert answer.status_code == 200, answer.text
    return [e for e in answer.json()["entries"] if e["event_type"].startswith("alert.")]


def _wait(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_nan_loss_fires_one_alert_and_one_slack_message(options, tmp_path):
    home = tmp_path / "home"
    with Receiver() as receiver:
        with running_server(home, *options, env=FAST) as url:
            experiment_id = ok(url, "POST", "experiments/create", name="alerts-" + uuid.uuid4().hex[:8])["experiment_id"]
            alerts, hooks = Alerts(url), Webhooks(url)
            with pytest.raises(InvalidInput) as bad:
                alerts.add("typo", "loss is NaN", experiment_id=experiment_id)
            assert "metrics.loss is NaN" in bad.value.message
            assert alerts.rules() == []  # refused at the edge: nothing reached the log
            rule = alerts.add("loss is NaN", "metrics.loss is NaN", experiment_id=experiment_id, level="error")
            hooks.create(receiver.url, ["alert.*"], format="slack")
            run_id = ok(url, "POST", "runs/create", experiment_id=experiment_id)["run"]["info"]["run_id"]
            values = [1.0, NAN, NAN, NAN, 0.5, NAN]
            metrics = [{"key": "loss", "value": v, "timestamp": 1000 + n, "step": n} for n, v in enumerate(values)]
            answer = httpx.post(f"{url}/api/2.0/mlflow/runs/log-batch", content=json.dumps({"run_id": run_id, "metrics": metrics}),
                                headers={"content-type": "application/json"}, timeout=60)
            assert answer.status_code == 200, answer.text

            _wait(lambda: len(_alert_events(url, run_id)) >= 3, "three alert events")
            assert [e["event_type"] for e in _alert_events(url, run_id)] == ["alert.fired", "alert.resolved", "alert.fired"]
            receiver.wait_for(lambda: len(set(receiver.ids())) >= 3)
            texts = [slack_message(r.json) for r in receiver.received]
            assert "loss is NaN" in texts[0] and "step 1" in texts[0], texts
            assert "resolved" in texts[1] and "step 4" in texts[1], texts
            firing = alerts.firing(run_id)
            assert [(a["rule_id"], a["metric"], a["step"]) for a in firing] == [(rule["rule_id"], "loss", 5)]

        # A restart replays nothing twice; the next points are judged from the stored state.
        with running_server(home, *options, env=FAST) as url:
            ok(url, "POST", "runs/log-metric", run_id=run_id, key="loss", value="NaN", timestamp=2000, step=6)  # proto JSON spelling
            ok(url, "POST", "runs/log-metric", run_id=run_id, key="loss", value=0.4, timestamp=2001, step=7)
            _wait(lambda: len(_alert_events(url, run_id)) >= 4, "the fourth alert event")
            assert [e["event_type"] for e in _alert_events(url, run_id)] == ["alert.fired", "alert.resolved", "alert.fired", "alert.resolved"]
            receiver.wait_for(lambda: len(set(receiver.ids())) >= 4)
            assert len(receiver.ids()) == len(set(receiver.ids())) == 4  # each alert delivered once
            assert Alerts(url).firing(run_id) == []


def test_training_code_raises_its_own_alert(tmp_path):
    with Receiver() as receiver, running_server(tmp_path / "home", env=FAST) as url:
        Webhooks(url).create(receiver.url, ["alert.raised"], format="slack")
        script = ("import eventflow\n"
                  "with eventflow.start_run() as run:\n"
                  "    eventflow.alert('validation finished', 'accuracy 0.93 > baseline', level='info')\n"
                  "    print('RUN_ID=' + run.info.run_id)\n")
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "EVENTFLOW_TRACKING_URI": url})
        assert done.returncode == 0, done.stderr
        run_id = next(line for line in done.stdout.splitlines() if line.startswith("RUN_ID=")).removeprefix("RUN_ID=")
        receiver.wait_for(lambda: len(receiver.received) >= 1)
        text = slack_message(receiver.received[0].json)
        assert "validation finished" in text and "accuracy 0.93 > baseline" in text
        assert [e["event_type"] for e in _alert_events(url, run_id)] == ["alert.raised"]
