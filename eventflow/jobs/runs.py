"""A run of a job, folded from its events in log order — the one home of its rules.

Every agent folds the jobs topic the same way, and so does the projector (the ``job_runs``
view), so they agree on who runs what: the first ``job.claimed`` of an attempt in log
order wins it, later claims of that attempt lose; only the winner's ``job.started`` and
``job.succeeded`` count; a ``job.failed`` of the current attempt (from the agent, or from
any agent that saw the claim's lease run out) ends it, and, with ``will_retry``, opens the
next attempt after the job's retry delay.
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
    def triggered(cls, event: Event) -> JobRun:
        p = event.payload
        return cls(p["trigger_id"], p["job_id"], dict(p["parameters"]), p.get("cause_event_id"), available=event.time)

    def _current(self, p: dict[str, Any], owner: bool = True) -> bool:
        return p["attempt"] == self.attempt and (not owner or p.get("agent_id") == self.agent_id)

    def apply(self, event: Event, retry_delay_s: float = 0.0) -> bool:
        """Fold one event of this run; True if it changed the run."""
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
            if p["will_retry"] and not self.cancel_requested:
                self.status, self.attempt, self.agent_id = PENDING, self.attempt + 1, None
                self.available = event.time + int(retry_delay_s * 1000)
            else:
                self.status = CANCELLED if self.cancel_requested else FAILED
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
        else:
            return False
        return True

    def expired(self, now: int) -> bool:
        """Whether the winning claim's lease ran out (its agent went silent)."""
        return self.status in ACTIVE and now > self.renewed + self.lease_ms


RUN_EVENTS = ("job.claimed", "job.claim_renewed", "job.started", "job.succeeded", "job.failed", "job.skipped", "job.cancel_requested")
