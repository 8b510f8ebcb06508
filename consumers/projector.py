"""The projector: builds the SQL views from the log, exactly once in effect.

Each batch is one transaction holding its rows *and* the next offset of every partition
it read. Before writing, the transaction checks that each partition's stored offset is
where this batch starts (a fence): if another instance, or another process catching up
the same views, got there first, the transaction is refused with ``StalePosition`` and
the loop re-reads from the stored offsets. So replays, crashes mid-batch and several
instances never duplicate or lose a row.

Metric points are the bulk: they are buffered over the batch and written in one
executemany, and the latest value per key is settled once per batch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, delete, func, insert, or_, select, update

from eventflow import rules
from eventflow.audit import index as entity_index
from eventflow.auth import projection as access
from eventflow.jobs import projection as jobs
from eventflow.consumers.base import Delivery, Subscriber
from eventflow.events import Event, Point, linked_points, metric_points
from eventflow.log import TopicPartition
from eventflow.views.db import insert_new, upsert
from eventflow.views.positions import PROJECTOR, Progress, advance, stored_offsets
from eventflow.views.tables import (
    applied_events,
    artifacts,
    datasets,
    experiment_tags,
    experiments,
    inputs,
    latest_metrics,
    logged_model_artifacts,
    logged_model_metrics,
    logged_model_params,
    logged_model_tags,
    logged_models,
    metrics,
    model_version_files,
    model_version_tags,
    model_versions,
    params,
    registered_model_aliases,
    registered_model_tags,
    registered_models,
    registry_names,
    refused_events,
    registry_parked,
    run_model_inputs,
    run_outputs,
    run_projects,
    run_stop_requests,
    runs,
    tags,
)

logger = logging.getLogger(__name__)


# An event this view cannot apply (a rule it breaks, decided by ``eventflow.rules``): it
# is dead-lettered and its refusal recorded, so the write that carried it is answered with
# it (``Runtime.write``); the rest of the batch applies.
Rejected = rules.Refused


def _rank(point: dict[str, Any]) -> tuple[int, int, float]:
    """MLflow's order for the latest value: step, then timestamp, then value (NaN lowest)."""
    value = point["value"]
    return (point["step"], point["timestamp"], -math.inf if math.isnan(value) else value)


class _Batch:
    """What one transaction writes in bulk: the metric points, latest candidates and the
    points about logged models."""

    def __init__(self) -> None:
        # Each run's lifecycle stage as this transaction sees it (None: no such run), so
        # a batch of many small events about one run looks it up once.
        self.stages: dict[str, str | None] = {}
        self.points: list[dict[str, Any]] = []
        self.latest: dict[tuple[str, str], dict[str, Any]] = {}
        self.model_points: list[dict[str, Any]] = []

    def add_points(self, run_id: str, points: list[Point]) -> None:
        isnan = math.isnan
        rows = self.points
        latest = self.latest
        for key, value, step, timestamp in points:
            nan = isnan(value)
            row = {"run_id": run_id, "key": key, "value": 0.0 if nan else value, "is_nan": nan, "step": step, "timestamp": timestamp}
            rows.append(row)
            known = latest.get((run_id, key))
            if known is None or _rank({**row, "value": value}) > _rank(known):
                latest[(run_id, key)] = {**row, "value": value}

    def add_model_points(self, run_id: str, points: list[dict[str, Any]]) -> None:
        for p in points:
            nan = math.isnan(p["value"])
            self.model_points.append({
                "model_id": p["model_id"], "key": p["key"], "step": p["step"], "timestamp": p["timestamp"], "run_id": run_id,
                "value": 0.0 if nan else p["value"], "is_nan": nan, "dataset_name": p["dataset_name"], "dataset_digest": p["dataset_digest"],
            })

    def write_model_points(self, connection: Connection) -> None:
        """First point per (model, key, step, timestamp, run) wins, as in MLflow; the
        experiment is the run's (its events come before, in the run's partition)."""
        run_ids = sorted({row["run_id"] for row in self.model_points})
        experiment_of = dict(connection.execute(select(runs.c.run_id, runs.c.experiment_id).where(runs.c.run_id.in_(run_ids))).all())
        insert_new(connection, logged_model_metrics, [{**row, "experiment_id": experiment_of.get(row["run_id"])} for row in self.model_points])

    def write(self, connection: Connection) -> None:
        if self.points:
            insert_new(connection, metrics, self.points)
        if self.model_points:
            self.write_model_points(connection)
        # The batch's best per key against the stored one, decided in the upsert itself
        # (``_outranks``): one statement, where a read first was two round trips.
        candidates = [{**candidate, "value": 0.0 if math.isnan(candidate["value"]) else candidate["value"]} for candidate in self.latest.values()]
        upsert(connection, latest_metrics, candidates, ["run_id", "key"], only_if=_outranks)


