"""A retried append may put one event on the log twice: the views count it once."""

from __future__ import annotations

from sqlalchemy import text

from eventflow import commands
from eventflow.consumers.base import ConsumerLoop
from eventflow.consumers.projector import Projector
from eventflow.log.embedded import EmbeddedLog
from eventflow.log.event_log import EventLog
from eventflow.views.db import open_views


def test_an_event_appended_twice_is_applied_once(tmp_path):
    log = EmbeddedLog(tmp_path / "log")
    engine = open_views(f"sqlite:///{tmp_path / 'views.db'}")
    run = commands.new_run_id()
    created = commands.create_run(run, "0", run_name="r", user_id="u", artifact_uri="file:///a")
    points = commands.log_metrics(run, commands.metric_columns(("loss", 0.5, 1, s) for s in range(100)))
    events = EventLog(log)
    events.append_many([created, points])
    events.append_many([points])  # the retry of a batch whose answer was lost
    events.append(points)
    loop = ConsumerLoop(log, Projector(engine), join_group=False)
    loop.catch_up()
    loop.close()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM metrics")).scalar() == 100
        assert connection.execute(text("SELECT count(*) FROM runs")).scalar() == 1
    assert loop.dead_letters == 0, "a repeat is not an error"
