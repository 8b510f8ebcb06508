"""Scoring throughput and latency: ``eventflow models serve`` beside ``mlflow models serve``.

    pip install -e '.[bench,test]'
    python benchmarks/scoring_bench.py                # 3 rounds of 5 s per measurement
    python benchmarks/scoring_bench.py --seconds 10 --rounds 5

One small scikit-learn model (logistic regression, 8 features), saved once by eventflow;
MLflow loads the same directory (the MLmodel is MLflow's format), so both servers score
the very same pickled model with its signature enforced. Each server runs one worker
(``--env-manager local`` for MLflow). Requests are ``dataframe_split`` JSON: single rows
and batches of 100, from one client (latency) and from 4 concurrent clients (throughput),
over kept-alive connections. Both servers run throughout and take turns, round after
round; the medians are reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack

import httpx

from servers import free_port, serving

FEATURES = 8


def model_dir(directory: str) -> str:
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import eventflow.models

    rng = np.random.default_rng(7)
    frame = pd.DataFrame(rng.normal(size=(1000, FEATURES)), columns=[f"f{i}" for i in range(FEATURES)])
    labels = (frame.sum(axis=1) > 0).astype(int)
    path = os.path.join(directory, "model")
    eventflow.models.save_model(LogisticRegression().fit(frame, labels), path, input_example=frame.head(5))
    return path


def payload(rows: int) -> dict:
    import numpy as np

    rng = np.random.default_rng(rows)
    return {"dataframe_split": {"columns": [f"f{i}" for i in range(FEATURES)], "data": rng.normal(size=(rows, FEATURES)).round(6).tolist()}}


def measure(url: str, rows: int, clients: int, seconds: float) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) over ``seconds`` with ``clients`` concurrent clients."""
    body = payload(rows)
    latencies: list[float] = []
    lock = threading.Lock()
    with httpx.Client(base_url=url, timeout=30) as warm:
        for _ in range(30):
            response = warm.post("/invocations", json=body)
            assert response.status_code == 200 and len(response.json()["predictions"]) == rows, response.text

    def client() -> None:
        mine = []
        with httpx.Client(base_url=url, timeout=30) as http:
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                started = time.perf_counter()
                response = http.post("/invocations", json=body)
                mine.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise RuntimeError(response.text)
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return len(latencies) / elapsed, statistics.median(latencies) * 1000, p99 * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median of each figure is reported")
    args = parser.parse_args()
    workloads = [(1, 1), (100, 1), (1, 4), (100, 4)]
    names = ("mlflow models serve", "eventflow models serve")
    samples: dict[tuple[str, int, int], list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as directory, ExitStack() as stack:
        path = model_dir(directory)
        commands = {
            names[0]: lambda port: [sys.executable, "-m", "mlflow", "models", "serve", "-m", path, "--port", str(port),
                                    "--host", "127.0.0.1", "--env-manager", "local", "-w", "1"],
            names[1]: lambda port: [sys.executable, "-m", "eventflow", "models", "serve", "-m", path, "--port", str(port),
                                    "--host", "127.0.0.1", "-w", "1"],
        }
        urls = {}
        for name, command in commands.items():
            port = free_port()
            urls[name] = stack.enter_context(serving(command(port), port, name))
        # Both servers run throughout and take turns, so a busy moment of a shared machine
        # falls on both rather than on whichever happened to run then.
        for round_ in range(args.rounds):
            for rows, clients in workloads:
                for name in names:
                    rps, p50, p99 = measure(urls[name], rows, clients, args.seconds)
                    samples.setdefault((name, rows, clients), []).append((rps, p50, p99))
                    print(f"round {round_ + 1}: {name:24} {rows:>3} row(s) x {clients} client(s): "
                          f"{rps:8.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms", flush=True)

    import mlflow
    import sklearn

    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"mlflow {mlflow.__version__}, scikit-learn {sklearn.__version__}; {args.rounds} rounds of {args.seconds:g} s, medians\n")
    print("| workload | mlflow req/s | eventflow req/s | ratio | mlflow p99 ms | eventflow p99 ms | p99 ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for rows, clients in workloads:
        m = [statistics.median(column) for column in zip(*samples[(names[0], rows, clients)])]
        e = [statistics.median(column) for column in zip(*samples[(names[1], rows, clients)])]
        label = f"{'1 row' if rows == 1 else f'{rows} rows'}, {clients} client{'s' if clients > 1 else ''}"
        print(f"| {label} | {m[0]:,.0f} | {e[0]:,.0f} | {e[0] / m[0]:.2f}x | {m[2]:.1f} | {e[2]:.1f} | {m[2] / e[2]:.2f}x lower |")


if __name__ == "__main__":
    main()
