"""``/api/2.0/eventflow/jobs``: jobs (a project and when it runs), their runs, run-now.

A job's creation and every change are events (``job.*``) answered only once both the
projector (the ``jobs`` view) and the scheduler (consumers/scheduler.py) have applied
them, so every event appended after the answer is judged by the job's triggers. A job
runs code on the agents' machines: with auth on, changing jobs is for administrators.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from eventflow.auth import context as access
from eventflow.auth import policy
from eventflow.consumers.scheduler import GROUP, triggered
from eventflow.events import Event, now_ms
from eventflow.jobs import commands, schedule
from eventflow.jobs.runs import ENDED
from eventflow.jobs.tables import job_runs, jobs
from eventflow.server.errors import ApiError, not_found
from eventflow.server.runtime import Runtime
from eventflow.server.webhooks_api import method_routes
from eventflow.views.positions import wait_for

BASE = "/api/2.0/eventflow/jobs"
_JSON = ("parameters", "on_events")


def _write_applied(runtime: Runtime, events: Sequence[Event]) -> None:
    positions = runtime.write(events)  # the projector has applied them
    if not wait_for(runtime.engine, positions, runtime.write_timeout, consumer=GROUP):
        raise ApiError(
            f"the change was appended to the log but the scheduler did not apply it within {runtime.write_timeout:.0f} s: "
            "is it running (eventflow consume scheduler, or eventflow server with its consumers)?",
            "TEMPORARILY_UNAVAILABLE",
        )


def _admin_only() -> None:
    principal = access.current()
    if principal is not None and not principal.admin:
        raise policy.denied("Permission denied: jobs run code on the agents' machines, so changing them is for administrators")


def job_dict(row: Any, now: int | None = None) -> dict[str, Any]:
    job = {k: json.loads(v) if k in _JSON else v for k, v in row._mapping.items() if k != "deleted"}
    job["next_run"] = (schedule.next_tick(row.cron, row.timezone, now or now_ms()) if row.cron and not row.paused else None)
    return job


def run_dict(row: Any) -> dict[str, Any]:
    return {**{k: v for k, v in row._mapping.items() if k != "parameters"}, "parameters": json.loads(row.parameters)}


def _row(runtime: Runtime, job_id: Any) -> Any:
    checked = commands.check_job_id(job_id)
    with runtime.engine.connect() as c:
        row = c.execute(select(jobs).where(jobs.c.job_id == checked, jobs.c.deleted.is_(False))).first()
    if row is None:
        raise not_found(f"No job with id {checked!r}")
    return row


def _current(runtime: Runtime, job_id: Any) -> dict[str, Any]:
    return job_dict(_row(runtime, job_id))


def create_job(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    _admin_only()
    event = commands.create_job({k: v for k, v in data.items() if v is not None})
    _write_applied(runtime, [event])
    return {"job": _current(runtime, event.payload["job_id"])}


def list_jobs(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    with runtime.engine.connect() as c:
        rows = c.execute(select(jobs).where(jobs.c.deleted.is_(False)).order_by(jobs.c.created_time)).all()
    now = now_ms()
    return {"jobs": [job_dict(r, now) for r in rows]}


def get_job(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    return {"job": _current(runtime, data.get("job_id"))}


def _change(runtime: Runtime, data: dict[str, Any], changes: dict[str, Any], paused: bool | None = None) -> dict[str, Any]:
    _admin_only()
    current = _current(runtime, data.get("job_id"))
    _write_applied(runtime, [commands.update_job(current, changes, paused)])
    return {"job": _current(runtime, current["job_id"])}


def update_job(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    return _change(runtime, data, {k: v for k, v in data.items() if k != "job_id"})


def delete_job(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    _admin_only()
    current = _current(runtime, data.get("job_id"))
    _write_applied(runtime, [commands.delete_job(current["job_id"])])
    return {}


def run_now(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    """A run of the job now (``parameters`` override the job's for this run only)."""
    _admin_only()
    job = _current(runtime, data.get("job_id"))
    parameters = {**job["parameters"], **commands.check_parameters(data.get("parameters"), False)}
    event = triggered(job["job_id"], "manual", f"manual/{uuid.uuid4().hex}", parameters)  # stamped with the caller
    runtime.write([event])
    return {"run": _runs(runtime, job["job_id"], trigger_id=event.payload["trigger_id"])[0]}


def cancel_run(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    """Ask to cancel a run of the job: a pending one never starts, its agent kills a running one."""
    _admin_only()
    job = _current(runtime, data.get("job_id"))
    trigger_id = data.get("trigger_id")
    found = _runs(runtime, job["job_id"], trigger_id=trigger_id if isinstance(trigger_id, str) else "")
    if not found:
        raise not_found(f"No run {trigger_id!r} of job {job['job_id']!r}")
    if found[0]["status"] in ENDED:
        raise ApiError(f"The run {trigger_id} already ended ({found[0]['status']})", "INVALID_STATE")
    runtime.write([Event("job.cancel_requested", {"job_id": job["job_id"], "trigger_id": trigger_id})])
    return {"run": _runs(runtime, job["job_id"], trigger_id=trigger_id)[0]}


def _runs(runtime: Runtime, job_id: str, trigger_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    query = select(job_runs).where(job_runs.c.job_id == job_id)
    if trigger_id is not None:
        query = query.where(job_runs.c.trigger_id == trigger_id)
    with runtime.engine.connect() as c:
        return [run_dict(r) for r in c.execute(query.order_by(job_runs.c.triggered_time.desc()).limit(limit))]


def list_runs(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    job_id = commands.check_job_id(data.get("job_id"))
    limit = commands.check_number(data.get("max_results"), "max_results", 1, 1000, 100, whole=True)
    return {"runs": _runs(runtime, job_id, limit=limit)}


ENDPOINTS = [
    ("GET", "", list_jobs),
    ("POST", "", create_job),
    ("GET", "/{job_id}", get_job),
    ("PATCH", "/{job_id}", update_job),
    ("DELETE", "/{job_id}", delete_job),
    ("POST", "/{job_id}/pause", lambda runtime, data: _change(runtime, data, {}, paused=True)),
    ("POST", "/{job_id}/resume", lambda runtime, data: _change(runtime, data, {}, paused=False)),
    ("POST", "/{job_id}/run", run_now),
    ("GET", "/{job_id}/runs", list_runs),
    ("POST", "/{job_id}/runs/{trigger_id}/cancel", cancel_run),
]


def routes(runtime: Runtime) -> list:
    return method_routes(runtime, ENDPOINTS, (BASE,))
