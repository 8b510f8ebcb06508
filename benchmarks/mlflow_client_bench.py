"""The real ``mlflow`` client against ``mlflow server`` and against ``eventflow server``, in one run.

    pip install -e '.[bench]'
    python benchmarks/mlflow_client_bench.py             # mlflow server vs eventflow (embedded)
    python benchmarks/mlflow_client_bench.py --kafka     # also eventflow on Kafka + PostgreSQL (started here)
    python benchmarks/mlflow_client_bench.py --auth      # signed in: mlflow server --app-name basic-auth vs
                                                         # eventflow with auth (password, token) and without

The client code is the same for every server — only MLFLOW_TRACKING_URI changes:
  - sync ``log_metric``: a round trip per call;
  - ``log_batch`` of 1,000 metrics, 100,000 points;
  - async logging (``synchronous=False``) of 5,000 points, until ``flush_async_logging``;
  - ``search_runs`` over 10,000 runs (created by 8 client threads), every page;
  - ``get_metric_history`` of 20,000 points.
MLflow runs with SQLite, eventflow on its embedded default (fsynced log, SQLite views).

With ``--auth`` the client signs in as a non-admin user (made through MLflow's auth API,
which both servers serve): HTTP Basic from MLFLOW_TRACKING_USERNAME/_PASSWORD, and for
eventflow also a token (MLFLOW_TRACKING_TOKEN). MLflow's basic-auth caches verified
credentials for ``--mlflow-auth-cache`` seconds (60 by default; 0 is MLflow's own default,
which pays its scrypt hash, a quarter of a second here, on every request — hours at this scale).
eventflow caches them for 30 s (EVENTFLOW_AUTH_CACHE_SECONDS).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

from servers import eventflow_server, mlflow_server, new_token, new_user

SYNC_CALLS = 300
BATCH_POINTS = 100_000
ASYNC_POINTS = 5_000
SEARCH_RUNS = 10_000
HISTORY_POINTS = 20_000


USER = ("bench-user", "bench-user-password")
CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


@contextmanager
def signed_in(**variables: str) -> Iterator[None]:
    """The mlflow client's credentials (MLFLOW_TRACKING_*) for the duration, none other."""
    saved = {name: os.environ.pop(name, None) for name in CREDENTIALS}
    os.environ.update({f"MLFLOW_TRACKING_{key.upper()}": value for key, value in variables.items()})
    try:
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


def workload(url: str, say: Callable[[str, float], None] = lambda label, value: None, *,
             only: str = "", scale: float = 1.0) -> dict[str, float]:
    """The client code; ``say`` hears each line as it is measured. For quick probes only:
    ``only`` runs one part (sync, batch, async, runs — with the search —, history), ``scale`` shrinks every count."""
    out = _Reported(say)
    _workload(url, out, only.lower(), scale)
    return dict(out)


class _Reported(dict):
    def __init__(self, say: Callable[[str, float], None]):
        super().__init__()
        self.say = say

    def __setitem__(self, label: str, value: float) -> None:
        super().__setitem__(label, value)
        self.say(label, value)


def _scaled(count: int, scale: float) -> int:
    """``count`` times ``scale``, kept a multiple of 1,000 (a batch) where it was one."""
    unit = 1000 if count % 1000 == 0 else 1
    return max(unit, round(count * scale / unit) * unit)


def _workload(url: str, out: dict[str, float], only: str = "", scale: float = 1.0) -> None:
    # mlflow 3 prints a "View run … at" line per run for http(s) URIs: 20,000 lines here.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "1")
    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    sync_calls, batch_points, async_points, search_runs, history_points = (
        _scaled(n, scale) for n in (SYNC_CALLS, BATCH_POINTS, ASYNC_POINTS, SEARCH_RUNS, HISTORY_POINTS))
    mlflow.set_tracking_uri(url)
    client = MlflowClient(url)
    experiment_id = client.create_experiment(f"bench-{time.time_ns()}")
    run_id = client.create_run(experiment_id).info.run_id
    now = int(time.time() * 1000)

    if only in ("", "sync"):
        started = time.perf_counter()
        for step in range(sync_calls):
            client.log_metric(run_id, "sync", step * 0.5, step=step)
        out["sync log_metric (calls/s)"] = sync_calls / (time.perf_counter() - started)

    if only in ("", "batch"):
        started = time.perf_counter()
        for first in range(0, batch_points, 1000):
            client.log_batch(run_id, metrics=[Metric(f"batch_{i % 10}", i * 0.1, now, i) for i in range(first, first + 1000)])
        out["log_batch, 1,000 per call (points/s)"] = batch_points / (time.perf_counter() - started)

    if only in ("", "async"):
        with mlflow.start_run(experiment_id=experiment_id):
            started = time.perf_counter()
            for step in range(async_points):
                mlflow.log_metric("async", step * 0.1, step=step, synchronous=False)
            mlflow.flush_async_logging()
            out["async log_metric until flushed (points/s)"] = async_points / (time.perf_counter() - started)

    if only in ("", "runs"):
        search_experiment = client.create_experiment(f"search-{time.time_ns()}")

        def make_run(i: int) -> None:
            run = client.create_run(search_experiment, run_name=f"r{i}")
            client.log_batch(run.info.run_id, metrics=[Metric("acc", (i % 100) / 100, now, 0)], params=[])
            client.set_terminated(run.info.run_id)

        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(make_run, range(search_runs)))
        out["create+log+end runs, 8 threads (runs/s)"] = search_runs / (time.perf_counter() - started)

        started = time.perf_counter()
        found, token = 0, None
        while True:
            page = client.search_runs([search_experiment], filter_string="metrics.acc >= 0.5", order_by=["metrics.acc DESC"], max_results=1000, page_token=token)
            found += len(page)
            token = page.token
            if not token:
                break
        assert found == search_runs // 2, found
        out[f"search_runs over {search_runs:,} runs, every page (s)"] = time.perf_counter() - started

    if only in ("", "history"):
        history_run = client.create_run(experiment_id).info.run_id
        for first in range(0, history_points, 1000):
            client.log_batch(history_run, metrics=[Metric("h", i * 0.1, now, i) for i in range(first, first + 1000)])
        started = time.perf_counter()
        history = client.get_metric_history(history_run, "h")
        assert len(history) == history_points
        out[f"get_metric_history of {history_points:,} points (s)"] = time.perf_counter() - started


