"""Jobs: the delay from a triggering event, and from a cron tick, to the job's run started.

    python benchmarks/jobs_bench.py                     # 30 alias moves, 15 cron ticks
    python benchmarks/jobs_bench.py --events 100 --ticks 40

A real ``eventflow server`` (embedded log: projector, scheduler...) and one real agent
process (``eventflow agent``) running a tiny local project (``python -c pass``, no
environment to build: ``--env-manager local``).

1. Event → started: a job triggered by ``model_version.alias_set`` of one model; the alias
   is moved once the previous run has ended, each move's ``job.started`` time minus the
   alias event's time.
2. Tick → started: a job on ``* * * * * */2`` (every two seconds; a sixth cron field counts
   seconds); ``job.started`` time minus its tick.

Both ends run on this machine's clock. "Started" is when the agent appended job.started:
the claim won, the run created and its process spawned.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

sys.path.insert(0, os.path.dirname(__file__))

from servers import eventflow_server  # noqa: E402

MLPROJECT = "name: bench\nentry_points:\n  main:\n    parameters:\n      model_uri: {type: string, default: none}\n    command: \"python -c pass\"\n"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def line(what: str, delays: list[float]) -> None:
    print(f"{what:28} n={len(delays):4}  p50 {percentile(delays, 50):7.0f} ms  p99 {percentile(delays, 99):7.0f} ms  "
          f"mean {statistics.mean(delays):7.0f} ms", flush=True)


def job_events(url: str) -> list[dict]:
    answer = httpx.get(f"{url}/api/2.0/eventflow/events", params={"topic": "eventflow.jobs", "max_results": 10000}, timeout=120)
    return [e["event"] for e in answer.json()["events"]]


def wait_ended(url: str, job_id: str, count: int, timeout: float = 120) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        runs = httpx.get(f"{url}/api/2.0/eventflow/jobs/{job_id}/runs", params={"max_results": 1000}, timeout=60).json()["runs"]
        ended = [r for r in runs if r["status"] in ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELLED")]
        if len(ended) >= count:
            return runs
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(ended)} of {count} runs ended")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=30)
    parser.add_argument("--ticks", type=int, default=15)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}", flush=True)
    with tempfile.TemporaryDirectory() as directory:
        home, project = os.path.join(directory, "home"), os.path.join(directory, "project")
        os.makedirs(project)
        with open(os.path.join(project, "MLproject"), "w") as out:
            out.write(MLPROJECT)
        with eventflow_server(home) as url:
            env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
            agent = subprocess.Popen([sys.executable, "-m", "eventflow", "agent", "--home", home, "--tracking-uri", url],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            try:
                api = url + "/api/2.0/mlflow"
                experiment_id = httpx.post(api + "/experiments/create", json={"name": "bench"}).json()["experiment_id"]
                run_id = httpx.post(api + "/runs/create", json={"experiment_id": experiment_id}).json()["run"]["info"]["run_id"]
                httpx.post(api + "/registered-models/create", json={"name": "bench"})
                for _ in range(2):
                    httpx.post(api + "/model-versions/create", json={"name": "bench", "source": f"runs:/{run_id}/model", "run_id": run_id})
                jobs = url + "/api/2.0/eventflow/jobs"
                on_event = httpx.post(jobs, json={"name": "on-alias", "project_uri": project, "on_events": ["model_version.alias_set"],
                                                  "model_name": "bench", "parameters": {"model_uri": "{event.model_uri}"},
                                                  "env_manager": "local"}, timeout=60).json()["job"]
                for n in range(args.events):
                    httpx.post(api + "/registered-models/alias", json={"name": "bench", "alias": "staging", "version": str(1 + n % 2)}, timeout=60)
                    wait_ended(url, on_event["job_id"], n + 1)
                events = job_events(url)
                started = {e["payload"]["trigger_id"]: e["time"] for e in events if e["type"] == "job.started"}
                answer = httpx.get(f"{url}/api/2.0/eventflow/events", params={"type": "model_version.alias_set", "max_results": 10000}, timeout=60)
                alias_time = {e["event"]["event_id"]: e["event"]["time"] for e in answer.json()["events"]}
                delays = [started[e["payload"]["trigger_id"]] - alias_time[e["payload"]["cause_event_id"]]
                          for e in events if e["type"] == "job.triggered" and e["payload"]["job_id"] == on_event["job_id"]]
                line("event -> job started", delays)

                ticking = httpx.post(jobs, json={"name": "ticking", "project_uri": project, "cron": "* * * * * */2", "env_manager": "local"},
                                     timeout=60).json()["job"]
                wait_ended(url, ticking["job_id"], args.ticks, timeout=args.ticks * 2 + 60)
                httpx.post(f"{jobs}/{ticking['job_id']}/pause", json={}, timeout=60)
                events = job_events(url)
                started = {e["payload"]["trigger_id"]: e["time"] for e in events if e["type"] == "job.started"}
                delays = [started[e["payload"]["trigger_id"]] - e["payload"]["tick"] for e in events
                          if e["type"] == "job.triggered" and e["payload"]["job_id"] == ticking["job_id"] and e["payload"]["trigger_id"] in started]
                line("cron tick -> job started", delays[: args.ticks])
            finally:
                agent.terminate()
                agent.wait(60)


if __name__ == "__main__":
    main()
