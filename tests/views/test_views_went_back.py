"""Views that went back: a crash of the views database (PostgreSQL's
``synchronous_commit=off``, SQLite's ``synchronous=NORMAL`` on a machine crash) can take
them back to an earlier consistent state, the last commits and their offsets gone. The
log still holds every event; the projector must notice and apply them again, even when
nothing new arrives to make its fence speak."""

from __future__ import annotations

import sqlite3
import threading

from eventflow import commands
from eventflow.consumers.base import ConsumerLoop
from eventflow.consumers.projector import Projector
from eventflow.log import open_log
from eventflow.log.event_log import EventLog
from eventflow.views import queries
from eventflow.views.db import open_views
from tests.server.serving import wait_for


def test_a_projector_whose_views_went_back_applies_the_lost_events_again_unprompted(tmp_path):
    views = tmp_path / "views.db"
    engine = open_views(f"sqlite:///{views}")
    run_id = commands.new_run_id()

    def steps() -> set[int]:
        with engine.connect() as c:
            return {int(m["step"]) for m in queries.metric_history(c, run_id, "m", max_results=1000)[0]}

    def log_steps(events: EventLog, first: int, last: int) -> None:
        for step in range(first, last):
            events.append(commands.log_metrics(run_id, commands.metric_columns([("m", float(step), 1000 + step, step)])))

    stop = threading.Event()
    with open_log(str(tmp_path / "log")) as log:
        events = EventLog(log)
        loop = ConsumerLoop(log, Projector(engine), join_group=False)
        worker = threading.Thread(target=loop.run, args=(stop,), daemon=True)
        worker.start()
        try:
            events.append(commands.create_run(run_id, "0", run_name="r", user_id="u", artifact_uri="file:///a"))
            log_steps(events, 0, 3)
            wait_for(lambda: steps() == {0, 1, 2}, "the first three points in the views", timeout=60)
            earlier = sqlite3.connect(tmp_path / "earlier.db")
            with sqlite3.connect(views) as live:
                live.backup(earlier)  # a consistent state, offsets included
            log_steps(events, 3, 6)
            wait_for(lambda: steps() == set(range(6)), "all six points in the views", timeout=60)

            with sqlite3.connect(views) as live:
                earlier.backup(live)  # the crash: the views are back at three points
            earlier.close()
            assert steps() == {0, 1, 2}
            # Nothing new is appended: the projector has to find out by itself.
            wait_for(lambda: steps() == set(range(6)), "the lost points applied again from the log", timeout=30)
        finally:
            stop.set()
            worker.join(timeout=30)
    engine.dispose()
