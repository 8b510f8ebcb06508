"""The scheduler on a real embedded log and SQLite views, its clock driven by the test:
one job.triggered per cron tick or triggering event, across restarts and replays, nothing
of the past on a job's creation, missed ticks once (or each, with catch_up)."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, select

from eventflow.consumers.base import ConsumerLoop
from eventflow.consumers.projector import Projector
from eventflow.consumers.scheduler import GROUP, JobScheduler, emitted, scheduled
from eventflow.events import Event
from eventflow.jobs import commands
from eventflow.jobs.tables import job_runs
from eventflow.log.event_log import EventLog
from eventflow.server.runtime import open_runtime
from eventflow.views.tables import log_positions

BERLIN = ZoneInfo("Europe/Berlin")


def ms(*when: int) -> int:
    return int(datetime(*when, tzinfo=BERLIN).timestamp() * 1000)


@pytest.fixture
def runtime(tmp_path):
    runtime = open_runtime(home=str(tmp_path / "home"), run_consumers=False)
    yield runtime
    runtime.stop()


class Stack:
    """A scheduler and a projector on one log, stepped by hand."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.writer = EventLog(runtime.log)
        self.restart()
        self.projector = ConsumerLoop(runtime.log, Projector(runtime.engine), join_group=False)

    def restart(self) -> None:
        self.scheduler = JobScheduler(self.runtime.log, self.runtime.engine)
        self.loop = ConsumerLoop(self.runtime.log, self.scheduler, join_group=False)

    def append(self, event: Event) -> Event:
        self.writer.append(event)
        return event

    def read(self) -> None:
        self.loop.catch_up()

    def tick(self, now: int) -> list[Event]:
        """The clock at ``now``, once the scheduler has read the log (its own triggers
        included, as its loop does between two ticks of its clock)."""
        self.read()
        return self.scheduler.check(now=now)

    def triggered(self) -> list[Event]:
        """Every job.triggered on the log, duplicates included."""
        consumer = self.runtime.log.consumer(["eventflow.jobs"])
        from eventflow.codec import decode

        found = []
        while records := consumer.poll(0.2, 1000):
            found += [e for e in (decode(r.value) for r in records) if e.type == "job.triggered"]
        consumer.close()
        return found

    def history(self) -> list[dict]:
        self.projector.catch_up()
        with self.runtime.engine.connect() as c:
            return [dict(r) for r in c.execute(select(job_runs).order_by(job_runs.c.triggered_time)).mappings()]


def _job(created: int, **definition) -> Event:
    event = commands.create_job({"name": "nightly", "project_uri": "/srv/train", **definition})
    return Event(event.type, event.payload, event_id=event.event_id, time=created)


def test_a_cron_job_fires_once_per_tick_in_its_time_zone_and_never_for_the_past(runtime):
    stack = Stack(runtime)
    created = ms(2026, 6, 1, 4, 0)  # after that day's 03:00 in Berlin: that tick is the past
    job = stack.append(_job(created, cron="0 3 * * *", timezone="Europe/Berlin", parameters={"epochs": "3"}))
    stack.read()
    assert stack.tick(ms(2026, 6, 1, 23, 59)) == []
    fired = stack.tick(ms(2026, 6, 2, 3, 0))
    assert [(e.payload["job_id"], e.payload["tick"], e.payload["reason"]) for e in fired] == [(job.payload["job_id"], ms(2026, 6, 2, 3, 0), "cron")]
    assert ms(2026, 6, 2, 3, 0) == int(datetime(2026, 6, 2, 1, 0, tzinfo=ZoneInfo("UTC")).timestamp() * 1000)  # CEST is UTC+2
    assert fired[0].payload["parameters"] == {"epochs": "3"}
    assert stack.tick(ms(2026, 6, 2, 3, 0, 30)) == []  # the same tick, again: nothing
    stack.restart()  # a new scheduler process on the same views
    stack.read()
    assert stack.tick(ms(2026, 6, 2, 12, 0)) == []
    assert len(stack.tick(ms(2026, 6, 3, 3, 0))) == 1
    assert [r["tick"] for r in stack.history()] == [ms(2026, 6, 2, 3, 0), ms(2026, 6, 3, 3, 0)]
    assert len(stack.triggered()) == 2


@pytest.mark.parametrize("catch_up, fired", [(False, 1), (True, 4)])
def test_ticks_missed_while_stopped_fire_once_or_each_with_catch_up(runtime, catch_up, fired):
    stack = Stack(runtime)
    stack.append(_job(ms(2026, 6, 1, 10, 5), cron="*/10 * * * *", timezone="Europe/Berlin", catch_up=catch_up))
    stack.read()
    # down from 10:05 to 10:45: the ticks of 10:10, 10:20, 10:30 and 10:40 were missed
    ticks = [e.payload["tick"] for e in stack.tick(ms(2026, 6, 1, 10, 45))]
    assert len(ticks) == fired and ticks[-1] == ms(2026, 6, 1, 10, 40)
    assert stack.tick(ms(2026, 6, 1, 10, 49)) == []
    assert [e.payload["tick"] for e in stack.tick(ms(2026, 6, 1, 10, 50))] == [ms(2026, 6, 1, 10, 50)]


