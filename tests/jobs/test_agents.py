"""Agents as real processes beside a real server: each run of a job is run by exactly one
agent; a killed agent's run is retried by another, or failed when no retries are left; a
timeout kills the run; a run that fails is retried after its delay; cancel kills it."""

from __future__ import annotations

import os
import signal

import httpx
import psutil
import pytest
from jobstack import executions, project, start_agent, stop, wait_for
from serving import running_server

from eventflow.sdk.jobs import Jobs


@pytest.fixture
def stack(tmp_path):
    home = tmp_path / "home"
    with running_server(home) as url:
        agents = []

        def agent(*args: str, lease: float = 5.0):
            process = start_agent(home, url, tmp_path / f"agent{len(agents)}.out", *args, lease=lease)
            agents.append(process)
            return process

        yield url, agent, project(tmp_path / "project")
        for process in agents:
            stop(process)


def _events(url: str, trigger_id: str) -> list[dict]:
    answer = httpx.get(f"{url}/api/2.0/eventflow/events", params={"topic": "eventflow.jobs", "max_results": 10000}, timeout=60)
    return [e["event"] for e in answer.json()["events"] if e["event"]["payload"].get("trigger_id") == trigger_id]


def _run(jobs: Jobs, job_id: str, trigger_id: str) -> dict:
    return next(r for r in jobs.runs(job_id) if r["trigger_id"] == trigger_id)


def _pid_of_agent(agent_id: str) -> int:
    return int(agent_id.split(":")[1])


@pytest.mark.parametrize("retries, outcome", [(1, "SUCCEEDED"), (0, "FAILED")])
def test_a_killed_agents_run_is_retried_by_the_other_or_failed(stack, tmp_path, retries, outcome):
    url, agent, directory = stack
    first, second = agent(), agent()
    jobs = Jobs(url)
    marker = tmp_path / "executions.txt"
    job = jobs.add("work", str(directory), parameters={"seconds": "4", "marker": str(marker)}, env_manager="local", retries=retries)
    trigger = jobs.run_now(job["job_id"])["trigger_id"]
    running = wait_for(lambda: (r := _run(jobs, job["job_id"], trigger))["status"] == "RUNNING" and executions(marker) and r, "the run to start")
    [(run_id, pid)] = executions(marker)
    assert running["run_id"] == run_id and running["attempt"] == 1
    owner = {p.pid: p for p in (first, second)}[_pid_of_agent(running["agent_id"])]
    owner.send_signal(signal.SIGKILL)  # the agent dies: its run goes with it (the tether)
    owner.wait()

    ended = wait_for(lambda: (r := _run(jobs, job["job_id"], trigger))["status"] in ("SUCCEEDED", "FAILED") and r, "the run to end", timeout=120)
    assert ended["status"] == outcome
    events = _events(url, trigger)
    failed = [e for e in events if e["type"] == "job.failed"]
    assert len(failed) == 1 and "claim expired" in failed[0]["payload"]["reason"] and failed[0]["payload"]["attempt"] == 1
    started = [e["payload"] for e in events if e["type"] == "job.started"]
    if retries:
        survivor = next(p for p in (first, second) if p is not owner)
        assert ended["attempt"] == 2 and _pid_of_agent(ended["agent_id"]) == survivor.pid
        assert [s["attempt"] for s in started] == [1, 2] and len(executions(marker)) == 2
        assert ended["run_id"] == executions(marker)[1][0] != run_id
    else:
        assert [s["attempt"] for s in started] == [1] and len(executions(marker)) == 1


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_killed_agents_run_processes_die_with_it(stack, tmp_path):
    """kill -9 of an agent ends the run it was running, so the retry elsewhere never
    trains beside an orphan nobody watches."""
    url, agent, directory = stack
    only = agent()
    jobs = Jobs(url)
    marker = tmp_path / "executions.txt"
    job = jobs.add("work", str(directory), parameters={"seconds": "600", "marker": str(marker)}, env_manager="local", retries=0)
    jobs.run_now(job["job_id"])
    [(_, pid)] = wait_for(lambda: executions(marker), "the run's process to start")
    assert _running(pid)
    only.send_signal(signal.SIGKILL)
    only.wait()
    wait_for(lambda: not _running(pid), "the run's process to end with its agent", timeout=60)


