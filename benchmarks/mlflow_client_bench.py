"""The real ``mlflow`` client against ``mlflow server`` and against ``eventflow server``, in one run.

    pip install -e '.[bench]'
    python benchmarks/mlflow_client_bench.py             # mlflow server vs eventflow (embedded)
    python benchmarks/mlflow_client_bench.py --kafka     # also eventflow on Kafka + PostgreSQL (started here)

The client code is the same for every server — only MLFLOW_TRACKING_URI changes:
  - sync ``log_metric``: a round trip per call;
  - ``log_batch`` of 1,000 metrics, 100,000 points;
  - async logging (``synchronous=False``) of 5,000 points, until ``flush_async_logging``;
  - ``search_runs`` over 10,000 runs (created by 8 client threads), every page;
  - ``get_metric_history`` of 20,000 points.
MLflow runs with SQLite, eventflow on its embedded default (fsynced log, SQLite views).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

from servers import eventflow_server, mlflow_server

SYNC_CALLS = 300
BATCH_POINTS = 100_000
ASYNC_POINTS = 5_000
SEARCH_RUNS = 10_000
HISTORY_POINTS = 20_000


def workload(url: str) -> dict[str, float]:
    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(url)
    client = MlflowClient(url)
    out: dict[str, float] = {}
    experiment_id = client.create_experiment(f"bench-{time.time_ns()}")
    run_id = client.create_run(experiment_id).info.run_id

    started = time.perf_counter()
    for step in range(SYNC_CALLS):
        client.log_metric(run_id, "sync", step * 0.5, step=step)
    out["sync log_metric (calls/s)"] = SYNC_CALLS / (time.perf_counter() - started)

    now = int(time.time() * 1000)
    started = time.perf_counter()
    for first in range(0, BATCH_POINTS, 1000):
        client.log_batch(run_id, metrics=[Metric(f"batch_{i % 10}", i * 0.1, now, i) for i in range(first, first + 1000)])
    out["log_batch, 1,000 per call (points/s)"] = BATCH_POINTS / (time.perf_counter() - started)

    with mlflow.start_run(experiment_id=experiment_id):
        started = time.perf_counter()
        for step in range(ASYNC_POINTS):
            mlflow.log_metric("async", step * 0.1, step=step, synchronous=False)
        mlflow.flush_async_logging()
        out["async log_metric until flushed (points/s)"] = ASYNC_POINTS / (time.perf_counter() - started)

    search_experiment = client.create_experiment(f"search-{time.time_ns()}")

    def make_run(i: int) -> None:
        run = client.create_run(search_experiment, run_name=f"r{i}")
        client.log_batch(run.info.run_id, metrics=[Metric("acc", (i % 100) / 100, now, 0)], params=[])
        client.set_terminated(run.info.run_id)

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(make_run, range(SEARCH_RUNS)))
    out["create+log+end runs, 8 threads (runs/s)"] = SEARCH_RUNS / (time.perf_counter() - started)

    started = time.perf_counter()
    found, token = 0, None
    while True:
        page = client.search_runs([search_experiment], filter_string="metrics.acc >= 0.5", order_by=["metrics.acc DESC"], max_results=1000, page_token=token)
        found += len(page)
        token = page.token
        if not token:
            break
    assert found == SEARCH_RUNS // 2, found
    out[f"search_runs over {SEARCH_RUNS:,} runs, every page (s)"] = time.perf_counter() - started

    history_run = client.create_run(experiment_id).info.run_id
    for first in range(0, HISTORY_POINTS, 1000):
        client.log_batch(history_run, metrics=[Metric("h", i * 0.1, now, i) for i in range(first, first + 1000)])
    started = time.perf_counter()
    history = client.get_metric_history(history_run, "h")
    assert len(history) == HISTORY_POINTS
    out[f"get_metric_history of {HISTORY_POINTS:,} points (s)"] = time.perf_counter() - started
    return out


def better(label: str, theirs: float, ours: float) -> float:
    """How many times better eventflow is on a line (rates: higher; durations: lower)."""
    return theirs / ours if label.endswith("(s)") else ours / theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kafka", action="store_true", help="also run eventflow on Kafka + PostgreSQL (started here)")
    args = parser.parse_args()
    import mlflow

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, mlflow {mlflow.__version__}")
    results: dict[str, dict[str, float]] = {}
    with ExitStack() as stack:
        directory = stack.enter_context(tempfile.TemporaryDirectory())
        with mlflow_server(f"{directory}") as url:
            results["mlflow server (SQLite)"] = workload(url)
        with eventflow_server(f"{directory}/eventflow") as url:
            results["eventflow (embedded)"] = workload(url)
        if args.kafka:
            from eventflow.dev.kafka import LocalKafka
            from eventflow.dev.postgres import LocalPostgres

            kafka = stack.enter_context(LocalKafka(quiet=True))
            postgres = stack.enter_context(LocalPostgres(durable=True, quiet=True))
            with eventflow_server(f"{directory}/eventflow-kafka", "--kafka", kafka.bootstrap, "--db", postgres.url) as url:
                results["eventflow (Kafka + PostgreSQL)"] = workload(url)
    names = list(results)
    labels = list(results[names[0]])
    print(f"\n{'':<48}" + "".join(f"{name:>32}" for name in names))
    for label in labels:
        cells = []
        for name in names:
            value = results[name][label]
            cell = f"{value:,.3f}" if label.endswith("(s)") else f"{value:,.0f}"
            if name != names[0]:
                cell += f" ({better(label, results[names[0]][label], value):.1f}×)"
            cells.append(f"{cell:>32}")
        print(f"{label:<48}" + "".join(cells))
    print("\n(×: how many times better than mlflow server on that line; rates higher, durations lower)")


if __name__ == "__main__":
    main()
