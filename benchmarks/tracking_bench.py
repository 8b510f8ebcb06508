"""Tracking, side by side: eventflow's SDK against MLflow's fluent API and ``mlflow server``.

    pip install -e '.[bench]'
    python benchmarks/tracking_bench.py            # embedded default; add --kafka to also run on Kafka + PostgreSQL

The same workload through both, in one run, on one machine:
  1. one run: 200,000 metric points over 10 keys, 20 params, 20 tags;
  2. 500 short runs (create, one param, end);
  3. reading a 20,000-point metric history.
MLflow logs to ``mlflow server`` with its SQLite backend (its fastest local setup that
serves clients over HTTP), through ``log_batch`` in chunks of 1,000 — MLflow's fastest
durable path; its synchronous ``log_metric`` is measured on a sample. eventflow's figures
are "durable": the clock stops when ``flush()`` returns, i.e. when every event is on the
log (fsynced for the embedded log); projection is timed until the views hold every point.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

from servers import mlflow_server

POINTS = 200_000
KEYS = 10
RUNS = 500
HISTORY = 20_000


def points(step: int) -> dict[str, float]:
    return {f"metric_{k}": step * 0.001 + k for k in range(KEYS)}


def bench_mlflow(url: str) -> dict[str, float]:
    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(url)
    mlflow.set_experiment("bench")
    client = MlflowClient(url)
    out: dict[str, float] = {}
    with mlflow.start_run() as run:
        run_id = run.info.run_id
        mlflow.log_params({f"param_{i}": i for i in range(20)})
        mlflow.set_tags({f"tag_{i}": i for i in range(20)})
        started = time.perf_counter()
        sample = 200
        for step in range(sample):
            mlflow.log_metric("sync_metric", step, step=step)
        out["sync log_metric (calls/s)"] = sample / (time.perf_counter() - started)
        now = int(time.time() * 1000)
        batch: list[Metric] = []
        started = time.perf_counter()
        for step in range(POINTS // KEYS):
            for key, value in points(step).items():
                batch.append(Metric(key, value, now, step))
            if len(batch) >= 1000:
                client.log_batch(run_id, metrics=batch)
                batch = []
        if batch:
            client.log_batch(run_id, metrics=batch)
        out["200k points via log_batch, durable (points/s)"] = POINTS / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(RUNS):
        with mlflow.start_run():
            mlflow.log_param("i", i)
    out["short runs (runs/s)"] = RUNS / (time.perf_counter() - started)
    started = time.perf_counter()
    history = client.get_metric_history(run_id, "metric_0")
    out[f"read a {len(history):,}-point history (s)"] = time.perf_counter() - started
    return out


def bench_eventflow(uri: str) -> dict[str, float]:
    import eventflow

    eventflow.set_tracking_uri(uri)
    eventflow.set_experiment("bench")
    out: dict[str, float] = {}
    with eventflow.start_run() as run:
        eventflow.log_params({f"param_{i}": i for i in range(20)})
        eventflow.set_tags({f"tag_{i}": i for i in range(20)})
        eventflow.flush()
        calls = 0
        started = time.perf_counter()
        for step in range(POINTS // KEYS):
            for key, value in points(step).items():
                eventflow.log_metric(key, value, step=step)
                calls += 1
        enqueued = time.perf_counter() - started
        eventflow.flush()
        durable = time.perf_counter() - started
        out["log_metric call overhead (µs/call)"] = enqueued / calls * 1e6
        out["200k points, one log_metric call each, durable (points/s)"] = POINTS / durable
    client = eventflow.Client(uri)
    started = time.perf_counter()
    client.get_run(run.run_id)  # waits until the projector has applied every point
    out["views hold all 200k points, after flush (s)"] = time.perf_counter() - started
    with eventflow.start_run():
        started = time.perf_counter()
        for step in range(POINTS // KEYS):
            eventflow.log_metrics(points(step), step=step)
        eventflow.flush()
        out["200k points, log_metrics of 10 keys per step, durable (points/s)"] = POINTS / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(RUNS):
        with eventflow.start_run():
            eventflow.log_param("i", i)
    out["short runs (runs/s)"] = RUNS / (time.perf_counter() - started)
    started = time.perf_counter()
    client.get_run(run.run_id)  # reads wait for the views to hold every write before them
    out["views caught up with the 2nd 200k points and 500 runs (s)"] = time.perf_counter() - started
    started = time.perf_counter()
    history = client.get_metric_history(run.run_id, "metric_0")
    out[f"read a {len(history):,}-point history (s)"] = time.perf_counter() - started
    client.close()
    eventflow.set_tracking_uri(None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args()
    os.environ.setdefault("EVENTFLOW_CAPTURE_ENV", "false")  # same work as MLflow: no package listing per run
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as directory:
        with mlflow_server(directory) as url:
            theirs = bench_mlflow(url)
        ours = bench_eventflow(os.path.join(directory, "eventflow-home"))
    print(f"\n{'MLflow ' + __import__('mlflow').__version__ + ' (mlflow server, SQLite)':<58}")
    for label, value in theirs.items():
        print(f"  {label:<56} {value:>12,.3f}")
    print("\neventflow (embedded default: SDK → embedded log; views in SQLite)")
    for label, value in ours.items():
        print(f"  {label:<56} {value:>12,.3f}")
    print("\nratios (eventflow ÷ MLflow; higher is better for eventflow)")
    batch = theirs["200k points via log_batch, durable (points/s)"]
    print(f"  {'durable points/s (log_metrics) vs MLflow log_batch':<56} {ours['200k points, log_metrics of 10 keys per step, durable (points/s)'] / batch:>11,.1f}×")
    print(f"  {'durable points/s (log_metric) vs MLflow log_batch':<56} {ours['200k points, one log_metric call each, durable (points/s)'] / batch:>11,.1f}×")
    print(f"  {'log_metric calls/s vs MLflow sync log_metric':<56} {1e6 / ours['log_metric call overhead (µs/call)'] / theirs['sync log_metric (calls/s)']:>11,.0f}×")
    print(f"  {'short runs/s':<56} {ours['short runs (runs/s)'] / theirs['short runs (runs/s)']:>11,.1f}×")
    history_key = next(k for k in ours if k.startswith("read a"))
    their_key = next(k for k in theirs if k.startswith("read a"))
    print(f"  {'history read speed':<56} {theirs[their_key] / ours[history_key]:>11,.1f}×")


if __name__ == "__main__":
    main()
