"""Jobs through a real server: the SDK, REST and the CLI; a bad definition is refused at
the edge with a clear message and nothing of it reaches the log."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
from serving import running_server

from eventflow.sdk.jobs import Jobs
from eventflow.validation import InvalidInput


@pytest.fixture
def url(tmp_path):
    with running_server(tmp_path / "home") as url:
        yield url


def _job_events(url: str) -> list[dict]:
    answer = httpx.get(f"{url}/api/2.0/eventflow/events", params={"topic": "eventflow.jobs"}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()["events"]


def _cli(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eventflow", "jobs", *args, "--tracking-uri", url],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "NO_COLOR": "1"})


def test_a_job_is_added_listed_paused_resumed_run_now_and_deleted(url, tmp_path):
    jobs = Jobs(url)
    for bad, words in [({"cron": "0 3 * *"}, "five fields"), ({"cron": "0 3 * * *", "timezone": "Europe/Berlln"}, "unknown time zone"),
                       ({"entry_point": "../x.py"}, "entry point"), ({"parameters": {"m": "{event.model_uri}"}}, "no event trigger")]:
        with pytest.raises(InvalidInput) as refused:
            jobs.add("bad", str(tmp_path), **bad)
        assert words in refused.value.message and refused.value.error_code == "INVALID_PARAMETER_VALUE"
    assert jobs.list() == [] and _job_events(url) == []  # refused at the edge: nothing reached the log

    job = jobs.add("nightly", str(tmp_path), entry_point="train", cron="0 3 * * *", timezone="Europe/Berlin",
                   parameters={"epochs": "3"}, retries=2, retry_delay=60)
    assert (job["cron"], job["timezone"], job["parameters"], job["retries"], job["paused"]) == ("0 3 * * *", "Europe/Berlin", {"epochs": "3"}, 2, False)
    assert job["next_run"] is not None and [j["job_id"] for j in jobs.list()] == [job["job_id"]]

    paused = jobs.pause(job["job_id"])
    assert paused["paused"] is True and paused["next_run"] is None
    changed = jobs.update(job["job_id"], cron="30 4 * * *")
    assert changed["cron"] == "30 4 * * *" and changed["paused"] is True and changed["retries"] == 2
    assert jobs.resume(job["job_id"])["paused"] is False

    run = jobs.run_now(job["job_id"], {"epochs": "1"})
    assert run["reason"] == "manual" and run["parameters"] == {"epochs": "1"} and run["status"] == "PENDING"
    assert [r["trigger_id"] for r in jobs.runs(job["job_id"])] == [run["trigger_id"]]

    jobs.delete(job["job_id"])
    assert jobs.list() == []
    with pytest.raises(InvalidInput) as gone:
        jobs.get(job["job_id"])
    assert gone.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert [e["event"]["type"] for e in _job_events(url)] == ["job.created", "job.updated", "job.updated", "job.updated", "job.triggered", "job.deleted"]


def test_the_cli_adds_a_triggered_job_and_refuses_a_bad_one_in_one_line(url, tmp_path):
    bad = _cli(url, "add", "nightly", str(tmp_path), "--cron", "0 3 * * *", "--tz", "Mars/Olympus")
    assert bad.returncode != 0 and "unknown time zone" in bad.stderr and "Traceback" not in bad.stderr
    added = _cli(url, "add", "evaluate", str(tmp_path), "-e", "evaluate", "--on", "model_version.alias_set", "--model", "churn",
                 "--alias", "staging", "-P", "model_uri={event.model_uri}")
    assert added.returncode == 0, added.stderr
    assert "on model_version.alias_set model churn alias staging" in added.stdout and "-P model_uri={event.model_uri}" in added.stdout
    job_id = added.stdout.split()[0]
    listed = _cli(url, "list")
    assert listed.returncode == 0 and job_id in listed.stdout
    assert _cli(url, "run-now", job_id).returncode == 0
    shown = _cli(url, "show", job_id)
    assert shown.returncode == 0 and "manual" in shown.stdout
    helped = _cli(url, "add", "--help")
    assert "--cron" in helped.stdout and "{event.FIELD}" in helped.stdout


def test_with_auth_on_changing_jobs_is_for_administrators(tmp_path):
    admin, alice = ("admin", "the-admin-password"), ("alice", "alice-password")
    env = {"EVENTFLOW_AUTH": "true", "EVENTFLOW_ADMIN_USERNAME": admin[0], "EVENTFLOW_ADMIN_PASSWORD": admin[1]}
    with running_server(tmp_path / "home", env=env) as url:
        created = httpx.post(f"{url}/api/2.0/mlflow/users/create", json={"username": alice[0], "password": alice[1]}, auth=admin, timeout=60)
        assert created.status_code == 200, created.text
        body = {"name": "nightly", "project_uri": str(tmp_path), "cron": "0 3 * * *"}
        refused = httpx.post(f"{url}/api/2.0/eventflow/jobs", json=body, auth=alice, timeout=60)
        assert refused.status_code == 403 and refused.json()["error_code"] == "PERMISSION_DENIED"
        assert "administrators" in refused.json()["message"]
        job = httpx.post(f"{url}/api/2.0/eventflow/jobs", json=body, auth=admin, timeout=60)
        assert job.status_code == 200, job.text
        job_id = job.json()["job"]["job_id"]
        assert httpx.post(f"{url}/api/2.0/eventflow/jobs/{job_id}/run", json={}, auth=alice, timeout=60).status_code == 403
        listed = httpx.get(f"{url}/api/2.0/eventflow/jobs", auth=alice, timeout=60)
        assert listed.status_code == 200 and [j["job_id"] for j in listed.json()["jobs"]] == [job_id]  # reading is for all
