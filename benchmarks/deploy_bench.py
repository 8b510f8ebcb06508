"""Time from setting an alias to the new version answering at the deployer's stable address.

    python benchmarks/deploy_bench.py              # 5 promotions
    python benchmarks/deploy_bench.py --rounds 10

A real ``eventflow server`` (embedded log), ``eventflow consume deployer`` for one
target, and small python_function models (one registered version per round). A round:
POST registered-models/alias, then score the stable port without pause until an answer
comes from the new version (the proxy names it in x-eventflow-model-version). Printed
per round and as medians: the total, and its parts from the deployment events' times
(alias set → deployment.started: the deployer noticing; started → succeeded: starting
the backend, health check, switch, drain). A client scoring throughout counts failed
requests (there should be none).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import httpx

from servers import eventflow_server, free_port


def constant(value: int):
    return lambda frame: [value] * len(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ["EVENTFLOW_CAPTURE_ENV"] = "false"
    import pandas as pd

    import eventflow
    from eventflow import models
    from eventflow.models.signature import infer_signature

    example = pd.DataFrame({"x": [1.0, 2.0]})
    name, port = "bench-churn", free_port()
    stable = f"http://127.0.0.1:{port}"
    target = f"{name}@production:{port}"
    with tempfile.TemporaryDirectory() as home, eventflow_server(home) as url:
        eventflow.set_tracking_uri(url)
        versions = []
        for n in range(args.rounds + 1):
            with eventflow.start_run():
                info = models.log_model(constant(n), "model", signature=infer_signature(example), input_example=example,
                                        registered_model_name=name)
            versions.append(info.registered_model_version)
        deployer = subprocess.Popen(
            [sys.executable, "-m", "eventflow", "consume", "deployer", "--home", home, "--tracking-uri", url,
             "--target", f"models:/{name}@production={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop, failures, answered = threading.Event(), [], [0]

        def hammer() -> None:
            with httpx.Client(timeout=30) as http:
                while not stop.is_set():
                    try:
                        r = http.post(stable + "/invocations", json={"dataframe_split": {"columns": ["x"], "data": [[1.0]]}})
                        if r.status_code == 200:
                            answered[0] += 1
                        elif r.status_code != 503 or answered[0]:  # 503 only before the first version is up
                            failures.append(r.status_code)
                    except httpx.HTTPError as error:
                        if answered[0]:
                            failures.append(repr(error))
                        time.sleep(0.01)

        def events() -> list[dict]:
            page = httpx.get(url + "/api/2.0/eventflow/deployments", params={"target": target, "max_results": 1000}).json()
            return page["history"]

        client = threading.Thread(target=hammer, daemon=True)
        rows = []
        try:
            for i, version in enumerate(versions):
                t0 = time.time()
                httpx.post(url + "/api/2.0/mlflow/registered-models/alias", json={"name": name, "alias": "production", "version": version})
                with httpx.Client(timeout=5) as http:
                    while True:
                        try:
                            r = http.post(stable + "/invocations", json={"dataframe_split": {"columns": ["x"], "data": [[1.0]]}})
                            if r.headers.get("x-eventflow-model-version") == version:
                                break
                        except httpx.HTTPError:
                            pass
                        time.sleep(0.005)
                total = time.time() - t0
                if i == 0:
                    client.start()
                    continue  # the first deployment has no old version beside it: not counted
                while len([e for e in events() if e["version"] == version]) < 2:
                    time.sleep(0.05)
                started = next(e for e in events() if e["version"] == version and e["type"] == "deployment.started")
                done = next(e for e in events() if e["version"] == version and e["type"] == "deployment.succeeded")
                rows.append((total, started["time"] / 1000 - t0, (done["time"] - started["time"]) / 1000))
                print(f"round {i}: alias set -> v{version} answering {total * 1000:7.0f} ms "
                      f"(noticed {rows[-1][1] * 1000:5.0f} ms, started -> succeeded {rows[-1][2] * 1000:6.0f} ms)", flush=True)
        finally:
            stop.set()
            deployer.terminate()
            deployer.wait(timeout=60)
            eventflow.set_tracking_uri(None)
    median = lambda k: statistics.median(r[k] for r in rows) * 1000  # noqa: E731
    print(f"\nmachine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"promotions: {len(rows)}; median alias set -> new version answering: {median(0):.0f} ms "
          f"(min {min(r[0] for r in rows) * 1000:.0f}, max {max(r[0] for r in rows) * 1000:.0f}); "
          f"noticed {median(1):.0f} ms, started -> succeeded {median(2):.0f} ms")
    print(f"client requests answered during the promotions: {answered[0]}, failed: {len(failures)}")


if __name__ == "__main__":
    main()
