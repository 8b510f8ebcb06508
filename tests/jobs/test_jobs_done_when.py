"""Issue 17's jobs, done when — with a real server and real agent processes: a cron job
fires on time and its run starts; an alias move triggers the evaluation project, which logs
into a new run linked to the triggering event. On the embedded log and on Kafka + PostgreSQL."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
from jobstack import agent_env, project, start_agent, stop, wait_for
from serving import ok, running_server

from eventflow.jobs.agent import TAG_CAUSE, TAG_JOB, TAG_TRIGGER
from eventflow.sdk.jobs import Jobs


@pytest.fixture(scope="module")
def private_kafka(tmp_path_factory):
    """A broker of this module's own: agents read the jobs topic from its start, and on the
    session's shared broker they would find every earlier test's jobs."""
    from eventflow.dev.kafka import LocalKafka

    broker = LocalKafka(data_dir=tmp_path_factory.mktemp("jobs-kafka"), stop_timeout=20, quiet=True).start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(params=["embedded", "kafka+postgresql"])
def stack(request, tmp_path):
    """A server (its scheduler inside) and an agent, on the embedded log or on Kafka with
    the views in PostgreSQL."""
    home = tmp_path / "home"
    kafka = [] if request.param == "embedded" else ["--kafka", request.getfixturevalue("private_kafka")]
    views = [] if request.param == "embedded" else ["--db", request.getfixturevalue("new_postgres_database")("jobs")]
    with running_server(home, *kafka, *views) as url:
        agent = start_agent(home, url, tmp_path / "agent.out", *kafka)
        yield url, project(tmp_path / "project")
        stop(agent)


def _events(url: str, event_type: str) -> list[dict]:
    answer = httpx.get(f"{url}/api/2.0/eventflow/events", params={"type": event_type, "max_results": 10000}, timeout=60)
    return [e["event"] for e in answer.json()["events"]]


def _tags(run: dict) -> dict:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def test_a_cron_job_fires_on_its_tick_and_its_run_starts(stack, tmp_path):
    url, directory = stack
    jobs = Jobs(url)
    # a sixth cron field counts seconds: every 3 s, so the test sees ticks in seconds
    job = jobs.add("ticking", str(directory), cron="* * * * * */3", parameters={"marker": str(tmp_path / "m.txt")}, env_manager="local")
    done = wait_for(lambda: [r for r in jobs.runs(job["job_id"]) if r["status"] == "SUCCEEDED"], "a cron run to succeed", timeout=60)
    jobs.pause(job["job_id"])
    run = done[-1]
    assert run["reason"] == "cron" and run["tick"] % 3000 == 0 and run["tick"] >= job["created_time"]
    [fired] = [e for e in _events(url, "job.triggered") if e["payload"]["trigger_id"] == run["trigger_id"]]
    assert 0 <= fired["time"] - run["tick"] < 2500  # on time: the scheduler's clock looks four times a second
    tracked = ok(url, "GET", "runs/get", run_id=run["run_id"])["run"]
    assert tracked["info"]["status"] == "FINISHED"
    assert _tags(tracked)[TAG_JOB] == job["job_id"] and _tags(tracked)[TAG_TRIGGER] == run["trigger_id"]
    ticks = [r["tick"] for r in jobs.runs(job["job_id"])]
    assert len(ticks) == len(set(ticks))  # one run per tick


def test_an_alias_move_runs_the_evaluation_project_in_a_run_linked_to_the_event(stack):
    url, directory = stack
    experiment_id = ok(url, "POST", "experiments/create", name="training")["experiment_id"]
    run_id = ok(url, "POST", "runs/create", experiment_id=experiment_id)["run"]["info"]["run_id"]
    ok(url, "POST", "registered-models/create", name="churn")
    ok(url, "POST", "model-versions/create", name="churn", source=f"runs:/{run_id}/model", run_id=run_id)
    ok(url, "POST", "model-versions/create", name="churn", source=f"runs:/{run_id}/model", run_id=run_id)
    jobs = Jobs(url)
    added = subprocess.run([sys.executable, "-m", "eventflow", "jobs", "add", "evaluate-on-staging", str(directory), "-e", "evaluate",
                            "--on", "model_version.alias_set", "--model", "churn", "--alias", "staging",
                            "-P", "model_uri={event.model_uri}", "--env-manager", "local", "--experiment-name", "evaluations",
                            "--tracking-uri", url], capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stderr
    job_id = added.stdout.split()[0]

    ok(url, "POST", "registered-models/alias", name="churn", alias="production", version="1")  # another alias: no run
    moved = subprocess.run([sys.executable, "-m", "eventflow", "registry", "--tracking-uri", url, "alias", "churn", "staging", "2"],
                           capture_output=True, text=True, timeout=120, env=agent_env())
    assert moved.returncode == 0, moved.stderr
    [alias_event] = [e for e in _events(url, "model_version.alias_set") if e["payload"]["alias"] == "staging"]

    [run] = wait_for(lambda: [r for r in jobs.runs(job_id) if r["status"] == "SUCCEEDED"], "the evaluation to succeed", timeout=90)
    assert run["reason"] == "event" and run["cause_event_id"] == alias_event["event_id"]
    assert run["parameters"] == {"model_uri": "models:/churn/2"}
    evaluation = ok(url, "GET", "runs/get", run_id=run["run_id"])["run"]
    assert evaluation["info"]["run_id"] != run_id and evaluation["info"]["status"] == "FINISHED"
    assert _tags(evaluation)[TAG_CAUSE] == alias_event["event_id"] and _tags(evaluation)[TAG_JOB] == job_id
    assert {p["key"]: p["value"] for p in evaluation["data"]["params"]}["model_uri"] == "models:/churn/2"
    assert [m["value"] for m in evaluation["data"]["metrics"] if m["key"] == "accuracy"] == [0.9]
    experiment = ok(url, "GET", "experiments/get", experiment_id=evaluation["info"]["experiment_id"])["experiment"]
    assert experiment["name"] == "evaluations"
    assert len(jobs.runs(job_id)) == 1  # the production alias triggered nothing
