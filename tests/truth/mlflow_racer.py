"""One of several processes racing to get-or-create the same experiments with the real
``mlflow`` client, as MLflow users write it: look the name up, create it if missing, and
if someone else created it meanwhile (RESOURCE_ALREADY_EXISTS), read it by name.

    python mlflow_racer.py URL BARRIER_DIR OUT_JSON NAME [NAME...]

Waits until BARRIER_DIR/go exists (after writing BARRIER_DIR/ready-PID), so the
processes start together; writes ``{name: {"id": ..., "run": ... | "error": ...}}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient


def get_or_create(client: MlflowClient, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id


def main() -> None:
    url, barrier, out, *names = sys.argv[1:]
    client = MlflowClient(url)
    client.search_experiments(max_results=1)  # warm up: the race is in the creates, not in imports
    (Path(barrier) / f"ready-{os.getpid()}").touch()
    while not (Path(barrier) / "go").exists():
        time.sleep(0.001)
    given: dict[str, dict[str, str]] = {}
    for name in names:
        experiment_id = get_or_create(client, name)
        given[name] = {"id": experiment_id}
        try:  # what the user does next with the id it was given
            given[name]["run"] = client.create_run(experiment_id).info.run_id
        except MlflowException as error:
            given[name]["error"] = f"{error.error_code}: {error.message}"[:300]
    Path(out).write_text(json.dumps(given))


if __name__ == "__main__":
    main()