def _outranks(offered: Any) -> Any:
    """``_rank`` in SQL: the offered latest value replaces the stored one when its step,
    then timestamp, then value is higher, NaN ranking as -inf (a tie keeps the stored)."""
    stored = latest_metrics.c
    # NaN is stored as 0.0 with is_nan; every number but -inf is above a stored NaN.
    higher_value = and_(
        ~offered.is_nan,
        or_(and_(stored.is_nan, offered.value >= -sys.float_info.max), and_(~stored.is_nan, offered.value > stored.value)),
    )
    later_time = or_(offered.timestamp > stored.timestamp, and_(offered.timestamp == stored.timestamp, higher_value))
    return or_(offered.step > stored.step, and_(offered.step == stored.step, later_time))


Apply = Callable[[Connection, _Batch, Event], None]

# The statements of a sync log_metric / log_batch, prebuilt as the registry's are: building
# and keying them per batch cost the projector more than running them.
_RUN_STAGE = select(runs.c.lifecycle_stage).where(runs.c.run_id == bindparam("run"))
_PARAMS_OF_RUN = select(params.c.key, params.c.value).where(params.c.run_id == bindparam("run"))
_INSERT_PARAMS = insert(params)
_RENAME_RUN = update(runs).where(runs.c.run_id == bindparam("run")).values(run_name=bindparam("new_name"))


def _usable_run(c: Connection, batch: _Batch, run_id: str) -> None:
    """A write about a run needs the run, active (``rules.run_usable``)."""
    if run_id not in batch.stages:
        batch.stages[run_id] = c.execute(_RUN_STAGE, {"run": run_id}).scalar()
    rules.run_usable(run_id, batch.stages[run_id])


# -- experiments ------------------------------------------------------------------------------


def experiment_created(c: Connection, batch: _Batch, e: Event) -> None:
    p = e.payload
    same_id = c.execute(select(experiments.c.name).where(experiments.c.experiment_id == p["experiment_id"])).first()
    rules.experiment_id_free(p["experiment_id"], same_id and same_id.name, p["name"])
    if same_id is not None:
        return  # created twice (two servers ensuring the Default experiment): one is enough
    holder = c.execute(select(experiments.c.experiment_id).where(experiments.c.name == p["name"])).scalar()
    rules.experiment_name_free(p["name"], holder, p["experiment_id"])
    c.execute(
        insert(experiments).values(
            experiment_id=p["experiment_id"], name=p["name"], artifact_location=p["artifact_location"],
            lifecycle_stage="active", creation_time=p["creation_time"], last_update_time=p["creation_time"],
        )
    )
    upsert(c, experiment_tags, [{"experiment_id": p["experiment_id"], **t} for t in p["tags"]], ["experiment_id", "key"])


def _update_experiment(c: Connection, e: Event, **values: Any) -> None:
    done = c.execute(
        update(experiments).where(experiments.c.experiment_id == e.payload["experiment_id"]).values(last_update_time=e.time, **values)
    )
    rules.experiment_exists(e.payload["experiment_id"], done.rowcount > 0)


def experiment_renamed(c: Connection, batch: _Batch, e: Event) -> None:
    holder = c.execute(select(experiments.c.experiment_id).where(experiments.c.name == e.payload["new_name"])).scalar()
    rules.experiment_name_free(e.payload["new_name"], holder, e.payload["experiment_id"])
    _update_experiment(c, e, name=e.payload["new_name"])


def experiment_tag_set(c: Connection, batch: _Batch, e: Event) -> None:
    p = e.payload
    upsert(c, experiment_tags, [{"experiment_id": p["experiment_id"], "key": p["key"], "value": p["value"]}], ["experiment_id", "key"])


def experiment_tag_deleted(c: Connection, batch: _Batch, e: Event) -> None:
    p = e.payload
    c.execute(delete(experiment_tags).where(and_(experiment_tags.c.experiment_id == p["experiment_id"], experiment_tags.c.key == p["key"])))


# -- runs -------------------------------------------------------------------------------------


def run_created(c: Connection, batch: _Batch, e: Event) -> None:
    p = e.payload
    row = {
        "run_id": p["run_id"], "experiment_id": p["experiment_id"], "run_name": p["run_name"], "user_id": p["user_id"],
        "status": "RUNNING", "start_time": p["start_time"], "end_time": None, "lifecycle_stage": "active",
        "artifact_uri": p["artifact_uri"], "parent_run_id": p["parent_run_id"],
    }
    rules.run_id_free(p["run_id"], not insert_new(c, runs, [row], "run_id"))
    batch.stages[p["run_id"]] = "active"
    upsert(c, tags, [{"run_id": p["run_id"], **t} for t in p["tags"]], ["run_id", "key"])


