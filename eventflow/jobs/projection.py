"""How the projector applies ``job.*`` events to the jobs views (eventflow/jobs/tables.py)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from eventflow.events import Event
from eventflow.jobs.commands import DEFINITION_FIELDS
from eventflow.jobs.runs import ENDED, RUN_EVENTS, JobRun
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


_FOLDED = ("status", "attempt", "agent_id", "lease_ms", "renewed", "available", "run_id", "exit_code", "detail", "cancel_requested")


def _fold(c: Connection, row: Any, e: Event, retry_delay_s: float, job_deleted: bool) -> None:
    """``e`` folded into the run in ``row`` (eventflow/jobs/runs.py), written back if it changed it."""
    run = JobRun(row.trigger_id, row.job_id, json.loads(row.parameters), row.cause_event_id,
                 **{k: getattr(row, k) for k in _FOLDED})
    if run.apply(e, retry_delay_s, job_deleted):
        values = {k: getattr(run, k) for k in _FOLDED}
        c.execute(update(job_runs).where(job_runs.c.trigger_id == row.trigger_id).values(**values, updated_time=e.time))


def job_deleted(c: Connection, batch: Any, e: Event) -> None:
    """The job, and its runs not yet ended: the fold decides what the deletion does to each."""
    c.execute(update(jobs).where(jobs.c.job_id == e.payload["job_id"]).values(deleted=True, updated_time=e.time))
    for row in c.execute(select(job_runs).where(job_runs.c.job_id == e.payload["job_id"], job_runs.c.status.not_in(ENDED))).all():
        _fold(c, row, e, 0.0, True)


def job_triggered(c: Connection, batch: Any, e: Event) -> None:
    p = e.payload
    deleted = c.execute(select(jobs.c.deleted).where(jobs.c.job_id == p["job_id"])).scalar()
    run = JobRun.triggered(e, bool(deleted))
    insert_new(c, job_runs, [{"trigger_id": p["trigger_id"], "job_id": p["job_id"], "reason": p["reason"],
                              "cause_event_id": p.get("cause_event_id"), "tick": p.get("tick"),
                              "parameters": json.dumps(p["parameters"], sort_keys=True), "triggered_time": e.time,
                              **{k: getattr(run, k) for k in _FOLDED}, "updated_time": e.time}], "trigger_id")


def job_run_event(c: Connection, batch: Any, e: Event) -> None:
    """Claims, starts, ends: folded by the rules every agent folds them by."""
    row = c.execute(select(job_runs).where(job_runs.c.trigger_id == e.payload["trigger_id"])).first()
    if row is None:
        return
    job = c.execute(select(jobs.c.retry_delay, jobs.c.deleted).where(jobs.c.job_id == row.job_id)).first()
    _fold(c, row, e, (job.retry_delay if job else 0.0) or 0.0, bool(job and job.deleted))


APPLY = {
    "job.created": job_created,
    "job.updated": job_updated,
    "job.deleted": job_deleted,
    "job.triggered": job_triggered,
    **dict.fromkeys(RUN_EVENTS, job_run_event),
}