def better(label: str, theirs: float, ours: float) -> float:
    """How many times better eventflow is on a line (rates: higher; durations: lower)."""
    return theirs / ours if label.endswith("(s)") else ours / theirs


def cell(label: str, value: float) -> str:
    return f"{value:,.3f}" if label.endswith("(s)") else f"{value:,.0f}"


PROBE = {"only": "", "scale": 1.0}


def measure(results: dict[str, dict[str, float]], name: str, url: str) -> None:
    """Run the workload on one server, printing each line as it finishes."""
    print(f"\n{name}:", flush=True)
    results[name] = workload(url, lambda label, value: print(f"  {label:<48}{cell(label, value):>14}", flush=True), **PROBE)


def table(results: dict[str, dict[str, float]], versus: list[tuple[str, str]] = ()) -> None:
    """Every server side by side (× against the first), then each (ours, theirs) pair of ``versus``."""
    names = list(results)
    labels = list(results[names[0]])
    print(f"\n{'':<48}" + "".join(f"{name:>34}" for name in names))
    for label in labels:
        cells = []
        for name in names:
            text = cell(label, results[name][label])
            if name != names[0]:
                text += f" ({better(label, results[names[0]][label], results[name][label]):.2f}×)"
            cells.append(f"{text:>34}")
        print(f"{label:<48}" + "".join(cells))
    print(f"\n(×: how many times better than {names[0]} on that line; rates higher, durations lower)")
    for ours, theirs in versus:
        print(f"\n{ours} against {theirs}:")
        for label in labels:
            print(f"  {label:<48}{better(label, results[theirs][label], results[ours][label]):>8.2f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kafka", action="store_true", help="also run eventflow on Kafka + PostgreSQL (started here)")
    parser.add_argument("--auth", action="store_true", help="sign in: mlflow server --app-name basic-auth vs eventflow with auth (password, token) and without")
    parser.add_argument("--mlflow-auth-cache", type=int, default=60, metavar="SECONDS",
                        help="with --auth: how long MLflow's basic-auth caches a verified credential (0: MLflow's default, no cache)")
    parser.add_argument("--only", default="", metavar="WORD",
                        choices=("sync", "batch", "async", "runs", "history"), help="a quick probe: only that part of the workload")
    parser.add_argument("--scale", type=float, default=1.0, help="a quick probe: every count times this (0.1: a tenth)")
    parser.add_argument("--skip-mlflow", action="store_true", help="a quick probe: eventflow only (no × column)")
    args = parser.parse_args()
    PROBE.update(only=args.only, scale=args.scale)
    import mlflow

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, mlflow {mlflow.__version__}")
    results: dict[str, dict[str, float]] = {}
    versus: list[tuple[str, str]] = []
    with ExitStack() as stack:
        directory = stack.enter_context(tempfile.TemporaryDirectory())
        if args.auth:
            basic = f"mlflow basic-auth (cache {args.mlflow_auth_cache} s)"
            with mlflow_server(directory, auth_cache_seconds=args.mlflow_auth_cache) as url:
                new_user(url, *USER)
                with signed_in(username=USER[0], password=USER[1]):
                    measure(results, basic, url)
            with eventflow_server(f"{directory}/eventflow") as url:
                measure(results, "eventflow, no auth", url)
            with eventflow_server(f"{directory}/eventflow-auth", auth=True) as url:
                new_user(url, *USER)
                with signed_in(username=USER[0], password=USER[1]):
                    measure(results, "eventflow auth, password", url)
                token = new_token(url, *USER)
                with signed_in(token=token):
                    measure(results, "eventflow auth, token", url)
            versus = [("eventflow auth, password", "eventflow, no auth"), ("eventflow auth, token", "eventflow, no auth")]
        else:
            if not args.skip_mlflow:
                with mlflow_server(directory) as url:
                    measure(results, "mlflow server (SQLite)", url)
            with eventflow_server(f"{directory}/eventflow") as url:
                measure(results, "eventflow (embedded)", url)
        if args.kafka:
            from eventflow.dev.kafka import LocalKafka
            from eventflow.dev.postgres import LocalPostgres

            kafka = stack.enter_context(LocalKafka(quiet=True))
            postgres = stack.enter_context(LocalPostgres(durable=True, quiet=True))
            with eventflow_server(f"{directory}/eventflow-kafka", "--kafka", kafka.bootstrap, "--db", postgres.url, auth=args.auth) as url:
                if args.auth:
                    new_user(url, *USER)
                with signed_in(**({"username": USER[0], "password": USER[1]} if args.auth else {})):
                    measure(results, "eventflow (Kafka + PostgreSQL)" + (" auth, password" if args.auth else ""), url)
    table(results, versus)


if __name__ == "__main__":
    main()