def _update_run(c: Connection, e: Event, **values: Any) -> None:
    done = c.execute(update(runs).where(runs.c.run_id == e.payload["run_id"]).values(**values))
    rules.run_usable(e.payload["run_id"], "active" if done.rowcount else None, active=False)


def run_ended(status: str) -> Apply:
    def apply(c: Connection, batch: _Batch, e: Event) -> None:
        _update_run(c, e, status=status, end_time=e.payload["end_time"])
        # called crashed, then ended by its own process after all: it was not dead; an ended run is not stalled
        c.execute(delete(tags).where(tags.c.run_id == e.payload["run_id"], tags.c.key.in_((CRASHED_TAG, STALLED_TAG))))
        # A stop asked for is answered by the end: a resumed run must not stop on it again.
        c.execute(delete(run_stop_requests).where(run_stop_requests.c.run_id == e.payload["run_id"]))

    return apply


# A run whose training process stopped showing signs of life (consumers/watchdog.py). To
# MLflow's clients, whose RunStatus has no such value, it is FAILED; this tag says why and
# since when, and the dashboard shows it as CRASHED.
CRASHED_TAG = "eventflow.crashed"
# A running run alive but without new metrics for the stall timeout; the value is since when.
STALLED_TAG = "eventflow.stalled"


def run_crashed(c: Connection, batch: _Batch, e: Event) -> None:
    p = e.payload
    status = c.execute(select(runs.c.status).where(runs.c.run_id == p["run_id"])).scalar()
    if status != "RUNNING":
        return  # it ended (or was called crashed) before this was decided: nothing to mark
    c.execute(update(runs).where(runs.c.run_id == p["run_id"]).values(status="FAILED", end_time=p["last_seen_time"]))
    upsert(c, tags, [{"run_id": p["run_id"], "key": CRASHED_TAG, "value": str(p["last_seen_time"])}], ["run_id", "key"])


def run_stalled(c: Connection, batch: _Batch, e: Event) -> None:
    p = e.payload
    if c.execute(select(runs.c.status).where(runs.c.run_id == p["run_id"])).scalar() != "RUNNING":
        return  # it ended before this was decided
    upsert(c, tags, [{"run_id": p["run_id"], "key": STALLED_TAG, "value": str(p["last_step_time"])}], ["run_id", "key"])


def run_stall_ended(c: Connection, batch: _Batch, e: Event) -> None:
    c.execute(delete(tags).where(tags.c.run_id == e.payload["run_id"], tags.c.key == STALLED_TAG))


def run_alive(c: Connection, batch: _Batch, e: Event) -> None:
    """A sign of life: a run called crashed is running again (its process was only cut
    off, or paused); otherwise nothing changes."""
    run_id = e.payload["run_id"]
    _usable_run(c, batch, run_id)
    crashed = c.execute(select(tags.c.value).where(tags.c.run_id == run_id, tags.c.key == CRASHED_TAG)).scalar()
    if crashed is None:
        return
    c.execute(update(runs).where(runs.c.run_id == run_id).values(status="RUNNING", end_time=None))
    c.execute(delete(tags).where(tags.c.run_id == run_id, tags.c.key == CRASHED_TAG))


def run_staged(stage: str) -> Apply:
    """Deleting or restoring a run (the only events that change its lifecycle stage)."""

    def apply(c: Connection, batch: _Batch, e: Event) -> None:
        _update_run(c, e, lifecycle_stage=stage, deleted_time=e.time if stage == "deleted" else None)
        batch.stages[e.payload["run_id"]] = stage

    return apply


def run_renamed(c: Connection, batch: _Batch, e: Event) -> None:
    _update_run(c, e, run_name=e.payload["run_name"])
    upsert(c, tags, [{"run_id": e.payload["run_id"], "key": "mlflow.runName", "value": e.payload["run_name"]}], ["run_id", "key"])


def params_logged(c: Connection, batch: _Batch, e: Event) -> None:
    run_id = e.payload["run_id"]
    _usable_run(c, batch, run_id)
    logged = {row.key: row.value for row in c.execute(_PARAMS_OF_RUN, {"run": run_id})}
    new = []
    for param in e.payload["params"]:
        before = logged.get(param["key"])
        rules.param_unchanged(run_id, param["key"], before, param["value"])
        if before is None:
            new.append({"run_id": run_id, **param})
            logged[param["key"]] = param["value"]
    if new:
        c.execute(_INSERT_PARAMS, new)


