"""The run watchdog: a run whose training process stopped showing signs of life becomes
``run.crashed``.

The SDK sends ``run.alive`` every ``EVENTFLOW_HEARTBEAT_SECONDS`` while a run is active.
Per batch, in one transaction with its offsets, the watchdog notes for each such run when
it last showed a sign of life (any event of the run; ``run.alive`` also says how often to
expect one) and forgets runs that ended. Every few seconds — only once it has read the
runs topic to its end, so a replay never judges a run by a past it has not finished
reading — a watched run silent for longer than ``EVENTFLOW_RUN_TIMEOUT`` (and at least
three heartbeats) gets a ``run.crashed``, whose id is derived from the run and its last
sign of life: a second watchdog, or this one after a restart, appends the same event, which
the projector applies once. The projector marks the run (FAILED to MLflow's clients, the
``eventflow.crashed`` tag for the dashboard); its next ``run.alive`` resumes it.

A watched run that is alive but has logged no new metric step for
``EVENTFLOW_RUN_STALL_TIMEOUT`` (off unless set: a quiet phase is not always a hang) gets a
``run.stalled`` (the projector tags it ``eventflow.stalled``; it stays RUNNING), and its next
metric a ``run.stall_ended`` — each once, with ids derived as above.

Runs logged by other clients (the MLflow client) send no heartbeat and are never watched:
a quiet run is not a dead one.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Connection, Engine, MetaData, String, Table, delete, select, update

from eventflow import commands
from eventflow.consumers.base import ConsumerLoop, Delivery, Subscriber
from eventflow.events import FAMILIES, Event, server_source, now_ms
from eventflow.log import Log, TopicPartition
from eventflow.log.event_log import EventLog
from eventflow.views.db import reading, upsert
from eventflow.views.positions import advance, stored_offsets

logger = logging.getLogger(__name__)
GROUP = "watchdog"
RUNS_TOPIC = FAMILIES["run"].topic
ENDED = {"run.finished", "run.failed", "run.killed", "run.deleted"}
HEARTBEATS_BEFORE_CRASH = 3
_IDS = uuid.UUID("0e3c1f5a-7d6b-4f0e-9a1d-3c5b7e9f1a2c")

metadata = MetaData()
watched = Table(
    "watched_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("last_seen", BigInteger, nullable=False),  # the time of its last event
    Column("every_ms", BigInteger, nullable=False),
    Column("crashed", Boolean, nullable=False),
    Column("last_step", BigInteger, nullable=True),  # the time of its last metrics, else of its first sign of life
    Column("stalled_since", BigInteger, nullable=True),  # the last_step of its run.stalled, until run.stall_ended
)


def create_tables(engine: Engine) -> None:
    metadata.create_all(engine)


class RunWatchdog(Subscriber):
    """Notes the runs' signs of life; ``check`` appends ``run.crashed`` for the silent ones."""

    keeps_offsets = True

    offsets_may_go_back = True  # they commit with its effects, in the views
    topics = (RUNS_TOPIC,)

    def __init__(self, log: Log, engine: Engine, timeout_ms: int, group: str = GROUP, stall_ms: int = 0):
        self.log = log
        self.writer = EventLog(log)
        self.engine = engine
        self.timeout_ms = timeout_ms
        self.stall_ms = stall_ms
        self.group = group
        self._appended: set[str] = set()
        create_tables(engine)

    def stored_offsets(self, tps: set[TopicPartition]) -> dict[TopicPartition, int]:
        return stored_offsets(self.engine, self.group, tps)

    def apply(self, batch: list[Delivery], spans: dict[TopicPartition, tuple[int, int]]) -> list[tuple[Delivery, str]]:
        runs: dict[str, dict[str, Any]] = {}
        for d in batch:
            e = d.event
            if not e.type.startswith("run."):
                continue
            run = runs.setdefault(e.payload["run_id"], {"last": 0})
            if e.type == "run.alive":
                run.update(alive=True, every=e.payload["every_ms"], crashed=False, gone=False)
            elif e.type in ENDED:
                run["gone"] = True
            elif e.type == "run.crashed":
                run["crashed"] = True
            elif e.type == "run.metrics_logged":
                run["step"] = max(run.get("step", 0), e.time)
            elif e.type == "run.stalled":
                run["stalled"] = e.payload["last_step_time"]
            elif e.type == "run.stall_ended":
                run["stalled"] = None
            run["last"] = max(run["last"], e.time) if e.type != "run.crashed" else run["last"]
        with self.engine.begin() as c:
            advance(c, self.group, spans)
            self._record(c, runs)
        return []

    def _record(self, c: Connection, runs: dict[str, dict[str, Any]]) -> None:
        gone = [r for r, run in runs.items() if run.get("gone")]
        if gone:
            c.execute(delete(watched).where(watched.c.run_id.in_(gone)))
        alive = [r for r, run in runs.items() if run.get("alive") and not run.get("gone")]
        known = {row.run_id: row for row in c.execute(select(watched).where(watched.c.run_id.in_(alive)))} if alive else {}
        fresh = []
        for r in alive:
            run, row = runs[r], known.get(r)
            first = {"last_step": run["last"], "stalled_since": None} if row is None else {"last_step": row.last_step, "stalled_since": row.stalled_since}
            fresh.append({"run_id": r, "last_seen": run["last"], "every_ms": run["every"], "crashed": bool(run.get("crashed")),
                          **first, **self._progress(run)})
        upsert(c, watched, fresh, ["run_id"])
        for run_id, run in runs.items():
            if run.get("alive") or run.get("gone"):
                continue
            values: dict[str, Any] = self._progress(run)
            if run["last"]:
                values["last_seen"] = run["last"]
            if run.get("crashed"):
                values["crashed"] = True
            if values:
                c.execute(update(watched).where(watched.c.run_id == run_id).values(**values))

    @staticmethod
    def _progress(run: dict[str, Any]) -> dict[str, Any]:
        """What a batch says of a run's steps: its last metrics' time, a stall begun or ended."""
        values: dict[str, Any] = {}
        if "step" in run:
            values["last_step"] = run["step"]
        if "stalled" in run:
            values["stalled_since"] = run["stalled"]
        return values

    def caught_up(self) -> bool:
        """Whether every partition of the runs topic has been read to its end."""
        if RUNS_TOPIC not in self.log.topics():
            return True
        ends = self.log.end_offsets(RUNS_TOPIC)
        stored = self.stored_offsets({TopicPartition(RUNS_TOPIC, p) for p in ends})
        return all(stored.get(TopicPartition(RUNS_TOPIC, p), 0) >= end for p, end in ends.items())

    def check(self, now: int | None = None) -> list[str]:
        """Append ``run.crashed`` for every watched run silent too long, ``run.stalled`` for an
        alive one without new steps too long, ``run.stall_ended`` for a stalled one that
        stepped again; returns the run ids."""
        if not self.caught_up():
            return []
        now = now_ms() if now is None else now
        with reading(self.engine).connect() as c:
            rows = c.execute(select(watched).where(watched.c.crashed.is_(False))).all()
        judged: list[tuple[Event, str]] = []
        for row in rows:
            timeout = max(self.timeout_ms, HEARTBEATS_BEFORE_CRASH * row.every_ms)
            if row.last_seen + timeout < now:
                judged.append((commands.run_crashed(row.run_id, row.last_seen, timeout), f"{row.run_id}/{row.last_seen}"))
                continue
            if row.stalled_since is not None and row.last_step is not None and row.last_step > row.stalled_since:
                judged.append((commands.run_stall_ended(row.run_id, row.stalled_since, row.last_step), f"{row.run_id}/{row.stalled_since}/ended"))
            elif (self.stall_ms and row.stalled_since is None and row.last_step is not None and row.last_step + self.stall_ms < now
                  and row.last_seen + 2 * row.every_ms >= now):  # alive: its last heartbeat is recent
                judged.append((commands.run_stalled(row.run_id, row.last_step, self.stall_ms), f"{row.run_id}/{row.last_step}/stalled"))
        source = server_source()
        found = []
        for event, key in judged:
            event_id = str(uuid.uuid5(_IDS, key))
            if event_id not in self._appended:  # else appended already; the batch that reads it marks the run
                found.append(type(event)(event.type, event.payload, event_id=event_id, actor="eventflow-watchdog", source=source))
        if found:
            self.writer.append_many(found)
            self._appended.update(e.event_id for e in found)
            for kind in ("run.crashed", "run.stalled"):
                if ids := [e.payload["run_id"] for e in found if e.type == kind]:
                    logger.warning("watchdog: %d run(s) %s: %s", len(ids), kind.removeprefix("run."), ", ".join(ids))
        return [e.payload["run_id"] for e in found]


class Watchdog:
    """The watchdog's consumer loop and its clock, until stopped (in ``eventflow server``,
    or ``eventflow consume watchdog``)."""

    def __init__(self, log: Log, engine: Engine, timeout_s: float, stall_s: float = 0.0):
        self.subscriber = RunWatchdog(log, engine, int(timeout_s * 1000), stall_ms=int(stall_s * 1000))
        # Its clock ticks every 0.2 s at the least: seeing events up to that late changes nothing,
        # and on Kafka it is then not woken by every append (see ConsumerLoop's linger).
        self.loop = ConsumerLoop(log, self.subscriber, linger=0.2)
        self.tick = max(0.2, min(5.0, min(timeout_s, stall_s or timeout_s) / 4))

    def run(self, stop: threading.Event) -> None:
        ticking = threading.Thread(target=self._tick, args=(stop,), name="eventflow-watchdog-clock", daemon=True)
        ticking.start()
        try:
            self.loop.run(stop)
        finally:
            ticking.join(timeout=self.tick + 5)

    def _tick(self, stop: threading.Event) -> None:
        while not stop.wait(self.tick):
            try:
                self.subscriber.check()
            except Exception:  # the database or the log may be down for a moment: next tick
                logger.exception("watchdog: check failed")