def test_two_agents_never_run_one_job_run_twice(stack, tmp_path):
    url, agent, directory = stack
    agent("--max-parallel", "3"), agent("--max-parallel", "3")
    jobs = Jobs(url)
    marker = tmp_path / "executions.txt"
    job = jobs.add("work", str(directory), parameters={"seconds": "0.2", "marker": str(marker)}, env_manager="local", max_concurrent=8,
                   on_overlap="queue")
    triggers = [jobs.run_now(job["job_id"])["trigger_id"] for _ in range(8)]
    wait_for(lambda: all(r["status"] == "SUCCEEDED" for r in jobs.runs(job["job_id"])) and len(jobs.runs(job["job_id"])) == 8, "every run to succeed", timeout=180)
    ran = executions(marker)
    assert len(ran) == 8 and len({run_id for run_id, _ in ran}) == 8
    for trigger in triggers:
        events = _events(url, trigger)
        assert len([e for e in events if e["type"] == "job.started"]) == 1
        claims = [e for e in events if e["type"] == "job.claimed"]
        assert 1 <= len(claims) <= 2
    assert {r["run_id"] for r in jobs.runs(job["job_id"])} == {run_id for run_id, _ in ran}


def test_a_failing_run_is_retried_after_its_delay_and_a_slow_one_killed_at_its_timeout(stack, tmp_path):
    url, agent, directory = stack
    agent("--max-parallel", "2")
    jobs = Jobs(url)
    failing_marker, slow_marker = tmp_path / "failing.txt", tmp_path / "slow.txt"
    failing = jobs.add("failing", str(directory), parameters={"marker": str(failing_marker), "exit_code": "3"}, env_manager="local",
                       retries=1, retry_delay=2)
    slow = jobs.add("slow", str(directory), parameters={"seconds": "60", "marker": str(slow_marker)}, env_manager="local", timeout=2)
    failed_trigger = jobs.run_now(failing["job_id"])["trigger_id"]
    slow_trigger = jobs.run_now(slow["job_id"])["trigger_id"]

    ended = wait_for(lambda: (r := _run(jobs, failing["job_id"], failed_trigger))["status"] == "FAILED" and r, "the failing run to fail twice")
    assert ended["attempt"] == 2 and ended["exit_code"] == 3 and len(executions(failing_marker)) == 2
    attempts = [e for e in _events(url, failed_trigger) if e["type"] in ("job.failed", "job.started")]
    first_failure, second_start = attempts[1], attempts[2]
    assert first_failure["payload"]["will_retry"] is True and second_start["payload"]["attempt"] == 2
    assert second_start["time"] - first_failure["time"] >= 2000  # the retry waited its delay

    killed = wait_for(lambda: (r := _run(jobs, slow["job_id"], slow_trigger))["status"] == "FAILED" and r, "the slow run to be killed")
    assert "timed out after 2 s" in killed["detail"]
    [(_, pid)] = executions(slow_marker)
    wait_for(lambda: not _alive(pid), "the slow run's process to be gone", timeout=30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has ended
        return stat.read().split()[2] != "Z"


def test_cancel_kills_a_running_run_and_an_overlapping_trigger_is_skipped(stack, tmp_path):
    url, agent, directory = stack
    agent("--max-parallel", "2")
    jobs = Jobs(url)
    marker = tmp_path / "executions.txt"
    job = jobs.add("long", str(directory), parameters={"seconds": "60", "marker": str(marker)}, env_manager="local",
                   retries=3, on_overlap="skip")
    first = jobs.run_now(job["job_id"])["trigger_id"]
    wait_for(lambda: _run(jobs, job["job_id"], first)["status"] == "RUNNING" and executions(marker), "the run to start")
    second = jobs.run_now(job["job_id"])["trigger_id"]  # max_concurrent 1, on_overlap skip
    skipped = wait_for(lambda: (r := _run(jobs, job["job_id"], second))["status"] == "SKIPPED" and r, "the overlapping run to be skipped")
    assert "max_concurrent 1" in skipped["detail"]

    assert jobs.cancel(job["job_id"], first)["status"] == "RUNNING"
    cancelled = wait_for(lambda: (r := _run(jobs, job["job_id"], first))["status"] == "CANCELLED" and r, "the run to be cancelled")
    assert cancelled["attempt"] == 1  # no retry of a cancelled run
    [(_, pid)] = executions(marker)
    wait_for(lambda: not _alive(pid), "its process to be gone", timeout=30)
