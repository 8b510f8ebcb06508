"""The scheduler: cron ticks and matching events in, ``job.triggered`` out, once each.

Per batch, in ONE transaction with its offsets, it applies the ``job.*`` events to its own
copy of the jobs (``scheduler_jobs``: a job and the events it judges are read by one
consumer in one order, live and on replay) and judges every other event against each
job's event trigger (the webhook filters, eventflow/webhooks/filters.py). A job judges
the events stamped at or after its creation, never one of its own runs' events.

Its clock (``check``, every fraction of a second, only once it has read the jobs topic to
its end) fires the cron ticks that are due. A new job's first tick is the first after its
creation: nothing of the past is fired. A tick missed while the scheduler was stopped is
fired once it is back — the latest one only, or every one with ``catch_up``. The next
tick owed is stored in the transaction that fires the one before.

Every ``job.triggered`` is appended *before* its transaction commits, and its id is
derived from its cause (the job and the tick, or the job and the triggering event), so a
crash between the append and the commit makes the replay append the very same event, and
the ids the scheduler appended (``scheduler_emitted``, carried by ``views rebuild``) are
never appended again: exactly one ``job.triggered`` per tick or triggering event.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Connection, Engine, MetaData, String, Table, Text, select, update

from eventflow.consumers.base import ConsumerLoop, Delivery, Subscriber
from eventflow.consumers.webhooks import experiment_of, experiments_of
from eventflow.events import FAMILIES, Event, server_source, now_ms
from eventflow.jobs import commands, schedule
from eventflow.log import Log, TopicPartition
from eventflow.log.event_log import EventLog
from eventflow.views.db import insert_new
from eventflow.views.positions import advance, stored_offsets
from eventflow.webhooks import filters
from eventflow.webhooks.tables import create_tables as create_webhook_tables

logger = logging.getLogger(__name__)
GROUP = "scheduler"
ACTOR = "eventflow-scheduler"
JOBS_TOPIC = FAMILIES["job"].topic
CLOCK_SECONDS = 0.25

metadata = MetaData()
scheduled = Table(
    "scheduler_jobs",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("definition", Text, nullable=False),  # the payload of its last job.created / job.updated
    Column("created_time", BigInteger, nullable=False),
    Column("paused", Boolean, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("next_tick", BigInteger),  # the cron tick owed next (null: no schedule)
)
emitted = Table("scheduler_emitted", metadata, Column("event_id", String(64), primary_key=True))


def create_tables(engine: Engine) -> None:
    metadata.create_all(engine)



def triggered(job_id: str, reason: str, cause: str, parameters: dict[str, str], *, cause_event: Event | None = None,
              tick: int | None = None, time: int | None = None, actor: str = ACTOR) -> Event:
    """A ``job.triggered`` whose event id is its trigger id, derived from ``cause``."""
    trigger = commands.trigger_id(job_id, cause)
    payload = {"job_id": job_id, "trigger_id": trigger, "reason": reason, "cause_event_id": cause_event.event_id if cause_event else None,
               "tick": tick, "parameters": parameters}
    return Event("job.triggered", payload, event_id=trigger, time=time if time is not None else now_ms(), actor=actor, source=server_source(),
                 correlation_id=cause_event.correlation_id if cause_event else None,
                 causation_id=cause_event.event_id if cause_event else None)


class _Job:
    def __init__(self, row: Any):
        self.id, self.created_time, self.next_tick = row.job_id, row.created_time, row.next_tick
        self.definition = json.loads(row.definition)
        d = self.definition
        condition = filters.parse_condition(d.get("condition"))
        if d.get("alias"):
            condition = (*condition, filters.Clause(("alias",), "=", d["alias"]))
        self.filter = (filters.EventFilter(tuple(d["on_events"]), d.get("experiment_id"), d.get("model_name"), condition)
                       if d.get("on_events") else None)

    def wants(self, event: Event, experiment_id: str | None) -> bool:
        if self.filter is None or event.time < self.created_time or event.payload.get("job_id") == self.id:
            return False
        return self.filter.matches(event.type, event.payload, experiment_id)


def _first_tick(definition: dict[str, Any], after: int) -> int | None:
    return schedule.next_tick(definition["cron"], definition["timezone"], after) if definition.get("cron") else None


class JobScheduler(Subscriber):
    """Judges events against the jobs' triggers; ``check`` fires the cron ticks due."""

    keeps_offsets = True

    offsets_may_go_back = True  # they commit with its effects, in the views

    def __init__(self, log: Log, engine: Engine, group: str = GROUP, clock: Callable[[], int] = now_ms):
        self.log = log
        self.writer = EventLog(log)
        self.engine = engine
        self.group = group
        self.clock = clock
        self._lock = threading.Lock()  # the clock and the batches both move next_tick
        create_tables(engine)
        create_webhook_tables(engine)  # webhook_entity_experiments: which experiment a run is in

    def stored_offsets(self, tps: set[TopicPartition]) -> dict[TopicPartition, int]:
        return stored_offsets(self.engine, self.group, tps)

    def apply(self, batch: list[Delivery], spans: dict[TopicPartition, tuple[int, int]]) -> list[tuple[Delivery, str]]:
        with self._lock, self.engine.begin() as c:
            advance(c, self.group, spans)
            out: list[Event] = []
            live: list[_Job] | None = None
            experiments: dict[str, str] | None = None
            for d in batch:
                event = d.event
                if event.type in ("job.created", "job.updated", "job.deleted"):
                    self._apply_job_event(c, event)
                    live = None
                    continue
                if event.type.startswith("job."):
                    continue  # a job's runs trigger nothing (a wildcard would loop)
                if live is None:
                    live = self._live(c, with_triggers=True)
                if experiments is None:  # which experiment each run or model is in (the webhooks' lookup)
                    experiments = experiments_of(c, batch, need=any(j.filter.experiment_id for j in live if j.filter))
                experiment_id = experiment_of(event, experiments)
                for job in live:
                    if job.wants(event, experiment_id):
                        fired = self._fired_by(job, event)
                        if fired is not None:
                            out.append(fired)
            self._emit(c, out)
        return []

    def _apply_job_event(self, c: Connection, e: Event) -> None:
        p = e.payload
        if e.type == "job.created":
            insert_new(c, scheduled, [{"job_id": p["job_id"], "definition": json.dumps(p), "created_time": e.time, "paused": False,
                                       "deleted": False, "next_tick": _first_tick(p, e.time)}])
            return
        before = c.execute(select(scheduled).where(scheduled.c.job_id == p["job_id"])).first()
        if before is None or before.deleted:
            return
        if e.type == "job.deleted":
            c.execute(update(scheduled).where(scheduled.c.job_id == p["job_id"]).values(deleted=True, next_tick=None))
            return
        old = json.loads(before.definition)
        values: dict[str, Any] = {"definition": json.dumps(p), "paused": p["paused"]}
        # A new schedule, or a resumed job, starts from now: the ticks a pause skipped stay skipped.
        if (old.get("cron"), old.get("timezone")) != (p.get("cron"), p.get("timezone")) or (before.paused and not p["paused"]):
            values["next_tick"] = _first_tick(p, e.time)
        c.execute(update(scheduled).where(scheduled.c.job_id == p["job_id"]).values(**values))

    def _live(self, c: Connection, with_triggers: bool = False, with_schedule: bool = False) -> list[_Job]:
        query = select(scheduled).where(scheduled.c.deleted.is_(False), scheduled.c.paused.is_(False))
        if with_schedule:
            query = query.where(scheduled.c.next_tick.is_not(None))
        jobs = []
        for row in c.execute(query):
            try:
                job = _Job(row)
            except Exception as error:  # checked at the edge; an old row never stops the scheduler
                logger.warning("scheduler: job %s cannot be read: %s", row.job_id, error)
                continue
            if not with_triggers or job.filter is not None:
                jobs.append(job)
        return jobs

    def _fired_by(self, job: _Job, event: Event) -> Event | None:
        try:
            parameters = commands.resolve_parameters(job.definition.get("parameters") or {}, commands.event_context(event))
        except commands.Unfilled as why:
            logger.warning("scheduler: job %s not triggered by %s %s: %s", job.id, event.type, event.event_id, why)
            return None
        return triggered(job.id, "event", f"event/{event.event_id}", parameters, cause_event=event, time=event.time)

    def _emit(self, c: Connection, events: list[Event]) -> None:
        new = insert_new(c, emitted, [{"event_id": e.event_id} for e in events], "event_id")
        fresh = [e for e in events if e.event_id in new]
        if fresh:
            self.writer.append_many(fresh)  # before the commit: see the module's docstring

    def caught_up(self) -> bool:
        """Whether the jobs topic has been read to its end (so a pause or a delete is known)."""
        if JOBS_TOPIC not in self.log.topics():
            return True
        ends = self.log.end_offsets(JOBS_TOPIC)
        stored = self.stored_offsets({TopicPartition(JOBS_TOPIC, p) for p in ends})
        return all(stored.get(TopicPartition(JOBS_TOPIC, p), 0) >= end for p, end in ends.items())

    def check(self, now: int | None = None) -> list[Event]:
        """Fire the cron ticks due by ``now`` (the clock's time by default); returns the
        ``job.triggered`` events appended."""
        if not self.caught_up():
            return []
        now = self.clock() if now is None else now
        with self._lock, self.engine.begin() as c:
            due = [j for j in self._live(c, with_schedule=True) if j.next_tick <= now]
            out: list[Event] = []
            for job in due:
                d = job.definition
                ticks = schedule.ticks_due(d["cron"], d["timezone"], job.next_tick, now)
                if not d.get("catch_up"):
                    ticks = ticks[-1:]  # missed ticks collapse into the latest
                parameters = d.get("parameters") or {}
                out += [triggered(job.id, "cron", f"cron/{tick}", parameters, tick=tick, time=now) for tick in ticks]
                c.execute(update(scheduled).where(scheduled.c.job_id == job.id).values(next_tick=schedule.next_tick(d["cron"], d["timezone"], now)))
            self._emit(c, out)
        if out:
            logger.info("scheduler: fired %d cron tick(s)", len(out))
        return out


class Scheduler:
    """The scheduler's consumer loop and its clock, until stopped (in ``eventflow server``,
    or ``eventflow consume scheduler``)."""

    def __init__(self, log: Log, engine: Engine, clock: Callable[[], int] = now_ms):
        self.subscriber = JobScheduler(log, engine, clock=clock)
        # A trigger 0.1 s later is lost in a job's start (process, environment); on Kafka the
        # scheduler is then not woken by every append (see ConsumerLoop's linger).
        self.loop = ConsumerLoop(log, self.subscriber, linger=0.1)

    def run(self, stop: threading.Event) -> None:
        ticking = threading.Thread(target=self._tick, args=(stop,), name="eventflow-scheduler-clock", daemon=True)
        ticking.start()
        try:
            self.loop.run(stop)
        finally:
            ticking.join(timeout=CLOCK_SECONDS + 5)

    def _tick(self, stop: threading.Event) -> None:
        while not stop.wait(CLOCK_SECONDS):
            try:
                self.subscriber.check()
            except Exception:  # the database or the log may be down for a moment: next tick
                logger.exception("scheduler: check failed")
