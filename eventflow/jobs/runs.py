"""A run of a job, folded from its events in log order — the one home of its rules.

Every agent folds the jobs topic the same way, and so does the projector (the ``job_runs``
view), so they agree on who runs what: the first ``job.claimed`` of an attempt in log
order wins it, later claims of that attempt lose; only the winner's ``job.started`` and
``job.succeeded`` count; a ``job.failed`` of the current attempt (from the agent, or from
any agent that saw the claim's lease run out) ends it, and, with ``will_retry``, opens the
next attempt after the job's retry delay. Whether a failure is retried is decided here
(``JobRun.will_retry``): the agent appending a ``job.failed`` asks it for the event's
``will_retry``, so the event (what webhooks of ``job.failed`` deliver) says what the fold
then does.

A job's deletion (``job.deleted``, on the job's key like every event of its runs, so in
log order with them) reaches every run of the job. It ends a run still PENDING — its
first attempt or a retry waiting its delay — as a cancel request does: CANCELLED, with
``cancel_requested`` set, so no claim of it wins. It does not stop a CLAIMED or RUNNING
run (only ``job.cancel_requested`` makes its agent kill it): that run goes on to its own
end, SUCCEEDED or FAILED as it comes out, but it is not retried once the job is deleted
(the fold is told so, as it is told the retry delay): its agent's ``job.failed`` says
``will_retry`` false, and the run ends FAILED.
A run triggered after the deletion in log order (a run-now or a trigger that raced it)
is CANCELLED as it is created.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eventflow.events import Event

PENDING, CLAIMED, RUNNING = "PENDING", "CLAIMED", "RUNNING"
SUCCEEDED, FAILED, SKIPPED, CANCELLED = "SUCCEEDED", "FAILED", "SKIPPED", "CANCELLED"
ACTIVE = (CLAIMED, RUNNING)
ENDED = (SUCCEEDED, FAILED, SKIPPED, CANCELLED)


@dataclass
class JobRun:
    trigger_id: str
    job_id: str
    parameters: dict[str, str] = field(default_factory=dict)
    cause_event_id: str | None = None
    status: str = PENDING
    attempt: int = 1
    agent_id: str | None = None
    lease_ms: int = 0
    renewed: int = 0  # the time of the winning claim's last sign of life
    available: int = 0  # when a pending attempt may be claimed (a retry waits its delay)
    run_id: str | None = None
    exit_code: int | None = None
    detail: str | None = None  # why it failed, was skipped or cancelled
    cancel_requested: bool = False

    @classmethod
    def triggered(cls, event: Event, job_deleted: bool = False) -> JobRun:
        """A new run; ``job_deleted``: its job's ``job.deleted`` came first in log order (a
        run-now or a trigger raced the deletion), so it ends at once as the deletion ends a
        pending run."""
        p = event.payload
        run = cls(p["trigger_id"], p["job_id"], dict(p["parameters"]), p.get("cause_event_id"), available=event.time)
        if job_deleted:
            run._job_deleted()
        return run

    def _current(self, p: dict[str, Any], owner: bool = True) -> bool:
        return p["attempt"] == self.attempt and (not owner or p.get("agent_id") == self.agent_id)

    def apply(self, event: Event, retry_delay_s: float = 0.0, job_deleted: bool = False) -> bool:
        """Fold one event of this run (or ``job.deleted`` of its job); True if it changed
        the run. ``retry_delay_s`` and ``job_deleted`` say what the job is at this point of
        the log."""
        p, kind = event.payload, event.type
        if kind == "job.claimed":
            if self.status != PENDING or not self._current(p, owner=False) or self.cancel_requested:
                return False  # a later claim of the attempt, or a stale one: it lost
            self.status, self.agent_id, self.renewed = CLAIMED, p["agent_id"], event.time
            self.lease_ms = int(p["lease_seconds"] * 1000)
        elif kind == "job.claim_renewed":
            if self.status not in ACTIVE or not self._current(p):
                return False
            self.renewed = max(self.renewed, event.time)
        elif kind == "job.started":
            if self.status != CLAIMED or not self._current(p):
                return False
            self.status, self.run_id, self.renewed = RUNNING, p["run_id"], max(self.renewed, event.time)
        elif kind == "job.succeeded":
            if self.status not in ACTIVE or not self._current(p):
                return False
            self.status, self.exit_code, self.run_id = SUCCEEDED, p["exit_code"], p["run_id"]
        elif kind == "job.failed":
            if self.status in ENDED or not self._current(p, owner=False):
                return False
            self.run_id, self.exit_code, self.detail = p.get("run_id") or self.run_id, p.get("exit_code"), p["reason"]
            if p["will_retry"] and self._may_retry(job_deleted):
                self.status, self.attempt, self.agent_id = PENDING, self.attempt + 1, None
                self.available = event.time + int(retry_delay_s * 1000)
            else:
                self.status = CANCELLED if self.cancel_requested else FAILED
                if job_deleted and not self.cancel_requested:  # 'not retried': the event said will_retry (it raced the deletion)
                    self.detail = f"{p['reason']}; {'not retried: ' if p['will_retry'] else ''}its job was deleted"
        elif kind == "job.skipped":
            if self.status != PENDING or self.attempt != 1:
                return False
            self.status, self.detail = SKIPPED, p["reason"]
        elif kind == "job.cancel_requested":
            if self.status in ENDED or self.cancel_requested:
                return False
            self.cancel_requested = True
            if self.status == PENDING:
                self.status, self.detail = CANCELLED, "cancelled before it started"
        elif kind == "job.deleted":
            if p["job_id"] != self.job_id:
                return False
            return self._job_deleted()
        else:
            return False
        return True

    def will_retry(self, retries: int, job_deleted: bool = False) -> bool:
        """Whether the current attempt, failing now, is tried again — the one home of the
        rule: while the job's ``retries`` last, unless a cancel was requested or the job
        was deleted. The agent that appends a ``job.failed`` asks it, with the job as it
        folded it, for the event's ``will_retry``. The fold, which is not told the job's
        retries, takes the count as that event recorded it and applies the rest
        (``_may_retry``) at the event's place in the log, so only a cancel or deletion
        appended between the agent's read and its append can overrule the event."""
        return self.attempt <= retries and self._may_retry(job_deleted)

    def _may_retry(self, job_deleted: bool) -> bool:
        return not self.cancel_requested and not job_deleted

    def _job_deleted(self) -> bool:
        if self.status != PENDING:
            return False  # an active run goes on to its end (no retry: see job.failed); an ended one stays as it ended
        self.cancel_requested = True
        self.status, self.detail = CANCELLED, "cancelled before it started: its job was deleted"
        return True

    def expired(self, now: int) -> bool:
        """Whether the winning claim's lease ran out (its agent went silent)."""
        return self.status in ACTIVE and now > self.renewed + self.lease_ms


RUN_EVENTS = ("job.claimed", "job.claim_renewed", "job.started", "job.succeeded", "job.failed", "job.skipped", "job.cancel_requested")
