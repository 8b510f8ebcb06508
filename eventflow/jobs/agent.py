"""``eventflow agent``: claims triggered job runs and runs them as project runs.

Every agent reads the whole jobs topic in log order and folds it (eventflow/jobs/runs.py),
so all agents agree on each run's state. To run one, an agent appends ``job.claimed`` for
its attempt and waits to read it back: only the first claim of an attempt in log order
wins, so exactly one agent runs each attempt, however many claim it. The winner starts the
project (eventflow.projects, the run tagged with the job, the trigger and the causing
event), appends ``job.started``, renews its claim every third of its lease while the run
lasts, kills it at the job's timeout or on ``jobs cancel``, and appends ``job.succeeded``
or ``job.failed`` (its ``will_retry`` asked of the fold, ``JobRun.will_retry``: while
retries are left, not after a cancel or the job's deletion). An agent that sees another
agent's claim unrenewed past its lease (it was killed, its machine lost) appends the
attempt's ``job.failed`` — with an id derived from the attempt, so two agents seeing it
append one event — and the run is retried or failed as its job says; the agent that lost
its claim kills what it was running.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eventflow.codec import decode
from eventflow.events import FAMILIES, Event, now_ms
from eventflow.jobs.runs import ACTIVE, CLAIMED, PENDING, RUN_EVENTS, JobRun
from eventflow.log import Log
from eventflow.log.event_log import EventLog

logger = logging.getLogger(__name__)
JOBS_TOPIC = FAMILIES["job"].topic
_IDS = uuid.UUID("5d0b6a2e-81f4-4c3e-b7a9-2e6f0c4d9b17")
TAG_JOB, TAG_TRIGGER, TAG_CAUSE, TAG_ATTEMPT = "eventflow.job_id", "eventflow.job_trigger_id", "eventflow.job_cause_event_id", "eventflow.job_attempt"


def agent_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class _Mine:
    """An attempt this agent won."""

    attempt: int
    started: float = field(default_factory=time.monotonic)
    submitted: Any = None  # the SubmittedRun, once launched
    failed_to_start: str | None = None
    launching: bool = True
    renewed: float = field(default_factory=time.monotonic)
    ended: bool = False


class Agent:
    def __init__(self, log: Log, tracking_uri: str, *, queue: str = "default", max_parallel: int = 1, lease_seconds: float = 30.0,
                 agent_id: str | None = None, clock: Callable[[], int] = now_ms,
                 launch: Callable[..., Any] | None = None):
        self.log = log
        self.writer = EventLog(log)
        self.tracking_uri = tracking_uri
        self.queue = queue
        self.max_parallel = max_parallel
        self.lease = lease_seconds
        self.id = agent_id or agent_name()
        self.clock = clock
        self._launch = launch or _launch_project
        self.jobs: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, JobRun] = {}
        self._seen: set[str] = set()
        self._claimed: set[tuple[str, int]] = set()
        self._said: set[str] = set()  # ids of the deterministic events this agent appended
        self.mine: dict[str, _Mine] = {}
        self._lock = threading.Lock()
        self._consumer = log.consumer([JOBS_TOPIC])

    # -- reading ---------------------------------------------------------------------------

    def read(self, timeout: float = 0.1) -> int:
        records = self._consumer.poll(timeout, 1000)
        for record in records:
            if record.error is not None:
                continue
            try:
                event = decode(record.value)
            except Exception:  # dead-lettered by the consumers; an agent only skips it
                continue
            self.fold(event)
        return len(records)

    def fold(self, event: Event) -> None:
        if event.event_id in self._seen:
            return  # a repeated append (a scheduler's replay, two agents expiring one claim)
        self._seen.add(event.event_id)
        p = event.payload
        if event.type in ("job.created", "job.updated"):
            self.jobs[p["job_id"]] = {**p, "deleted": False}
        elif event.type == "job.deleted":
            if p["job_id"] in self.jobs:
                self.jobs[p["job_id"]]["deleted"] = True
            for run in self.runs.values():  # the fold decides what the deletion does to each run of the job
                if run.job_id == p["job_id"]:
                    run.apply(event, job_deleted=True)
        elif event.type == "job.triggered":
            if p["trigger_id"] not in self.runs:
                self.runs[p["trigger_id"]] = JobRun.triggered(event, bool(self.jobs.get(p["job_id"], {}).get("deleted")))
        elif event.type in RUN_EVENTS and p["trigger_id"] in self.runs:
            job = self.jobs.get(p["job_id"], {})
            self.runs[p["trigger_id"]].apply(event, job.get("retry_delay") or 0.0, bool(job.get("deleted")))

    # -- acting ----------------------------------------------------------------------------

    def step(self, timeout: float = 0.1) -> None:
        self.read(timeout)
        now = self.clock()
        self._follow_mine()
        self._expire_others(now)
        self._claim(now)

    def _append(self, event_type: str, payload: dict[str, Any], event_id: str | None = None) -> None:
        if event_id is not None:
            if event_id in self._said:
                return
            self._said.add(event_id)
        event = Event(event_type, payload, **({"event_id": event_id} if event_id else {}), actor=f"eventflow-agent {self.id}")
        self.writer.append(event)

    def _base(self, run: JobRun, attempt: int | None = None) -> dict[str, Any]:
        return {"job_id": run.job_id, "trigger_id": run.trigger_id, "attempt": attempt or run.attempt}

    def _will_retry(self, run: JobRun) -> bool:
        """What the fold will do with this run's failure, the job as this agent folded it."""
        job = self.jobs.get(run.job_id, {})
        return run.will_retry(int(job.get("retries") or 0), bool(job.get("deleted")))

    def _fail(self, run: JobRun, attempt: int, reason: str, *, exit_code: int | None = None, run_id: str | None = None,
              agent_id: str | None = None, event_id: str | None = None) -> None:
        self._append("job.failed", {**self._base(run, attempt), "agent_id": agent_id, "run_id": run_id, "exit_code": exit_code,
                                    "cause_event_id": run.cause_event_id, "reason": reason, "will_retry": self._will_retry(run)},
                     event_id)

    def _claim(self, now: int) -> None:
        busy = len(self.mine)
        for run in sorted(self.runs.values(), key=lambda r: r.available):
            if busy >= self.max_parallel:
                return
            if run.status != PENDING or run.available > now or (run.trigger_id, run.attempt) in self._claimed:
                continue
            job = self.jobs.get(run.job_id)
            if job is None or job.get("deleted") or (job.get("queue") or "default") != self.queue:
                continue
            active = sum(1 for r in self.runs.values() if r.job_id == run.job_id and r.status in ACTIVE)
            if active >= (job.get("max_concurrent") or 1):
                if job.get("on_overlap") == "skip" and run.attempt == 1:
                    self._append("job.skipped", {"job_id": run.job_id, "trigger_id": run.trigger_id,
                                                 "reason": f"{active} run(s) of the job active (max_concurrent {job.get('max_concurrent') or 1})"},
                                 str(uuid.uuid5(_IDS, f"{run.trigger_id}/skipped")))
                continue  # queued: claimed once a run of the job ends
            self._claimed.add((run.trigger_id, run.attempt))
            self._append("job.claimed", {**self._base(run), "agent_id": self.id, "lease_seconds": self.lease},
                         str(uuid.uuid5(_IDS, f"{run.trigger_id}/{run.attempt}/claim/{self.id}")))
            busy += 1

    def _expire_others(self, now: int) -> None:
        for run in self.runs.values():
            if run.agent_id != self.id and run.expired(now):
                silent = (now - run.renewed) / 1000
                self._fail(run, run.attempt, f"the claim expired: agent {run.agent_id} gave no sign of life for {silent:.0f} s",
                           run_id=run.run_id, agent_id=run.agent_id,
                           event_id=str(uuid.uuid5(_IDS, f"{run.trigger_id}/{run.attempt}/expired")))

    def _follow_mine(self) -> None:
        for run in self.runs.values():
            if run.status == CLAIMED and run.agent_id == self.id and run.trigger_id not in self.mine:
                self.mine[run.trigger_id] = mine = _Mine(run.attempt)
                threading.Thread(target=self._start, args=(run, mine), name=f"eventflow-job-{run.trigger_id[:8]}", daemon=True).start()
        for trigger_id, mine in list(self.mine.items()):
            run = self.runs[trigger_id]
            lost = run.attempt != mine.attempt or run.status not in ACTIVE or run.agent_id != self.id
            with self._lock:
                if mine.launching:
                    if lost:
                        continue  # killed once launched
                    self._renew(run, mine)
                    continue
            if mine.failed_to_start is not None:
                if not lost:
                    self._fail(run, mine.attempt, f"the project could not start: {mine.failed_to_start}", agent_id=self.id)
                del self.mine[trigger_id]
                continue
            submitted = mine.submitted
            if lost or run.cancel_requested:
                submitted.cancel()
                if not lost:
                    self._fail(run, mine.attempt, "cancelled", run_id=submitted.run_id, agent_id=self.id)  # cancel_requested: no retry
                del self.mine[trigger_id]
                continue
            timeout = self.jobs.get(run.job_id, {}).get("timeout")
            if timeout and time.monotonic() - mine.started > timeout and submitted.get_status() == "RUNNING":
                submitted.cancel()
                self._fail(run, mine.attempt, f"timed out after {timeout:g} s (killed)", run_id=submitted.run_id, agent_id=self.id)
                del self.mine[trigger_id]
                continue
            status = submitted.get_status()
            if status == "RUNNING":
                self._renew(run, mine)
                continue
            try:
                submitted.wait(5)
            except TimeoutError:
                continue
            code = submitted.returncode if submitted.returncode is not None else -1
            base = {**self._base(run, mine.attempt), "agent_id": self.id, "run_id": submitted.run_id, "cause_event_id": run.cause_event_id}
            if status == "FINISHED":
                self._append("job.succeeded", {**base, "exit_code": code})
            else:
                self._fail(run, mine.attempt, f"the run ended {status} (exit code {code})", exit_code=code, run_id=submitted.run_id,
                           agent_id=self.id)
            del self.mine[trigger_id]

    def _renew(self, run: JobRun, mine: _Mine) -> None:
        if time.monotonic() - mine.renewed >= self.lease / 3:
            mine.renewed = time.monotonic()
            self._append("job.claim_renewed", {**self._base(run, mine.attempt), "agent_id": self.id})

    def _start(self, run: JobRun, mine: _Mine) -> None:
        job = self.jobs[run.job_id]
        tags = {TAG_JOB: run.job_id, TAG_TRIGGER: run.trigger_id, TAG_ATTEMPT: str(mine.attempt),
                **({TAG_CAUSE: run.cause_event_id} if run.cause_event_id else {})}
        try:
            submitted = self._launch(job, run, tags, self.tracking_uri)
        except BaseException as error:  # a bad project, an environment that does not build
            with self._lock:
                mine.failed_to_start, mine.launching = str(error) or type(error).__name__, False
            return
        self._append("job.started", {**self._base(run, mine.attempt), "agent_id": self.id, "run_id": submitted.run_id,
                                     "cause_event_id": run.cause_event_id})
        with self._lock:
            mine.submitted, mine.launching, mine.started = submitted, False, time.monotonic()

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    self.step()
                except Exception:  # the log may be away for a moment: the next step
                    logger.exception("agent: step failed")
                    stop.wait(1.0)
        finally:
            for mine in self.mine.values():
                if mine.submitted is not None:
                    mine.submitted.cancel()
            self._consumer.close()


def _launch_project(job: dict[str, Any], run: JobRun, tags: dict[str, str], tracking_uri: str) -> Any:
    from eventflow.projects.launch import run as run_project

    return run_project(job["project_uri"], job.get("entry_point") or "main", dict(run.parameters), env_manager=job.get("env_manager"),
                       experiment_name=job.get("experiment_name"), run_name=f"{job['name']} #{run.trigger_id[:8]}", synchronous=False,
                       tracking_uri=tracking_uri, tags=tags, progress=lambda line: logger.info("agent: %s", line),
                       tethered=True)  # a killed agent's run ends with it: its retry never runs beside it
