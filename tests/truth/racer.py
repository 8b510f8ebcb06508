"""One of N writer processes racing on the same names, for the replay-equals-live test.

    python racer.py INDEX COUNT BARRIER_DIR PREFIX ROUNDS SERVER_URL

The SDK writes to the log itself (``EVENTFLOW_TRACKING_URI``: a home or ``kafka://``, with
``EVENTFLOW_DB`` for Kafka), so each process decides "is this name free?" against the
views on its own, as several training scripts on one home do; the REST steps go through
the server. Before each step every process waits for the others (a file barrier), so
the competing claims arrive together. Refusals (the name is taken) are expected and
ignored: the test compares what the views made of the log, live and replayed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

import eventflow
from eventflow.validation import InvalidInput

API = "/api/2.0/mlflow/"


class Barrier:
    def __init__(self, directory: Path, index: int, count: int):
        self.directory, self.index, self.count, self.step = directory, index, count, 0

    def wait(self, timeout: float = 180) -> None:
        self.step += 1
        (self.directory / f"ready-{self.step}-{self.index}").touch()
        deadline = time.monotonic() + timeout
        while len(list(self.directory.glob(f"ready-{self.step}-*"))) < self.count:
            if time.monotonic() > deadline:
                raise SystemExit(f"racer {self.index}: the others did not reach step {self.step} within {timeout:.0f} s")
            time.sleep(0.001)


def refused(call, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Run a call that may lose the race: None when it was refused (4xx), its result otherwise."""
    try:
        return call(*args, **kwargs)
    except InvalidInput:
        return None


def rest(http: httpx.Client, path: str, body: dict) -> httpx.Response:
    answer = http.post(API + path, json=body)
    if answer.status_code >= 500:
        raise SystemExit(f"{path}: {answer.status_code} {answer.text[:300]}")
    return answer


def main() -> None:
    index, count, barrier_dir, prefix, rounds, url = sys.argv[1:]
    index, count, rounds = int(index), int(count), int(rounds)
    barrier = Barrier(Path(barrier_dir), index, count)
    client = eventflow.Client()  # the SDK's own store on this log: the registry runs here
    http = httpx.Client(base_url=url, timeout=120)
    for k in range(rounds):
        # Training scripts that all set the same experiment and log into it.
        barrier.wait()
        eventflow.set_experiment(f"{prefix}same-{k}")
        with eventflow.start_run(run_name=f"racer-{index}") as run:
            eventflow.log_params({"racer": index})
            for step in range(100):
                eventflow.log_metrics({"loss": 1 / (step + 1), "acc": step / 100}, step=step)
        eventflow.flush(timeout=120)
        # MLflow clients creating one experiment name, then renaming their own onto one name.
        mine = rest(http, "experiments/create", {"name": f"{prefix}mine-{k}-{index}"}).json()["experiment_id"]
        barrier.wait()
        rest(http, "experiments/create", {"name": f"{prefix}rest-{k}"})
        barrier.wait()
        rest(http, "experiments/update", {"experiment_id": mine, "new_name": f"{prefix}renamed-{k}"})
        # The registry: one model name, versions of it at once, renames onto one name.
        own = f"{prefix}own-{k}-{index}"
        client.create_registered_model(own)
        barrier.wait()
        refused(client.create_registered_model, f"{prefix}model-{k}")
        barrier.wait()
        for _ in range(2):
            refused(client.create_model_version, f"{prefix}model-{k}", f"runs:/{run.run_id}/model", run_id=run.run_id)
        barrier.wait()
        refused(client.rename_registered_model, own, f"{prefix}renamed-model-{k}")
        barrier.wait()
        rest(http, "registered-models/create", {"name": f"{prefix}rest-model-{k}"})
    eventflow.flush(timeout=120)


if __name__ == "__main__":
    main()
