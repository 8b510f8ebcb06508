"""The alert watcher: metric points in, ``alert.fired`` / ``alert.resolved`` out, once each.

Per batch, in ONE transaction, it applies the ``alert_rule.*`` events to its rules, notes
which experiment each new run is in, and judges every metric point of a rule's metric
against the rule (eventflow/alerts/conditions.py): when a (rule, run, metric) series starts
to hold, an ``alert.fired``; when it stops, an ``alert.resolved``. The series' state and the
watcher's offsets are written in that transaction, so a replay after a crash judges the
same points from the same state.

The alert events are appended *before* the transaction commits, and each one's id is
derived from what caused it (the rule, the metric event and the point), so a crash between
the append and the commit makes the replay append the very same events: every consumer
skips an event id it has seen (the projector, the webhook recorder), and the watcher
appends none it had appended before (``alert_emitted``, carried by ``views rebuild``).

A rule judges the points of events stamped at or after its creation (no alerts about the
past), like a webhook subscription. A rule's events and the points share no partition;
the REST API answers a rule's creation only once the watcher has applied it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from eventflow.alerts import conditions
from eventflow.alerts.tables import create_tables, emitted, rules, runs, series
from eventflow.consumers.base import ConsumerLoop, Delivery, Subscriber
from eventflow.events import Event, server_source, metric_points
from eventflow.log import Log, TopicPartition
from eventflow.log.event_log import EventLog
from eventflow.views.db import insert_new, upsert
from eventflow.views.positions import advance, stored_offsets

logger = logging.getLogger(__name__)
GROUP = "alerts"
ACTOR = "eventflow-alerts"
_IDS = uuid.UUID("6f1b7c0e-3b0a-4c59-9a55-0e7a1e7a1e17")  # the namespace of the alert event ids


class _Rule:
    def __init__(self, row: Any):
        self.id, self.name, self.level = row.rule_id, row.name, row.level
        self.experiment_id, self.created_time = row.experiment_id, row.created_time
        self.condition = conditions.parse(row.condition)

    def judges(self, event: Event, experiment_id: str | None) -> bool:
        return event.time >= self.created_time and (self.experiment_id is None or self.experiment_id == experiment_id)


def apply_rule_event(c: Connection, event: Event) -> None:
    p = event.payload
    if event.type == "alert_rule.created":
        insert_new(c, rules, [{
            "rule_id": p["rule_id"], "name": p["name"], "condition": p["condition"], "experiment_id": p.get("experiment_id"),
            "level": p["level"], "description": p.get("description"), "created_time": event.time, "created_by": event.actor,
            "deleted": False,
        }])
    elif event.type == "alert_rule.deleted":
        c.execute(update(rules).where(rules.c.rule_id == p["rule_id"]).values(deleted=True))



def _words(value: float) -> str:
    return f"{value:g}"


class AlertWatcher(Subscriber):
    """Judges metric points against the alert rules; appends the alerts they cause."""

    keeps_offsets = True
    offsets_may_go_back = True  # they commit with its effects, in the views

    def __init__(self, log: Log, engine: Engine, group: str = GROUP):
        self.writer = EventLog(log)
        self.engine = engine
        self.group = group
        create_tables(engine)

    def stored_offsets(self, tps: set[TopicPartition]) -> dict[TopicPartition, int]:
        return stored_offsets(self.engine, self.group, tps)

    def apply(self, batch: list[Delivery], spans: dict[TopicPartition, tuple[int, int]]) -> list[tuple[Delivery, str]]:
        with self.engine.begin() as c:
            advance(c, self.group, spans)
            new_runs = {}
            for d in batch:
                if d.event.type.startswith("alert_rule."):
                    apply_rule_event(c, d.event)
                elif d.event.type == "run.created":
                    new_runs[d.event.payload["run_id"]] = d.event.payload["experiment_id"]
            if new_runs:
                upsert(c, runs, [{"run_id": r, "experiment_id": e} for r, e in new_runs.items()], ["run_id"])
            metrics = [d for d in batch if d.event.type == "run.metrics_logged"]
            if not metrics:
                return []
            live = []
            for row in c.execute(select(rules).where(rules.c.deleted.is_(False))):
                try:
                    live.append(_Rule(row))
                except Exception as error:  # checked at the edge; an old row never stops the watcher
                    logger.warning("alerts: rule %s cannot be read: %s", row.rule_id, error)
            if not live:
                return []
            alerts = self._judge(c, metrics, live)
            new = insert_new(c, emitted, [{"event_id": e.event_id} for e in alerts], "event_id")
            fresh = [e for e in alerts if e.event_id in new]
            if fresh:
                self.writer.append_many(fresh)  # before the commit: see the module's docstring
        return []

    def _judge(self, c: Connection, metrics: list[Delivery], live: list[_Rule]) -> list[Event]:
        run_ids = sorted({d.event.payload["run_id"] for d in metrics})
        experiments = dict(c.execute(select(runs.c.run_id, runs.c.experiment_id).where(runs.c.run_id.in_(run_ids))).all())
        wanted = {r.condition.metric for r in live}
        states: dict[tuple[str, str, str], dict[str, Any]] = {}
        for row in c.execute(select(series).where(series.c.run_id.in_(run_ids), series.c.metric.in_(sorted(wanted)))).mappings():
            states[(row["rule_id"], row["run_id"], row["metric"])] = dict(row)
        out, changed = [], {}
        for d in metrics:
            event, run_id = d.event, d.event.payload["run_id"]
            judging = [r for r in live if r.judges(event, experiments.get(run_id))]
            if not judging:
                continue
            for n, point in enumerate(metric_points(event.payload)):
                for rule in judging:
                    if point.key != rule.condition.metric:
                        continue
                    key = (rule.id, run_id, point.key)
                    state = states.setdefault(key, {"rule_id": rule.id, "run_id": run_id, "metric": point.key, "firing": False,
                                                    "best": None, "value": None, "step": None, "changed_time": event.time})
                    holds = rule.condition.holds(point.value, state["best"])
                    if holds != state["firing"]:
                        out.append(self._alert(rule, event, n, point, holds, state["best"]))
                        state["firing"], state["changed_time"] = holds, event.time
                    state["best"] = rule.condition.best_after(point.value, state["best"])
                    state["value"], state["step"] = point.value, point.step
                    changed[key] = state
        if changed:
            upsert(c, series, list(changed.values()), ["rule_id", "run_id", "metric"])
        return out

    def _alert(self, rule: _Rule, cause: Event, n: int, point: Any, fired: bool, best: float | None) -> Event:
        verb = "fired" if fired else "resolved"
        event_id = str(uuid.uuid5(_IDS, f"{rule.id}/{cause.event_id}/{n}/{point.key}/{verb}"))
        run_id = cause.payload["run_id"]
        if fired:
            title = f"{rule.name}: {rule.condition.text} (value {_words(point.value)} at step {point.step})"
            payload = {"run_id": run_id, "rule_id": rule.id, "title": title, "text": f"run {run_id}", "level": rule.level,
                       "metric": point.key, "value": point.value, "step": point.step, "best": best}
        else:
            title = f"{rule.name}: resolved, {point.key} = {_words(point.value)} at step {point.step}"
            payload = {"run_id": run_id, "rule_id": rule.id, "title": title, "metric": point.key, "value": point.value, "step": point.step}
        return Event(f"alert.{verb}", payload, event_id=event_id, time=cause.time, actor=ACTOR, source=server_source(),
                     correlation_id=cause.correlation_id, causation_id=cause.event_id)


class Watcher:
    """The watcher's consumer loop, until stopped (in ``eventflow server``, or ``eventflow consume alerts``)."""

    def __init__(self, log: Log, engine: Engine):
        # An alert 0.2 s later is still at once for whoever reads it; on Kafka the watcher is
        # then not woken by every append (see ConsumerLoop's linger).
        self.loop = ConsumerLoop(log, AlertWatcher(log, engine), linger=0.2)

    def run(self, stop: threading.Event) -> None:
        self.loop.run(stop)
