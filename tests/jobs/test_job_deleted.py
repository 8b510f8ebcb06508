"""A deleted job leaves no run waiting forever: its PENDING runs read CANCELLED at once
(through the REST API, as the agents fold them) and no agent started afterwards runs them;
a run already RUNNING is not killed by the deletion and ends as it ends, but is not
retried. A rebuild of the views from the log gives the same rows."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from jobstack import executions, project, start_agent, stop, wait_for
from serving import running_server
from sqlalchemy import create_engine, select

from eventflow.codec import decode
from eventflow.consumers.scheduler import triggered as job_triggered
from eventflow.events import Event
from eventflow.jobs import commands
from eventflow.jobs.agent import JOBS_TOPIC, Agent
from eventflow.jobs.runs import JobRun
from eventflow.jobs.tables import job_runs
from eventflow.log.embedded import EmbeddedLog
from eventflow.log.event_log import EventLog
from eventflow.sdk.jobs import Jobs


def _run(jobs: Jobs, job_id: str, trigger_id: str) -> dict:
    return next(r for r in jobs.runs(job_id) if r["trigger_id"] == trigger_id)


def _events(url: str, trigger_id: str) -> list[dict]:
    answer = httpx.get(f"{url}/api/2.0/eventflow/events", params={"topic": "eventflow.jobs", "max_results": 10000}, timeout=60)
    return [e["event"] for e in answer.json()["events"] if e["event"]["payload"].get("trigger_id") == trigger_id]


def _job_runs(database: Path) -> dict[str, dict]:
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as c:
            return {r.trigger_id: dict(r._mapping) for r in c.execute(select(job_runs))}
    finally:
        engine.dispose()


def _rebuilt_job_runs(home: Path, into: Path) -> dict[str, dict]:
    """``eventflow views rebuild`` of the home's log into a fresh database: its job_runs."""
    done = subprocess.run([sys.executable, "-m", "eventflow", "views", "rebuild", "--home", str(home), "--into", f"sqlite:///{into}"],
                          capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    return _job_runs(into)


def test_a_deleted_jobs_pending_run_is_cancelled_and_never_run_also_on_replay(tmp_path):
    home, directory = tmp_path / "home", project(tmp_path / "project")
    marker, other_marker = tmp_path / "executions.txt", tmp_path / "other.txt"
    with running_server(home) as url:
        jobs = Jobs(url)
        job = jobs.add("work", str(directory), parameters={"marker": str(marker)}, env_manager="local")
        trigger = jobs.run_now(job["job_id"])["trigger_id"]  # no agent running: it waits
        assert _run(jobs, job["job_id"], trigger)["status"] == "PENDING"

        jobs.delete(job["job_id"])  # answered once the views applied it
        cancelled = _run(jobs, job["job_id"], trigger)
        assert cancelled["status"] == "CANCELLED" and cancelled["cancel_requested"] is True, cancelled
        assert "job was deleted" in cancelled["detail"] and cancelled["attempt"] == 1 and cancelled["agent_id"] is None

        agent = start_agent(home, url, tmp_path / "agent.out")
        try:  # the agent reads the log in order: once it ran a later job's run, it has folded the deletion
            other = jobs.add("other", str(directory), parameters={"marker": str(other_marker)}, env_manager="local")
            later = jobs.run_now(other["job_id"])["trigger_id"]
            wait_for(lambda: _run(jobs, other["job_id"], later)["status"] == "SUCCEEDED", "a later job's run to succeed", timeout=120)
        finally:
            stop(agent)
        assert executions(marker) == [] and len(executions(other_marker)) == 1
        assert [e["type"] for e in _events(url, trigger)] == ["job.triggered"]  # never claimed
        assert _run(jobs, job["job_id"], trigger) == cancelled

    live = _job_runs(home / "views.db")
    assert live[trigger]["status"] == "CANCELLED"
    assert _rebuilt_job_runs(home, tmp_path / "rebuilt.db") == live  # the same answer on replay


@pytest.mark.parametrize("exit_code, outcome", [(0, "SUCCEEDED"), (3, "FAILED")])
def test_a_deleted_jobs_running_run_is_not_killed_ends_as_it_ends_and_is_not_retried(tmp_path, exit_code, outcome):
    home, directory, marker = tmp_path / "home", project(tmp_path / "project"), tmp_path / "executions.txt"
    with running_server(home) as url:
        jobs = Jobs(url)
        agent = start_agent(home, url, tmp_path / "agent.out")
        try:
            job = jobs.add("work", str(directory), parameters={"seconds": "6", "marker": str(marker), "exit_code": str(exit_code)},
                           env_manager="local", retries=2)
            trigger = jobs.run_now(job["job_id"])["trigger_id"]
            wait_for(lambda: _run(jobs, job["job_id"], trigger)["status"] == "RUNNING" and executions(marker), "the run to start")
            jobs.delete(job["job_id"])
            assert _run(jobs, job["job_id"], trigger)["status"] == "RUNNING"  # the deletion does not kill it
            ended = wait_for(lambda: (r := _run(jobs, job["job_id"], trigger))["status"] not in ("CLAIMED", "RUNNING") and r,
                             "the run to end", timeout=120)
            assert ended["status"] == outcome and ended["attempt"] == 1, ended  # no retry of a deleted job's run
            assert ended["exit_code"] == exit_code and ended["cancel_requested"] is False
            if exit_code:
                assert "exit code 3" in ended["detail"] and "job was deleted" in ended["detail"], ended
            ends = [e for e in _events(url, trigger) if e["type"] in ("job.succeeded", "job.failed")]
            assert len(ends) == 1 and "killed" not in ends[0]["payload"].get("reason", "")  # it ran to its own end
            if exit_code:  # what a webhook subscriber of job.failed reads: no retry is coming
                assert ends[0]["payload"]["will_retry"] is False, ends[0]
        finally:
            stop(agent)
        assert len(executions(marker)) == 1

    live = _job_runs(home / "views.db")
    assert _rebuilt_job_runs(home, tmp_path / "rebuilt.db") == live


def test_the_fold_of_a_deleted_jobs_runs():
    """The rules themselves (eventflow/jobs/runs.py), as every agent and the projector fold them."""
    job, deleted = "a" * 32, Event("job.deleted", {"job_id": "a" * 32})

    def triggered(job_deleted: bool = False) -> JobRun:
        event = Event("job.triggered", {"job_id": job, "trigger_id": "t", "parameters": {}, "reason": "manual"})
        return JobRun.triggered(event, job_deleted=True) if job_deleted else JobRun.triggered(event)

    def claim(attempt: int = 1) -> Event:
        return Event("job.claimed", {"job_id": job, "trigger_id": "t", "attempt": attempt, "agent_id": "x", "lease_seconds": 30.0})

    def failed(will_retry: bool) -> Event:
        return Event("job.failed", {"job_id": job, "trigger_id": "t", "attempt": 1, "agent_id": "x", "run_id": "r", "exit_code": 3,
                                    "cause_event_id": None, "reason": "the run ended FAILED (exit code 3)", "will_retry": will_retry})

    pending = triggered()
    assert pending.apply(deleted) and (pending.status, pending.cancel_requested) == ("CANCELLED", True)
    assert not pending.apply(claim()) and pending.status == "CANCELLED"  # no claim of it wins
    assert not pending.apply(Event("job.deleted", {"job_id": "b" * 32}))  # another job's deletion is not its
    assert triggered(job_deleted=True).status == "CANCELLED"  # triggered after the deletion in log order

    running = triggered()
    assert running.apply(claim()) and running.apply(Event("job.started", {"job_id": job, "trigger_id": "t", "attempt": 1, "agent_id": "x",
                                                                         "run_id": "r", "cause_event_id": None}))
    assert not running.apply(deleted) and (running.status, running.cancel_requested) == ("RUNNING", False)  # not killed
    assert running.apply(failed(will_retry=True), 0.0, job_deleted=True)
    assert (running.status, running.attempt) == ("FAILED", 1) and "not retried: its job was deleted" in running.detail

    retrying = triggered()
    retrying.apply(claim())
    assert retrying.apply(failed(will_retry=True), 60.0) and (retrying.status, retrying.attempt) == ("PENDING", 2)
    assert retrying.apply(deleted) and retrying.status == "CANCELLED"  # a retry waiting its delay is pending: cancelled


class _Submitted:
    """A project run the test ends: RUNNING until ``end``."""

    run_id = "f" * 32

    def __init__(self):
        self.status, self.returncode = "RUNNING", None

    def end(self, status: str, code: int) -> None:
        self.status, self.returncode = status, code

    def get_status(self) -> str:
        return self.status

    def wait(self, timeout: float) -> None:
        pass

    def cancel(self) -> None:
        self.end("KILLED", -9)


@pytest.mark.parametrize("deleted", [False, True])
def test_the_job_failed_of_a_deleted_jobs_run_says_it_will_not_be_retried(tmp_path, deleted):
    """The agent's job.failed (what webhooks of job.failed deliver, the dashboard and the
    audit describe) says will_retry as the fold then does it: a deleted job's run, failing
    with retries left, is not retried, and its event says so. Without the deletion, the
    same failure is retried and says will_retry."""
    log = EmbeddedLog(tmp_path / "log")
    writer, submitted = EventLog(log), _Submitted()
    agent = Agent(log, "unused", agent_id="agent-1", launch=lambda job, run, tags, uri: submitted)
    reader = log.consumer([JOBS_TOPIC])
    seen: list[Event] = []

    def step_until(check, what: str):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            agent.step(0.05)
            seen.extend(decode(r.value) for r in reader.poll(0.01, 1000))
            if answer := check():
                return answer
        raise AssertionError(f"the agent did not {what} within 30 s; the log: {[e.type for e in seen]}")

    try:
        job = commands.create_job({"name": "work", "project_uri": str(tmp_path), "retries": 2})
        job_id = job.payload["job_id"]
        trigger = job_triggered(job_id, "manual", "manual/1", {})
        writer.append_many([job, trigger])
        trigger_id = trigger.payload["trigger_id"]
        step_until(lambda: agent.runs.get(trigger_id) and agent.runs[trigger_id].status == "RUNNING", "start the run")
        if deleted:
            writer.append(commands.delete_job(job_id))
            step_until(lambda: agent.jobs[job_id]["deleted"], "fold the deletion")
            assert agent.runs[trigger_id].status == "RUNNING"  # not killed
        submitted.end("FAILED", 3)
        [failed] = step_until(lambda: [e for e in seen if e.type == "job.failed"], "append job.failed")
        run = step_until(lambda: agent.runs[trigger_id].status not in ("CLAIMED", "RUNNING") and agent.runs[trigger_id], "fold it")
        assert failed.payload["attempt"] == 1 and failed.payload["exit_code"] == 3
        if deleted:
            assert failed.payload["will_retry"] is False, failed.payload
            assert (run.status, run.attempt) == ("FAILED", 1)
            assert "job was deleted" in run.detail, run.detail
        else:
            assert failed.payload["will_retry"] is True, failed.payload
            assert (run.status, run.attempt) == ("PENDING", 2)
    finally:
        reader.close()
        agent._consumer.close()
        log.close()