def metrics_logged(c: Connection, batch: _Batch, e: Event) -> None:
    _usable_run(c, batch, e.payload["run_id"])
    batch.add_points(e.payload["run_id"], metric_points(e.payload))
    batch.add_model_points(e.payload["run_id"], linked_points(e.payload))


def tags_set(c: Connection, batch: _Batch, e: Event) -> None:
    run_id = e.payload["run_id"]
    _usable_run(c, batch, run_id)
    upsert(c, tags, [{"run_id": run_id, **t} for t in e.payload["tags"]], ["run_id", "key"])
    for tag in e.payload["tags"]:
        if tag["key"] == "mlflow.runName":
            c.execute(_RENAME_RUN, {"run": run_id, "new_name": tag["value"]})


def tag_deleted(c: Connection, batch: _Batch, e: Event) -> None:
    _usable_run(c, batch, e.payload["run_id"])
    c.execute(delete(tags).where(and_(tags.c.run_id == e.payload["run_id"], tags.c.key == e.payload["key"])))


def artifact_logged(c: Connection, batch: _Batch, e: Event) -> None:
    p = e.payload
    _usable_run(c, batch, p["run_id"])
    rules.run_files_open(p["run_id"], c.execute(select(runs.c.status).where(runs.c.run_id == p["run_id"])).scalar())
    upsert(c, artifacts, [{"run_id": p["run_id"], "path": p["path"], "size": p["size"], "sha256": p["sha256"], "logged_time": e.time}], ["run_id", "path"])


def inputs_logged(c: Connection, batch: _Batch, e: Event) -> None:
    _usable_run(c, batch, e.payload["run_id"])
    run = c.execute(select(runs.c.experiment_id).where(runs.c.run_id == e.payload["run_id"])).one()
    for item in e.payload["datasets"]:
        d = item["dataset"]
        upsert(
            c, datasets,
            [{"experiment_id": run.experiment_id, "name": d["name"], "digest": d["digest"], "source_type": d["source_type"],
              "source": d["source"], "schema": d.get("schema"), "profile": d.get("profile")}],
            ["experiment_id", "name", "digest"],
        )
        upsert(
            c, inputs,
            [{"run_id": e.payload["run_id"], "dataset_name": d["name"], "dataset_digest": d["digest"], "tags": json.dumps(item["tags"])}],
            ["run_id", "dataset_name", "dataset_digest"],
        )
    if e.payload.get("models"):  # events of version 1 have none
        insert_new(c, run_model_inputs, [{"run_id": e.payload["run_id"], **m} for m in e.payload["models"]])


def project_recorded(c: Connection, batch: _Batch, e: Event) -> None:
    """What a project run ran: one row per run (a second record replaces the first)."""
    p = e.payload
    _usable_run(c, batch, p["run_id"])
    row = {name: p.get(name) for name in PROJECT_FIELDS}
    row.update(parameters=json.dumps(p["parameters"]), recorded_time=e.time)
    upsert(c, run_projects, [row], ["run_id"])


def stop_requested(c: Connection, batch: _Batch, e: Event) -> None:
    """A stop asked for a run still going (``rules.run_stoppable``), for its process to hear."""
    run_id = e.payload["run_id"]
    found = c.execute(select(runs.c.lifecycle_stage, runs.c.status).where(runs.c.run_id == run_id)).first()
    rules.run_stoppable(run_id, found and found.lifecycle_stage, found and found.status)
    row = {"run_id": run_id, "requested_time": e.time, "actor": e.actor, "reason": e.payload.get("reason")}
    upsert(c, run_stop_requests, [row], ["run_id"])


PROJECT_FIELDS = ("run_id", "name", "uri", "subdirectory", "version", "commit", "repo_url", "entry_point", "command",
                  "env_manager", "env_digest", "python_version", "packages", "patch_path", "patch_sha256")


# -- logged models (MLflow 3) -----------------------------------------------------------------


def logged_model_created(c: Connection, batch: _Batch, e: Event) -> None:
    p = e.payload
    taken = c.execute(select(logged_models.c.model_id).where(logged_models.c.model_id == p["model_id"])).first() is not None
    rules.logged_model_id_free(p["model_id"], taken)
    c.execute(
        insert(logged_models).values(
            model_id=p["model_id"], experiment_id=p["experiment_id"], name=p["name"], artifact_location=p["artifact_location"],
            status="LOGGED_MODEL_PENDING", status_message=None, model_type=p["model_type"], source_run_id=p["source_run_id"],
            creation_time=p["creation_time"], last_updated_time=p["creation_time"], lifecycle_stage="active",
        )
    )
    upsert(c, logged_model_tags, [{"model_id": p["model_id"], **t} for t in p["tags"]], ["model_id", "key"])
    upsert(c, logged_model_params, [{"model_id": p["model_id"], **x} for x in p["params"]], ["model_id", "key"])


