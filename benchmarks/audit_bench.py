"""Audit and time travel on a model with a long history.

    python benchmarks/audit_bench.py [--events 10000]

A model with ``--events`` events in its history (a creation, 500 versions, alias moves
and tags, one every simulated millisecond), plus ``--others`` events about another model
in the same partition, is written straight to an embedded log; an ``eventflow server``
then projects it (the projector keeps the entity index as it goes). Measured, over REST:
  - the audit of the model (every entry, one request);
  - the audit of one alias (the model's events read, the alias's shown);
  - an ``as_of`` read (registered-models/get, and the alias) at the middle of the history:
    the registry partition folded by the projector into a scratch database;
  - an ``as_of`` read at a later moment than a cached fold (it continues that fold);
  - lineage: downstream of a dataset that ``--runs`` runs trained on (every run, the
    version registered from each, the alias), and upstream from the alias to the data;
  - ``views rebuild`` of the log (events/s), to weigh what the index costs the projector.
Each line is printed as it finishes.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

from servers import eventflow_server

VERSIONS = 500


def history(name: str, events: int, others: int, start: int) -> list:
    from eventflow.registry import commands as rc

    out = [rc.create_registered_model(name)]
    for v in range(1, VERSIONS + 1):
        out.append(rc.create_model_version(name, str(v), f"models:/m-{v}"))
    n = 0
    while len(out) < events:
        n += 1
        out.append(rc.set_alias(name, "production", str(1 + n % VERSIONS)) if n % 2 else rc.set_registered_model_tag(name, "step", n))
    noise = [rc.create_registered_model(f"{name}-other")] + [rc.set_registered_model_tag(f"{name}-other", "k", i) for i in range(others)]
    mixed = []
    for i in range(max(len(out), len(noise))):
        mixed += out[i:i + 1] + noise[i:i + 1]
    mixed.append(rc.set_registered_model_tag(f"{name}-other", "done", "yes"))  # last on the log: projected means all are
    return [dataclasses.replace(e, time=start + i) for i, e in enumerate(mixed)]


def lineage_history(runs: int, start: int) -> tuple[list, str]:
    """An experiment of ``runs`` runs that all trained on one dataset, a version
    registered from each run, and an alias on the last version."""
    from eventflow import commands as tc
    from eventflow.registry import commands as rc

    experiment_id, model = tc.new_experiment_id(), f"lineage-{time.time_ns()}"
    dataset = {"dataset": {"name": "train", "digest": "d" * 8, "source_type": "local", "source": "/data/train.csv"}, "tags": []}
    out = [tc.create_experiment(experiment_id, f"lineage-{experiment_id}", f"/tmp/{experiment_id}"), rc.create_registered_model(model)]
    for n in range(1, runs + 1):
        run_id = tc.new_run_id()
        out += [tc.create_run(run_id, experiment_id, run_name=f"r{n}", user_id="bench", artifact_uri=f"/tmp/{run_id}"),
                tc.log_params(run_id, {"n": n}), tc.log_inputs(run_id, [dataset]), tc.end_run(run_id),
                rc.create_model_version(model, str(n), f"runs:/{run_id}/model", run_id=run_id)]
    out.append(rc.set_alias(model, "production", str(runs)))
    return [dataclasses.replace(e, time=start + i) for i, e in enumerate(out)], model


def timed(what: str, fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    best = min(times)
    print(f"{what}: first {times[0] * 1000:,.0f} ms, then best {min(times[1:]) * 1000:,.0f} ms of {repeat - 1}"
          f" (median of all {statistics.median(times) * 1000:,.0f} ms)", flush=True)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000, help="events in the model's history")
    parser.add_argument("--others", type=int, default=1_000, help="events about another model, interleaved in the same partition")
    parser.add_argument("--runs", type=int, default=1_000, help="runs trained on one dataset, for the lineage lines")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}", flush=True)
    from eventflow.log import open_log
    from eventflow.log.event_log import EventLog

    name = f"bench-{time.time_ns()}"
    start = 1_700_000_000_000
    with tempfile.TemporaryDirectory() as home:
        events = history(name, args.events, args.others, start)
        lineage_events, lineage_model = lineage_history(args.runs, start - 6 * args.runs - 10)  # before: the log holds them first
        log = open_log(os.path.join(home, "log"))
        writer = EventLog(log)
        for i in range(0, len(lineage_events), 2000):
            writer.append_many(lineage_events[i:i + 2000])
        for i in range(0, len(events), 2000):
            writer.append_many(events[i:i + 2000])
        log.close()
        mine = sum(1 for e in events if e.payload.get("name") == name)
        assert mine == args.events
        print(f"log: {len(events):,} events, {mine:,} of them in {name}'s history, and {len(lineage_events):,} of "
              f"{args.runs:,} runs on one dataset; load average {os.getloadavg()[0]:.1f}", flush=True)
        with eventflow_server(home) as url:
            started = time.perf_counter()
            while True:
                got = httpx.get(f"{url}/api/2.0/mlflow/registered-models/get", params={"name": f"{name}-other"}).json()
                tags = {t["key"]: t["value"] for t in got.get("registered_model", {}).get("tags", [])}
                if tags.get("done") == "yes":
                    break
                time.sleep(0.2)
            print(f"projected by the server (with the index) in {time.perf_counter() - started:.1f} s", flush=True)
            entries: list = []

            def audit() -> None:
                answer = httpx.get(f"{url}/api/2.0/eventflow/audit", params={"target": f"models:/{name}", "max_results": 100_000}, timeout=600)
                assert answer.status_code == 200, answer.text
                entries[:] = answer.json()["entries"]

            timed(f"audit models:/{name} ({mine:,} events)", audit)
            assert len(entries) == mine, (len(entries), mine)

            def alias_audit() -> None:
                answer = httpx.get(f"{url}/api/2.0/eventflow/audit", params={"target": f"models:/{name}@production", "max_results": 100_000}, timeout=600)
                assert answer.status_code == 200, answer.text

            timed(f"audit models:/{name}@production", alias_audit)
            middle = start + len(events) // 2

            def as_of() -> None:
                answer = httpx.get(f"{url}/api/2.0/mlflow/registered-models/get", params={"name": name, "as_of": middle}, timeout=600)
                assert answer.status_code == 200, answer.text

            # the first as_of read folds; the next ones at that moment are served from the fold's cache
            timed(f"as_of registered-models/get at the middle (a fold of {len(events) // 2:,} registry events)", as_of)

            def alias_as_of() -> None:
                answer = httpx.get(f"{url}/api/2.0/mlflow/registered-models/alias", params={"name": name, "alias": "production", "as_of": middle + 1000}, timeout=600)
                assert answer.status_code == 200, answer.text

            timed(f"as_of registered-models/alias at another moment (a fold of {len(events) // 2 + 1000:,} registry events)", alias_as_of)
            later = [middle + 2000]

            def later_as_of() -> None:
                later[0] += 100  # a new moment each time: each continues the latest fold before it
                answer = httpx.get(f"{url}/api/2.0/mlflow/registered-models/get", params={"name": name, "as_of": later[0]}, timeout=600)
                assert answer.status_code == 200, answer.text

            timed("as_of registered-models/get at later moments, 100 events apart (each continues the fold before it)", later_as_of)
            graph: dict = {}

            def downstream() -> None:
                answer = httpx.get(f"{url}/api/2.0/eventflow/lineage", params={"uri": "datasets:/train", "direction": "downstream"}, timeout=600)
                assert answer.status_code == 200, answer.text
                graph.update(answer.json())

            timed(f"lineage downstream of a dataset {args.runs:,} runs trained on", downstream)
            assert len(graph["nodes"]) == 2 * args.runs + 2, len(graph["nodes"])  # the dataset, the runs, their versions, the alias

            def upstream() -> None:
                answer = httpx.get(f"{url}/api/2.0/eventflow/lineage", params={"uri": f"models:/{lineage_model}@production", "direction": "upstream"}, timeout=600)
                assert answer.status_code == 200, answer.text
                assert [n["type"] for n in answer.json()["nodes"]] == ["alias", "model_version", "run", "dataset"], answer.json()["nodes"]

            timed("lineage upstream from an alias to its data", upstream)

            def live() -> None:
                assert httpx.get(f"{url}/api/2.0/mlflow/registered-models/get", params={"name": name}).status_code == 200

            timed("live registered-models/get, for comparison", live)
        for label, python in (("this branch (with the entity index)", sys.executable), ("main (without it)", "/work/venvs/main/bin/python")):
            if label.startswith("main") and not os.path.exists(python):
                continue
            into = os.path.join(home, f"rebuild-{time.time_ns()}.db")
            started = time.perf_counter()
            done = subprocess.run([python, "-m", "eventflow", "views", "rebuild", "--home", home, "--into", f"sqlite:///{into}"],
                                  capture_output=True, text=True, cwd="/work/main" if label.startswith("main") else None)
            elapsed = time.perf_counter() - started
            summary = [line for line in done.stdout.splitlines() if line.startswith("replayed")]
            print(f"views rebuild, {label}: {summary[0] if summary else done.stderr[-300:]} (command {elapsed:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
