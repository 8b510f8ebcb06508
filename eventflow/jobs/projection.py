"""How the projector applies ``job.*`` events to the jobs views (eventflow/jobs/tables.py)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from eventflow.events import Event
from eventflow.jobs.commands import DEFINITION_FIELDS
from eventflow.jobs.runs import RUN_EVENTS, JobRun
from eventflow.jobs.tables import job_runs, jobs
from eventflow.views.db import insert_new

_JSON = ("parameters", "on_events")


def _definition(p: dict[str, Any]) -> dict[str, Any]:
    return {k: json.dumps(p[k], sort_keys=True) if k in _JSON else p[k] for k in DEFINITION_FIELDS}


def job_created(c: Connection, batch: Any, e: Event) -> None:
    row = {"job_id": e.payload["job_id"], **_definition(e.payload), "paused": False, "deleted": False,
           "created_time": e.time, "created_by": e.actor, "updated_time": e.time}
    insert_new(c, jobs, [row], "job_id")


def job_updated(c: Connection, batch: Any, e: Event) -> None:
    values = {**_definition(e.payload), "paused": e.payload["paused"], "updated_time": e.time}
    c.execute(update(jobs).where(jobs.c.job_id == e.payload["job_id"], jobs.c.deleted.is_(False)).values(**values))


def job_deleted(c: Connection, batch: Any, e: Event) -> None:
    c.execute(update(jobs).where(jobs.c.job_id == e.payload["job_id"]).values(deleted=True, updated_time=e.time))


_FOLDED = ("status", "attempt", "agent_id", "lease_ms", "renewed", "available", "run_id", "exit_code", "detail", "cancel_requested")


def job_triggered(c: Connection, batch: Any, e: Event) -> None:
    p = e.payload
    run = JobRun.triggered(e)
    insert_new(c, job_runs, [{"trigger_id": p["trigger_id"], "job_id": p["job_id"], "reason": p["reason"],
                              "cause_event_id": p.get("cause_event_id"), "tick": p.get("tick"),
                              "parameters": json.dumps(p["parameters"], sort_keys=True), "triggered_time": e.time,
                              **{k: getattr(run, k) for k in _FOLDED}, "updated_time": e.time}], "trigger_id")


def job_run_event(c: Connection, batch: Any, e: Event) -> None:
    """Claims, starts, ends: folded by the rules every agent folds them by."""
    row = c.execute(select(job_runs).where(job_runs.c.trigger_id == e.payload["trigger_id"])).first()
    if row is None:
        return
    run = JobRun(row.trigger_id, row.job_id, json.loads(row.parameters), row.cause_event_id,
                 **{k: getattr(row, k) for k in _FOLDED})
    delay = c.execute(select(jobs.c.retry_delay).where(jobs.c.job_id == row.job_id)).scalar() or 0.0
    if run.apply(e, delay):
        values = {k: getattr(run, k) for k in _FOLDED}
        c.execute(update(job_runs).where(job_runs.c.trigger_id == row.trigger_id).values(**values, updated_time=e.time))


APPLY = {
    "job.created": job_created,
    "job.updated": job_updated,
    "job.deleted": job_deleted,
    "job.triggered": job_triggered,
    **dict.fromkeys(RUN_EVENTS, job_run_event),
}
