"""Events checked against the views before they are appended.

The projector decides every rule that needs state, in log order (``eventflow.rules``),
and a write is answered with its decision. Checking the same rules against the views
first answers at once and keeps a batch that is sure to be refused off the log — the
SDK's HTTP transport (``POST /api/2.0/eventflow/events``) is checked here event by event,
as MLflow's REST handlers check their requests. A batch may create what its later events
use (a run, then its params), so what the batch itself creates counts as there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from eventflow import rules
from eventflow.events import Event
from eventflow.views import queries

Read = Callable[..., Any]

# Run events that may be written about a deleted run (ending, renaming, restoring it).
END_STATUS = {"run.finished": "FINISHED", "run.failed": "FAILED", "run.killed": "KILLED"}
_ANY_STAGE = {"run.finished", "run.failed", "run.killed", "run.renamed", "run.deleted", "run.restored"}


class _Batch:
    """What the events before this one in the batch created, by id."""

    def __init__(self, read: Read):
        self.read = read
        self.run_stages: dict[str, str | None] = {}
        self.run_statuses: dict[str, str | None] = {}
        self.params: dict[str, dict[str, str]] = {}
        self.experiment_names: dict[str, str] = {}  # id -> name

    def run_stage(self, run_id: str) -> str | None:
        if run_id not in self.run_stages:
            info = self.read(queries.get_run_info, run_id)
            self.run_stages[run_id] = None if info is None else info["lifecycle_stage"]
        return self.run_stages[run_id]

    def run_status(self, run_id: str) -> str | None:
        if run_id not in self.run_statuses:
            info = self.read(queries.get_run_info, run_id)
            self.run_statuses[run_id] = None if info is None else info["status"]
        return self.run_statuses[run_id]

    def experiment(self, experiment_id: str) -> dict[str, Any] | None:
        if experiment_id in self.experiment_names:
            return {"experiment_id": experiment_id, "name": self.experiment_names[experiment_id], "lifecycle_stage": "active"}
        return self.read(queries.get_experiment, experiment_id)

    def name_holder(self, name: str) -> str | None:
        for experiment_id, held in self.experiment_names.items():
            if held == name:
                return experiment_id
        found = self.read(queries.get_experiment_by_name, name)
        return None if found is None else found["experiment_id"]


def check_events(read: Read, events: Sequence[Event]) -> None:
    """Raise ``rules.Refused`` for the first event the views say will be refused."""
    batch = _Batch(read)
    for event in events:
        _check(batch, event)


def _check(batch: _Batch, event: Event) -> None:
    p = event.payload
    family = event.type.partition(".")[0]
    if event.type == "run.created":
        rules.run_id_free(p["run_id"], batch.run_stage(p["run_id"]) is not None)
        experiment = batch.experiment(p["experiment_id"])
        rules.experiment_exists(p["experiment_id"], experiment is not None)
        batch.run_stages[p["run_id"]] = "active"
        batch.run_statuses[p["run_id"]] = "RUNNING"
    elif family == "run":
        rules.run_usable(p["run_id"], batch.run_stage(p["run_id"]), active=event.type not in _ANY_STAGE)
        if event.type == "run.params_logged":
            _check_params(batch, p["run_id"], p["params"])
        elif event.type == "run.artifact_logged":
            rules.run_files_open(p["run_id"], batch.run_status(p["run_id"]))
        elif event.type in END_STATUS:
            batch.run_status(p["run_id"])
            batch.run_statuses[p["run_id"]] = END_STATUS[event.type]
        elif event.type in ("run.deleted", "run.restored"):
            batch.run_stages[p["run_id"]] = "deleted" if event.type == "run.deleted" else "active"
    elif event.type == "alert.raised":
        rules.run_usable(p["run_id"], batch.run_stage(p["run_id"]), active=True)
    elif event.type == "experiment.created":
        there = batch.experiment(p["experiment_id"])
        rules.experiment_id_free(p["experiment_id"], there and there["name"], p["name"])
        rules.experiment_name_free(p["name"], batch.name_holder(p["name"]), p["experiment_id"])
        batch.experiment_names[p["experiment_id"]] = p["name"]
    elif family == "experiment":
        rules.experiment_exists(p["experiment_id"], batch.experiment(p["experiment_id"]) is not None)
        if event.type == "experiment.renamed":
            rules.experiment_name_free(p["new_name"], batch.name_holder(p["new_name"]), p["experiment_id"])


def _check_params(batch: _Batch, run_id: str, params: Sequence[dict[str, str]]) -> None:
    logged = batch.params.setdefault(run_id, {})
    unknown = [item["key"] for item in params if item["key"] not in logged]
    if unknown:
        logged.update(batch.read(queries.get_params, run_id, unknown))
    for item in params:
        rules.param_unchanged(run_id, item["key"], logged.get(item["key"]), item["value"])
        logged.setdefault(item["key"], item["value"])