def _update_logged_model(c: Connection, e: Event, **values: Any) -> None:
    done = c.execute(update(logged_models).where(logged_models.c.model_id == e.payload["model_id"]).values(last_updated_time=e.time, **values))
    rules.logged_model_exists(e.payload["model_id"], done.rowcount > 0)


def logged_model_tags_set(c: Connection, batch: _Batch, e: Event) -> None:
    _update_logged_model(c, e)
    upsert(c, logged_model_tags, [{"model_id": e.payload["model_id"], **t} for t in e.payload["tags"]], ["model_id", "key"])


def logged_model_tag_deleted(c: Connection, batch: _Batch, e: Event) -> None:
    c.execute(delete(logged_model_tags).where(and_(logged_model_tags.c.model_id == e.payload["model_id"], logged_model_tags.c.key == e.payload["key"])))


def logged_model_artifact_logged(c: Connection, batch: _Batch, e: Event) -> None:
    p = e.payload
    row = {"model_id": p["model_id"], "path": p["path"], "size": p["size"], "sha256": p["sha256"], "logged_time": e.time}
    upsert(c, logged_model_artifacts, [row], ["model_id", "path"])


def logged_model_params_logged(c: Connection, batch: _Batch, e: Event) -> None:
    _update_logged_model(c, e)
    upsert(c, logged_model_params, [{"model_id": e.payload["model_id"], **x} for x in e.payload["params"]], ["model_id", "key"])


def outputs_logged(c: Connection, batch: _Batch, e: Event) -> None:
    upsert(c, run_outputs, [{"run_id": e.payload["run_id"], **m} for m in e.payload["models"]], ["run_id", "model_id"])



# -- model registry ---------------------------------------------------------------------------
#
# A model's events share its name as key, so they come in order, except across a rename:
# the events after it are keyed by the new name, maybe in another partition, which a
# rebuild may read first. Such an event (its model not there yet) is parked, in arrival
# order, and applied when a creation or rename brings the name. On the live path a write
# waits until its event is applied, so the next one comes after it and nothing parks.
# A rename onto a name that was used before (a model since deleted, or renamed away)
# carries, as causation_id, the last event about that name: a replay that reads the
# rename first parks it until that event is applied.


# Statements every registry event runs, built once (building one cost more than running it).
_MODEL_ROW = select(registered_models.c.name).where(registered_models.c.name == bindparam("name"))
_ACTIVE_VERSION = select(model_versions.c.version).where(
    model_versions.c.name == bindparam("name"), model_versions.c.version == bindparam("number"), model_versions.c.lifecycle_stage == "active"
)
_TOUCH_MODEL = update(registered_models).where(registered_models.c.name == bindparam("model")).values(last_updated_time=bindparam("when"))


def _model_row(c: Connection, name: str) -> Any:
    return c.execute(_MODEL_ROW, {"name": name}).first()