def test_a_paused_job_does_not_fire_and_a_resumed_one_starts_from_then(runtime):
    stack = Stack(runtime)
    job = stack.append(_job(ms(2026, 6, 1, 10, 5), cron="*/10 * * * *", catch_up=True))
    pause = commands.update_job(job.payload, {}, paused=True)
    stack.append(Event(pause.type, pause.payload, time=ms(2026, 6, 1, 10, 6)))
    stack.read()
    assert stack.tick(ms(2026, 6, 1, 11, 0)) == []
    resume = commands.update_job(pause.payload, {}, paused=False)
    stack.append(Event(resume.type, resume.payload, time=ms(2026, 6, 1, 11, 1)))
    stack.read()
    assert stack.tick(ms(2026, 6, 1, 11, 5)) == []  # the paused hour's ticks stay skipped
    assert len(stack.tick(ms(2026, 6, 1, 11, 10))) == 1
    stack.append(Event("job.deleted", {"job_id": job.payload["job_id"]}, time=ms(2026, 6, 1, 11, 11)))
    stack.read()
    assert stack.tick(ms(2026, 6, 2, 0, 0)) == []


def test_a_matching_event_triggers_once_with_its_fields_even_on_replay(runtime):
    stack = Stack(runtime)
    created = ms(2026, 6, 1, 10, 0)
    job = stack.append(_job(created, on_events=["model_version.alias_set"], model_name="churn", alias="staging",
                            parameters={"model_uri": "{event.model_uri}"}))
    # before the job existed: not judged
    stack.append(Event("model_version.alias_set", {"name": "churn", "alias": "staging", "version": "1"}, time=created - 1))
    stack.append(Event("model_version.alias_set", {"name": "churn", "alias": "production", "version": "2"}, time=created + 1))
    stack.append(Event("model_version.alias_set", {"name": "other", "alias": "staging", "version": "2"}, time=created + 2))
    move = stack.append(Event("model_version.alias_set", {"name": "churn", "alias": "staging", "version": "3"}, time=created + 3))
    stack.read()
    [fired] = stack.triggered()
    assert fired.payload["job_id"] == job.payload["job_id"] and fired.payload["reason"] == "event"
    assert fired.payload["cause_event_id"] == move.event_id and fired.causation_id == move.event_id
    assert fired.payload["parameters"] == {"model_uri": "models:/churn/3"}

    # a replay from offset zero (the scheduler's offsets lost) appends nothing again
    with runtime.engine.begin() as c:
        c.execute(delete(log_positions).where(log_positions.c.consumer == GROUP))
    stack.restart()
    stack.read()
    assert len(stack.triggered()) == 1

    # a scheduler that lost its state too (crashed between its append and its commit, say)
    # appends the very same event again: one run of the job in the views all the same
    with runtime.engine.begin() as c:
        c.execute(delete(log_positions).where(log_positions.c.consumer == GROUP))
        c.execute(delete(emitted))
        c.execute(delete(scheduled))
    stack.restart()
    stack.read()
    again = stack.triggered()
    assert len(again) == 2 and len({e.event_id for e in again}) == 1
    assert [json.loads(r["parameters"]) for r in stack.history()] == [{"model_uri": "models:/churn/3"}]


def test_an_experiment_filter_triggers_on_the_events_of_that_experiments_runs(runtime):
    stack = Stack(runtime)
    created = ms(2026, 6, 1, 10, 0)
    stack.append(Event("run.created", {"run_id": "a" * 32, "experiment_id": "7", "run_name": "a", "user_id": "u", "artifact_uri": "x",
                                       "start_time": created - 10, "tags": [], "parent_run_id": None}, time=created - 10))
    job = stack.append(_job(created, on_events=["run.tags_set"], experiment_id="7", condition="tags.stage = 'done'"))
    stack.append(Event("run.created", {"run_id": "b" * 32, "experiment_id": "8", "run_name": "b", "user_id": "u", "artifact_uri": "x",
                                       "start_time": created + 1, "tags": [], "parent_run_id": None}, time=created + 1))
    for run_id in ("a" * 32, "b" * 32):
        stack.append(Event("run.tags_set", {"run_id": run_id, "tags": [{"key": "stage", "value": "done"}]}, time=created + 2))
    stack.read()
    [fired] = stack.triggered()
    assert fired.payload["job_id"] == job.payload["job_id"] and fired.payload["reason"] == "event"
