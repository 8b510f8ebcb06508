"""The model registry through the real ``mlflow`` client: ``mlflow server`` and ``eventflow server`` side by side.

    pip install -e '.[bench]'
    python benchmarks/registry_bench.py [--versions 200]

The same client code against each server (SQLite for MLflow, the embedded default for
eventflow):
  - ``create_model_version`` from a run's artifacts (a model of three files), one after another;
  - the same from 8 client threads at once (distinct numbers are checked);
  - ``set_registered_model_alias`` (a promotion), one after another;
  - ``search_model_versions`` of one model, every version, and ``get_model_version_by_alias``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from servers import eventflow_server, mlflow_server


def workload(url: str, versions: int) -> dict[str, float]:
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    client = MlflowClient(url, url)
    run_id = client.create_run("0").info.run_id
    with tempfile.TemporaryDirectory() as files:  # a model's files, so a version has something to pin
        for name, size in (("MLmodel", 400), ("model.pkl", 200_000), ("requirements.txt", 50)):
            with open(f"{files}/{name}", "wb") as handle:
                handle.write(os.urandom(size))
            client.log_artifact(run_id, f"{files}/{name}", "model")
    source = f"runs:/{run_id}/model"
    out: dict[str, float] = {}

    name = f"bench-{time.time_ns()}"
    client.create_registered_model(name)
    started = time.perf_counter()
    for _ in range(versions):
        client.create_model_version(name, source, run_id=run_id)
    out["create_model_version, sequential (versions/s)"] = versions / (time.perf_counter() - started)

    name = f"bench-threads-{time.time_ns()}"
    client.create_registered_model(name)
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        numbers = list(pool.map(lambda _: client.create_model_version(name, source, run_id=run_id).version, range(versions)))
    out["create_model_version, 8 threads (versions/s)"] = versions / (time.perf_counter() - started)
    assert sorted(map(int, numbers)) == list(range(1, versions + 1)), "every version got its own number"

    started = time.perf_counter()
    for i in range(versions):
        client.set_registered_model_alias(name, "production", str(i + 1))
    out["set_registered_model_alias (calls/s)"] = versions / (time.perf_counter() - started)

    started = time.perf_counter()
    found = client.search_model_versions(f"name = '{name}'")
    out[f"search_model_versions, {versions} versions (ms)"] = (time.perf_counter() - started) * 1000
    assert len(found) == versions

    started = time.perf_counter()
    for _ in range(50):
        assert client.get_model_version_by_alias(name, "production").version == str(versions)
    out["get_model_version_by_alias (ms per call)"] = (time.perf_counter() - started) * 1000 / 50
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, default=200, help="versions per measure (default 200)")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as directory:
        with mlflow_server(f"{directory}/mlflow") as url:
            results["mlflow server"] = workload(url, args.versions)
        with eventflow_server(f"{directory}/eventflow") as url:
            results["eventflow server"] = workload(url, args.versions)
    print(f"{platform.node()}: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    names = list(results)
    print(f"{'':50}" + "".join(f"{n:>20}" for n in names))
    for measure in results[names[0]]:
        print(f"{measure:50}" + "".join(f"{results[n][measure]:>20,.1f}" for n in names))


if __name__ == "__main__":
    main()
