"""``eventflow views rebuild``: the log rebuilds the views from offset zero, and swaps them in."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import create_engine

import eventflow
from projector_contract import dump



def rebuild(home) -> subprocess.CompletedProcess:
    """``eventflow views rebuild`` on a home, as a user runs it; it must succeed."""
    done = subprocess.run(
        [sys.executable, "-m", "eventflow", "views", "rebuild", "--home", str(home)],
        capture_output=True, text=True, timeout=300, env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr
    return done

def test_rebuild_replays_the_log_into_fresh_views_and_swaps_them_in(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("EVENTFLOW_CAPTURE_ENV", "false")
    eventflow.set_tracking_uri(str(home))
    eventflow.set_experiment("rebuilt")
    for r in range(3):
        with eventflow.start_run(run_name=f"r{r}"):
            eventflow.log_params({"r": r})
            for step in range(300):
                eventflow.log_metric("loss", 1 / (step + 1), step=step)
    eventflow.Client(str(home)).search_experiments()  # let the views catch up
    eventflow.set_tracking_uri(None)
    before = dump(create_engine(f"sqlite:///{home / 'views.db'}"), "projector")
    # Damage the views: a rebuild must not need them.
    engine = create_engine(f"sqlite:///{home / 'views.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM metrics")
        connection.exec_driver_sql("DELETE FROM runs")
    engine.dispose()
    done = rebuild(home)
    assert "events/s" in done.stdout and "swapped the rebuilt views" in done.stdout
    after = dump(create_engine(f"sqlite:///{home / 'views.db'}"), "projector")
    assert after == before
    assert len(after["metrics"]) == 900


def test_metrics_linked_to_a_logged_model_survive_a_rebuild_even_read_before_the_model(tmp_path):
    """A run's points about a logged model (MLflow 3) are on the runs topic, the model's
    creation on the models topic: a rebuild may read the points first, and still links them."""
    from eventflow import commands
    from eventflow.log import open_log
    from eventflow.log.event_log import EventLog
    from eventflow.views import queries

    home = tmp_path / "home"
    home.mkdir()
    run_id, model_id = commands.new_run_id(), commands.new_model_id()
    points = [("acc", 0.5, 1000, 0, model_id, None, None), ("acc", 0.75, 2000, 1, model_id, "eval", "d1"), ("loss", 2.0, 1000, 0)]
    with open_log(str(home / "log")) as log:
        events = EventLog(log)
        events.append_many([
            commands.create_experiment("7", "linked", "file:///a"),
            commands.create_run(run_id, "7", run_name="r", user_id="u", artifact_uri="file:///a/r"),
            *commands.log_batch(run_id, points),
        ])
        events.append_many([commands.create_logged_model(model_id, "7", "model", "file:///a/m", source_run_id=run_id)])
    engine = create_engine(f"sqlite:///{home / 'views.db'}")
    eventflow.Client(str(home)).search_experiments()  # project the log
    before = dump(engine, "projector")
    with engine.connect() as connection:
        model = queries.get_logged_model(connection, model_id)
        run = queries.get_run(connection, run_id)
    assert model["data"]["metrics"] == [
        {"key": "acc", "value": 0.5, "timestamp": 1000, "step": 0, "run_id": run_id, "model_id": model_id},
        {"key": "acc", "value": 0.75, "timestamp": 2000, "step": 1, "run_id": run_id, "model_id": model_id, "dataset_name": "eval", "dataset_digest": "d1"},
    ]
    assert {m["key"]: m["value"] for m in run["data"]["metrics"]} == {"acc": 0.75, "loss": 2.0}, "the run keeps every point too"
    with engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM logged_model_metrics")
    engine.dispose()
    rebuild(home)
    after = dump(create_engine(f"sqlite:///{home / 'views.db'}"), "projector")
    assert after == before and len(after["logged_model_metrics"]) == 2
    # The runs topic wholly before the models topic: the points wait for no model.
    runs_first = _project_topic_by_topic(home / "log", f"sqlite:///{tmp_path / 'runs-first.db'}", ["eventflow.experiments", "eventflow.runs", "eventflow.models"])
    with runs_first.connect() as connection:
        assert queries.get_logged_model(connection, model_id)["data"]["metrics"] == model["data"]["metrics"]
    runs_first.dispose()


def _project_topic_by_topic(log_dir, url: str, topics: list[str]):
    """Feed a projector each topic whole, one after another, in the given order."""
    from eventflow.codec import decode
    from eventflow.consumers.base import Delivery
    from eventflow.consumers.projector import Projector
    from eventflow.log import open_log
    from eventflow.views.db import open_views

    engine = open_views(url)
    projector = Projector(engine, "ordered")
    with open_log(str(log_dir)) as log:
        for topic in topics:
            consumer = log.consumer([topic])
            records = []
            while batch := consumer.poll(timeout=0.5, max_records=1000):
                records += batch
            consumer.close()
            for tp in sorted({r.tp for r in records}):
                mine = [r for r in records if r.tp == tp]
                assert projector.apply([Delivery(decode(r.value), r) for r in mine], {tp: (mine[0].offset, mine[-1].offset + 1)}) == []
    return engine


def test_a_rebuild_dead_letters_a_damaged_record_once_and_finishes(tmp_path):
    """A record whose headers no longer decode (one bad byte) is dead-lettered, and the
    rebuild replays the rest; a second rebuild adds no second dead letter."""
    import sqlite3

    from eventflow import commands
    from eventflow.consumers.dead_letters import read_dead_letters
    from eventflow.log import open_log
    from eventflow.log.event_log import EventLog
    from eventflow.views import queries

    home = tmp_path / "home"
    home.mkdir()
    with open_log(str(home / "log")) as log:
        EventLog(log).append_many([commands.create_experiment(str(i), f"name-{i}", "file:///a") for i in range(1, 6)])
    with sqlite3.connect(home / "log" / "log.db", isolation_level=None) as conn:
        assert conn.execute("UPDATE records SET headers = CAST(CAST(headers AS BLOB) || x'ff' AS TEXT) "
                            "WHERE value IN (SELECT value FROM records WHERE instr(value, 'name-3') > 0)").rowcount == 1
    for _ in range(2):
        rebuild(home)
    engine = create_engine(f"sqlite:///{home / 'views.db'}")
    with engine.connect() as connection:
        experiments, _ = queries.search_experiments(connection)
        names = sorted(e["name"] for e in experiments if e["name"].startswith("name-"))
    engine.dispose()
    assert names == ["name-1", "name-2", "name-4", "name-5"]
    with open_log(str(home / "log")) as log:
        letters = read_dead_letters(log)
    assert len(letters) == 1 and letters[0].consumers == ("projector",)