class _Wait(Exception):
    """The event must wait (parked under ``name``) for another one to be applied."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _park(c: Connection, e: Event, name: str | None = None) -> None:
    seq = c.execute(select(func.max(registry_parked.c.seq))).scalar() or 0
    record = json.dumps(dataclasses.asdict(e))
    c.execute(insert(registry_parked).values(event_id=e.event_id, name=name or e.payload["name"], seq=seq + 1, event=record))


def _last_about(c: Connection, name: str) -> str | None:
    """The last event applied about a name. (Not applied_events: it takes a whole batch
    in before applying any of it.) Between that event and a rename onto the name nothing
    else about the name can apply, so "is it the last" is "has it been applied"."""
    return c.execute(select(registry_names.c.event_id).where(registry_names.c.name == name)).scalar()


def _note(c: Connection, name: str, e: Event) -> None:
    upsert(c, registry_names, [{"name": name, "event_id": e.event_id}], ["name"])


def _unpark(c: Connection, batch: _Batch, name: str) -> None:
    rows = c.execute(select(registry_parked).where(registry_parked.c.name == name).order_by(registry_parked.c.seq)).all()
    if not rows:
        return
    c.execute(delete(registry_parked).where(registry_parked.c.event_id.in_([row.event_id for row in rows])))
    for row in rows:
        event = Event(**json.loads(row.event))
        savepoint = c.begin_nested()
        try:
            APPLY[event.type](c, batch, event)
            savepoint.commit()
        except Rejected as why:
            savepoint.rollback()
            logger.warning("parked %s %s no longer applies: %s", event.type, event.event_id, why)


def _of_a_model(apply: Apply, notes: bool = True) -> Apply:
    """Apply an event about an existing model; park it if the model is not there yet.
    (``notes=False``: the event notes itself as the name's last, before it unparks others.)"""

    def checked(c: Connection, batch: _Batch, e: Event) -> None:
        if _model_row(c, e.payload["name"]) is None:
            _park(c, e)
            return
        try:
            apply(c, batch, e)
        except _Wait as wait:
            _park(c, e, wait.name)
            return
        if notes:
            _note(c, e.payload["name"], e)

    return checked


def _touch_model(c: Connection, name: str, when: int) -> None:
    c.execute(_TOUCH_MODEL, {"model": name, "when": when})


def registered_model_created(c: Connection, batch: _Batch, e: Event) -> None:
    p = e.payload
    rules.registered_model_name_free(p["name"], _model_row(c, p["name"]) is not None)
    c.execute(
        insert(registered_models).values(
            name=p["name"], description=p["description"], user_id=e.actor, creation_time=p["creation_time"],
            last_updated_time=p["creation_time"], event_id=e.event_id,
        )
    )
    upsert(c, registered_model_tags, [{"name": p["name"], **t} for t in p["tags"]], ["name", "key"])
    _note(c, p["name"], e)
    _unpark(c, batch, p["name"])


def registered_model_renamed(c: Connection, batch: _Batch, e: Event) -> None:
    old, new = e.payload["name"], e.payload["new_name"]
    if e.causation_id and _last_about(c, new) != e.causation_id:
        raise _Wait(new)  # the new name's earlier history comes first
    rules.registered_model_name_free(new, _model_row(c, new) is not None)
    c.execute(update(registered_models).where(registered_models.c.name == old).values(name=new, event_id=e.event_id, last_updated_time=e.time))
    for table in (registered_model_tags, model_versions, model_version_tags, model_version_files, registered_model_aliases):
        c.execute(update(table).where(table.c.name == old).values(name=new))
    _note(c, old, e)
    _note(c, new, e)
    _unpark(c, batch, old)  # a rename onto the old name may wait for this one
    _unpark(c, batch, new)


def registered_model_deleted(c: Connection, batch: _Batch, e: Event) -> None:
    name = e.payload["name"]
    for table in (registered_model_aliases, model_version_tags, model_version_files, model_versions, registered_model_tags, registered_models):
        c.execute(delete(table).where(table.c.name == name))
    _note(c, name, e)
    _unpark(c, batch, name)  # a rename onto this name may wait for the deletion


def registered_model_updated(c: Connection, batch: _Batch, e: Event) -> None:
    c.execute(
        update(registered_models).where(registered_models.c.name == e.payload["name"])
        .values(description=e.payload["description"], last_updated_time=e.time)
    )


def registered_model_tag_set(c: Connection, batch: _Batch, e: Event) -> None:
    p = e.payload
    upsert(c, registered_model_tags, [{"name": p["name"], "key": p["key"], "value": p["value"]}], ["name", "key"])


def registered_model_tag_deleted(c: Connection, batch: _Batch, e: Event) -> None:
    p = e.payload
    c.execute(delete(registered_model_tags).where(registered_model_tags.c.name == p["name"], registered_model_tags.c.key == p["key"]))


def _version_is(c: Connection, e: Event) -> None:
    """Rejected if the event's version is not there (or was deleted)."""
    name, number = e.payload["name"], int(e.payload["version"])
    row = c.execute(_ACTIVE_VERSION, {"name": name, "number": number}).first()
    rules.model_version_exists(name, number, row is not None)


def _version_key(e: Event) -> Any:
    return and_(model_versions.c.name == e.payload["name"], model_versions.c.version == int(e.payload["version"]))


def model_version_created(c: Connection, batch: _Batch, e: Event) -> None:
    p = e.payload
    number = int(p["version"])
    taken = c.execute(select(model_versions.c.event_id).where(model_versions.c.name == p["name"], model_versions.c.version == number)).first()
    rules.model_version_free(p["name"], number, taken is not None)  # a writer lost a race
    c.execute(
        insert(model_versions).values(
            name=p["name"], version=number, description=p["description"], user_id=e.actor, current_stage="None",
            source=p["source"], run_id=p["run_id"], run_link=p["run_link"], model_id=p.get("model_id"), lifecycle_stage="active",
            creation_time=p["creation_time"], last_updated_time=p["creation_time"], event_id=e.event_id,
        )
    )
    upsert(c, model_version_tags, [{"name": p["name"], "version": number, **t} for t in p["tags"]], ["name", "version", "key"])
    pinned = [{"name": p["name"], "version": number, **f} for f in p.get("files", [])]  # v1 events pinned nothing
    if pinned:
        c.execute(insert(model_version_files), pinned)
    _touch_model(c, p["name"], e.time)


def _update_version(**values: Any) -> Apply:
    def apply(c: Connection, batch: _Batch, e: Event) -> None:
        _version_is(c, e)
        c.execute(update(model_versions).where(_version_key(e)).values(last_updated_time=e.time, **{k: f(e.payload) for k, f in values.items()}))

    return apply


def model_version_deleted(c: Connection, batch: _Batch, e: Event) -> None:
    name, number = e.payload["name"], int(e.payload["version"])
    _version_is(c, e)
    c.execute(update(model_versions).where(_version_key(e)).values(lifecycle_stage="deleted", last_updated_time=e.time))
    c.execute(delete(registered_model_aliases).where(registered_model_aliases.c.name == name, registered_model_aliases.c.version == number))
    _touch_model(c, name, e.time)


def model_version_tag_set(c: Connection, batch: _Batch, e: Event) -> None:
    p = e.payload
    _version_is(c, e)
    upsert(c, model_version_tags, [{"name": p["name"], "version": int(p["version"]), "key": p["key"], "value": p["value"]}], ["name", "version", "key"])


def model_version_tag_deleted(c: Connection, batch: _Batch, e: Event) -> None:
    p = e.payload
    c.execute(
        delete(model_version_tags).where(
            model_version_tags.c.name == p["name"], model_version_tags.c.version == int(p["version"]), model_version_tags.c.key == p["key"]
        )
    )


def model_version_alias_set(c: Connection, batch: _Batch, e: Event) -> None:
    p = e.payload
    _version_is(c, e)
    upsert(c, registered_model_aliases, [{"name": p["name"], "alias": p["alias"], "version": int(p["version"])}], ["name", "alias"])
    _touch_model(c, p["name"], e.time)


def model_version_alias_deleted(c: Connection, batch: _Batch, e: Event) -> None:
    p = e.payload
    c.execute(delete(registered_model_aliases).where(registered_model_aliases.c.name == p["name"], registered_model_aliases.c.alias == p["alias"]))
    _touch_model(c, p["name"], e.time)


APPLY: dict[str, Apply] = {
    "experiment.created": experiment_created,
    "experiment.renamed": experiment_renamed,
    "experiment.deleted": lambda c, b, e: _update_experiment(c, e, lifecycle_stage="deleted"),
    "experiment.restored": lambda c, b, e: _update_experiment(c, e, lifecycle_stage="active"),
    "experiment.tag_set": experiment_tag_set,
    "experiment.tag_deleted": experiment_tag_deleted,
    "run.created": run_created,
    "run.finished": run_ended("FINISHED"),
    "run.failed": run_ended("FAILED"),
    "run.killed": run_ended("KILLED"),
    "run.crashed": run_crashed,
    "run.alive": run_alive,
    "run.stalled": run_stalled,
    "run.stall_ended": run_stall_ended,
    "run.renamed": run_renamed,
    "run.deleted": run_staged("deleted"),
    "run.restored": run_staged("active"),
    "run.params_logged": params_logged,
    "run.metrics_logged": metrics_logged,
    "run.tags_set": tags_set,
    "run.tag_deleted": tag_deleted,
    "run.artifact_logged": artifact_logged,
    "run.inputs_logged": inputs_logged,
    "run.outputs_logged": outputs_logged,
    "run.project_recorded": project_recorded,
    "run.stop_requested": stop_requested,
    "logged_model.created": logged_model_created,
    "logged_model.finalized": lambda c, b, e: _update_logged_model(c, e, status=e.payload["status"], status_message=e.payload["status_message"]),
    "logged_model.tags_set": logged_model_tags_set,
    "logged_model.tag_deleted": logged_model_tag_deleted,
    "logged_model.params_logged": logged_model_params_logged,
    "logged_model.artifact_logged": logged_model_artifact_logged,
    "logged_model.deleted": lambda c, b, e: _update_logged_model(c, e, lifecycle_stage="deleted"),
    "registered_model.created": registered_model_created,
    "registered_model.renamed": _of_a_model(registered_model_renamed, notes=False),
    "registered_model.updated": _of_a_model(registered_model_updated),
    "registered_model.deleted": _of_a_model(registered_model_deleted, notes=False),
    "registered_model.tag_set": _of_a_model(registered_model_tag_set),
    "registered_model.tag_deleted": _of_a_model(registered_model_tag_deleted),
    "model_version.created": _of_a_model(model_version_created),
    "model_version.updated": _of_a_model(_update_version(description=lambda p: p["description"])),
    "model_version.deleted": _of_a_model(model_version_deleted),
    "model_version.stage_transitioned": _of_a_model(_update_version(current_stage=lambda p: p["stage"])),
    "model_version.tag_set": _of_a_model(model_version_tag_set),
    "model_version.tag_deleted": _of_a_model(model_version_tag_deleted),
    "model_version.alias_set": _of_a_model(model_version_alias_set),
    "model_version.alias_deleted": _of_a_model(model_version_alias_deleted),
    **access.APPLY,  # users, tokens, permissions (eventflow/auth/projection.py)
    **jobs.APPLY,  # job definitions and their runs (eventflow/jobs/projection.py)
}


class Projector(Subscriber):
    """Applies tracking and registry events to the views. Other families pass through
    (their own views come with their features) but their offsets advance all the same."""

    keeps_offsets = True

    offsets_may_go_back = True  # they commit with its effects, in the views

    def __init__(self, engine: Engine, name: str = PROJECTOR, progress: Progress | None = None):
        """``progress`` hears of each committed batch, to wake this process's waiting writers."""
        self.engine = engine
        self.group = name
        self.progress = progress

    def stored_offsets(self, tps: set[TopicPartition]) -> dict[TopicPartition, int]:
        return stored_offsets(self.engine, self.group, tps)

    def apply(self, deliveries: list[Delivery], spans: dict[TopicPartition, tuple[int, int]]) -> list[tuple[Delivery, str]]:
        try:
            refused = self._apply(deliveries, spans, careful=False)
        except Rejected:
            # An event breaks a rule (rare: the API checks first). Redo the batch with a
            # savepoint around each event, so that one alone is refused.
            refused = self._apply(deliveries, spans, careful=True)
        if self.progress is not None:
            self.progress.advance(
                {tp: end for tp, (_, end) in spans.items()}, {d.event.event_id: (why.error_code, why.message) for d, why in refused}
            )
        return [(delivery, why.message) for delivery, why in refused]

    def _apply(self, deliveries: list[Delivery], spans: dict[TopicPartition, tuple[int, int]], careful: bool) -> list[tuple[Delivery, Rejected]]:
        """One transaction for the batch. Not ``careful``: no savepoints (two round trips
        per event saved), and a ``Rejected`` rolls the whole batch back. ``careful``: each
        refused event is undone alone and its refusal stored in the same transaction."""
        rejected: list[tuple[Delivery, Rejected]] = []
        with self.engine.begin() as connection:
            self._fence(connection, spans)
            fresh = self._first_seen(connection, deliveries)
            batch = _Batch()
            for delivery in fresh:
                apply = APPLY.get(delivery.event.type)
                if apply is None:
                    continue
                if not careful:
                    apply(connection, batch, delivery.event)
                    continue
                # Metric points are only buffered here (after the checks): nothing to undo.
                savepoint = None if delivery.event.type == "run.metrics_logged" else connection.begin_nested()
                try:
                    apply(connection, batch, delivery.event)
                    if savepoint is not None:
                        savepoint.commit()
                except Rejected as why:
                    if savepoint is not None:
                        savepoint.rollback()
                    rejected.append((delivery, why))
            batch.write(connection)
            entity_index.record(connection, deliveries)  # entity → positions, for the audit
            rows = [{"event_id": d.event.event_id, "error_code": why.error_code, "message": why.message} for d, why in rejected]
            insert_new(connection, refused_events, rows)
        return rejected

    def _first_seen(self, connection: Connection, deliveries: list[Delivery]) -> list[Delivery]:
        """The deliveries whose event id was never applied (a retried append repeats one)."""
        tracked = [d for d in deliveries if d.event.type in APPLY]
        if not tracked:
            return []
        ids = list(dict.fromkeys(d.event.event_id for d in tracked))
        new = insert_new(connection, applied_events, [{"event_id": i} for i in ids], "event_id")
        fresh = []
        for delivery in tracked:
            if delivery.event.event_id in new:
                new.discard(delivery.event.event_id)  # the first of two copies in one batch
                fresh.append(delivery)
        return fresh

    def _fence(self, connection: Connection, spans: dict[TopicPartition, tuple[int, int]]) -> None:
        """Move each partition's stored offset from the batch's start to its end, or refuse."""
        advance(connection, self.group, spans)
