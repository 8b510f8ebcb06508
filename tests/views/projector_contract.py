"""The projector's promise, run against every log × database pair: exactly once in effect.

Each test writes a realistic history to the log, projects it into a fresh database in
some adverse way (replayed, two instances, killed with SIGKILL mid-batch) and compares
the views row for row with a clean projection of the same log.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest
from sqlalchemy import Engine, select, text

from eventflow import commands
from eventflow.consumers.base import ConsumerLoop
from eventflow.consumers.projector import Projector
from eventflow.events import DEAD_LETTER_TOPIC
from eventflow.log import open_log
from eventflow.log.event_log import EventLog
from eventflow.views.db import open_views
from eventflow.views.tables import metadata


def dump(engine: Engine, consumer: str | None = None) -> dict[str, list[tuple]]:
    """Every view row, sorted; metric ids (surrogates) and other consumers' offsets left out."""
    out = {}
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            columns = [c for c in table.columns if c.name != "id"]
            query = select(*columns)
            if table.name == "log_positions":
                query = query.where(table.c.consumer == consumer).with_only_columns(
                    *[c for c in columns if c.name != "consumer"]
                )
            rows = [tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in row) for row in connection.execute(query)]
            out[table.name] = sorted(rows, key=repr)
    return out


def write_history(log, runs: int = 4, metric_events: int = 6, points: int = 500) -> dict[str, int]:
    """Experiments, runs, params, tags, metrics, artifacts, deletions — and one bad param."""
    events = EventLog(log)
    experiment = str(uuid.uuid4().int % 10**12)
    batch = [commands.create_experiment(experiment, f"views-{experiment}", "file:///a", {"owner": "ml"})]
    for r in range(runs):
        run = commands.new_run_id()
        batch += [
            commands.create_run(run, experiment, run_name=f"r{r}", user_id="u", artifact_uri="file:///a/r", tags={"k": r}),
            commands.log_params(run, {"lr": 0.1 * r, "depth": r}),
            commands.set_tags(run, {"stage": "dev"}),
        ]
        for e in range(metric_events):
            batch.append(
                commands.log_metrics(
                    run,
                    commands.metric_columns(
                        (f"m{p % 5}", (p * 0.5 if p % 97 else float("nan")), 1000 + e, e * points + p) for p in range(points)
                    ),
                )
            )
        batch += [
            commands.log_artifact(run, "model/weights.bin", 10, "ab" * 32),
            commands.log_params(run, {"lr": "changed"}),  # breaks a rule: dead-lettered
            commands.delete_tag(run, "stage"),
            commands.end_run(run, "FINISHED" if r % 2 else "FAILED"),
        ]
    batch.append(commands.rename_experiment(experiment, f"views-{experiment}-renamed"))
    events.append_many(batch)
    return {"events": len(batch), "points": runs * metric_events * points, "experiment_id": experiment}


class ProjectorContract:
    @pytest.fixture
    def log_uri(self) -> str:  # pragma: no cover - each backend provides it
        raise NotImplementedError

    @pytest.fixture
    def database(self):  # pragma: no cover - a function returning a fresh database URL
        raise NotImplementedError

    def project(self, log_uri: str, url: str, name: str, **loop_options) -> Engine:
        engine = open_views(url)
        with open_log(log_uri) as log:
            loop = ConsumerLoop(log, Projector(engine, name), **loop_options)
            loop.catch_up(timeout=300)
            loop.close()
        return engine

    def clean(self, log_uri: str, database) -> dict:
        name = "clean-" + uuid.uuid4().hex[:8]
        engine = self.project(log_uri, database(), name, join_group=False)
        views = dump(engine, name)
        engine.dispose()
        return views

    def test_a_clean_projection_holds_every_event_once(self, log_uri, database):
        with open_log(log_uri) as log:
            written = write_history(log)
        name = "count-" + uuid.uuid4().hex[:8]
        engine = self.project(log_uri, database(), name, join_group=False)
        # Only this test's runs: a shared broker holds other tests' events too.
        mine = {"e": written["experiment_id"]}
        in_mine = "run_id IN (SELECT run_id FROM runs WHERE experiment_id = :e)"
        with engine.connect() as connection:
            points = connection.execute(text(f"SELECT count(*) FROM metrics WHERE {in_mine}"), mine).scalar()
            statuses = {s for (s,) in connection.execute(text("SELECT status FROM runs WHERE experiment_id = :e"), mine)}
            lr = connection.execute(text(f"SELECT count(*) FROM params WHERE {in_mine} AND key = 'lr' AND value = 'changed'"), mine).scalar()
            nans = connection.execute(text(f"SELECT count(*) FROM latest_metrics WHERE {in_mine} AND is_nan"), mine).scalar()
        assert points == written["points"]
        assert statuses >= {"FINISHED", "FAILED"} and lr == 0
        assert nans == 0, "NaN is never the latest value when numbers follow it"
        with open_log(log_uri) as log, log.consumer([DEAD_LETTER_TOPIC]) as consumer:
            def changed_param(reason: bytes) -> bool:
                return b"Changing param values is not allowed" in reason and b"Attempted logging new value 'changed'" in reason

            reasons: list[bytes] = []
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(map(changed_param, reasons)):
                reasons += [r.header("dead_letter.reason") for r in consumer.poll(timeout=0.5) if r.header("dead_letter.group") == name.encode()]
        assert any(map(changed_param, reasons)), reasons[:3]
        engine.dispose()

    def test_replaying_the_same_events_twice_changes_nothing(self, log_uri, database):
        with open_log(log_uri) as log:
            write_history(log)
        expected = self.clean(log_uri, database)
        name = "replay-" + uuid.uuid4().hex[:8]
        engine = self.project(log_uri, database(), name, join_group=False)
        with open_log(log_uri) as log:
            loop = ConsumerLoop(log, Projector(engine, name), join_group=False)
            loop.consumer.seek_to_beginning()  # deliver everything again
            for _ in range(200):
                if loop.step(timeout=0.2) == 0:
                    break
            loop.catch_up()
            loop.close()
        assert dump(engine, name) == expected
        engine.dispose()

    def test_two_instances_in_one_group_build_the_same_views(self, log_uri, database):
        with open_log(log_uri) as log:
            write_history(log, runs=6)
        expected = self.clean(log_uri, database)
        name = "pair-" + uuid.uuid4().hex[:8]
        engine = open_views(database())
        errors: list[BaseException] = []

        def member():
            try:
                with open_log(log_uri) as log:
                    loop = ConsumerLoop(log, Projector(engine, name), max_batch=50)
                    deadline = time.monotonic() + 120
                    while time.monotonic() < deadline:
                        loop.step(timeout=0.2)
                        if dump(engine, name) == expected:
                            break
                    loop.close()
            except BaseException as error:  # surfaced below
                errors.append(error)

        threads = [threading.Thread(target=member) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=180)
        assert not errors, errors
        assert dump(engine, name) == expected
        engine.dispose()

    def test_a_projector_killed_mid_batch_resumes_without_loss_or_duplicate(self, log_uri, database, tmp_path):
        with open_log(log_uri) as log:
            write_history(log, runs=8, metric_events=25, points=1000)
        expected = self.clean(log_uri, database)
        url = database()
        name = "crash-" + uuid.uuid4().hex[:8]
        script = textwrap.dedent(
            f"""
            from eventflow.consumers.base import ConsumerLoop
            from eventflow.consumers.projector import Projector
            from eventflow.log import open_log
            from eventflow.views.db import open_views
            engine = open_views({url!r})
            loop = ConsumerLoop(open_log({log_uri!r}), Projector(engine, {name!r}), join_group=False, max_batch=20)
            print("started", flush=True)
            while True:
                loop.step(timeout=0.2)
            """
        )
        engine = open_views(url)
        for attempt in range(2):
            process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
            assert process.stdout.readline().strip() == "started"
            # Let it apply some batches, then kill it in the middle of its work.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with engine.connect() as connection:
                    applied = connection.execute(text("SELECT count(*) FROM metrics")).scalar()
                if applied > 20_000 * (attempt + 1):
                    break
                time.sleep(0.05)
            process.send_signal(signal.SIGKILL)
            process.wait()
            assert dump(engine, name) != expected, "killed before it finished"
        engine_after = self.project(log_uri, url, name, join_group=False)
        assert dump(engine_after, name) == expected
        engine.dispose()
        engine_after.dispose()


    def test_metric_history_pages_cover_every_point_in_order(self, log_uri, database):
        from eventflow.views import queries

        with open_log(log_uri) as log:
            write_history(log, runs=1, metric_events=3, points=400)
        name = "history-" + uuid.uuid4().hex[:8]
        engine = self.project(log_uri, database(), name, join_group=False)
        with engine.connect() as connection:
            run_id = connection.execute(text("SELECT run_id FROM runs ORDER BY start_time DESC")).first()[0]
            whole, token = queries.metric_history(connection, run_id, "m1")
            assert token is None and len(whole) == 240
            assert [p["step"] for p in whole] == sorted(p["step"] for p in whole)
            assert any(math.isnan(p["value"]) for p in queries.metric_history(connection, run_id, "m2")[0])
            paged, token = [], None
            while True:
                page, token = queries.metric_history(connection, run_id, "m1", max_results=50, page_token=token)
                paged += page
                if token is None:
                    break
            assert [repr(p) for p in paged] == [repr(p) for p in whole]  # repr: NaN != NaN
        engine.dispose()


    def test_a_retried_point_is_stored_once_and_each_refusal_is_kept_with_its_code(self, log_uri, database):
        """MLflow's identity of a point (run, key, step, timestamp, value): the same points
        in two events (a request retried after a lost answer) are stored once, a point that
        differs in any of them is another point. A refused event's refusal is stored with
        MLflow's code, for the write that carried it (and for a retry of it)."""
        from eventflow.views.positions import refusal_of

        experiment = str(uuid.uuid4().int % 10**12)
        run = commands.new_run_id()
        points = [("loss", 0.5, 1000, 1), ("loss", float("nan"), 1001, 2), ("acc", 0.9, 1000, 1)]
        bad_param = commands.log_params(run, {"lr": "2"})
        orphan_tags = commands.set_tags(commands.new_run_id(), {"k": "v"})
        with open_log(log_uri) as log:
            EventLog(log).append_many([
                commands.create_experiment(experiment, f"identity-{experiment}", "file:///a"),
                commands.create_run(run, experiment, run_name="r", user_id="u", artifact_uri="file:///a/r"),
                commands.log_params(run, {"lr": "1"}),
                commands.log_metrics(run, commands.metric_columns(points)),
                commands.log_metrics(run, commands.metric_columns(points)),  # the retry: new event id, same points
                commands.log_metrics(run, commands.metric_columns([("loss", 0.5, 1000, 3), ("loss", 0.25, 1000, 1)])),
                bad_param,
                orphan_tags,
            ])
        name = "identity-" + uuid.uuid4().hex[:8]
        engine = self.project(log_uri, database(), name, join_group=False)
        with engine.connect() as connection:
            stored = connection.execute(text("SELECT key, step, timestamp, is_nan FROM metrics WHERE run_id = :r"), {"r": run}).all()
        assert sorted(stored) == sorted([("loss", 1, 1000, False), ("loss", 2, 1001, True), ("acc", 1, 1000, False),
                                         ("loss", 3, 1000, False), ("loss", 1, 1000, False)])
        assert refusal_of(engine, [bad_param.event_id], []) == (
            "INVALID_PARAMETER_VALUE",
            f"Changing param values is not allowed. Param with key='lr' was already logged with value='1' for run ID='{run}'. "
            "Attempted logging new value '2'.",
        )
        assert refusal_of(engine, [orphan_tags.event_id], []) == ("RESOURCE_DOES_NOT_EXIST", f"Run with id={orphan_tags.payload['run_id']} not found")
        engine.dispose()

    def test_a_stop_request_is_kept_while_the_run_goes_and_refused_once_it_ended(self, log_uri, database):
        """``rules.run_stoppable`` on replay as live: a stop for a running run is kept for its
        process to hear, the run's end answers it (a resumed run does not stop on it again),
        and one asked after the end, or for no run, is refused with its reason."""
        from eventflow.views.positions import refusal_of
        from eventflow.views.queries import get_stop_request

        experiment = str(uuid.uuid4().int % 10**12)
        going, ended = commands.new_run_id(), commands.new_run_id()
        too_late, unknown = commands.request_stop(ended, "late"), commands.request_stop(commands.new_run_id())
        with open_log(log_uri) as log:
            EventLog(log).append_many([
                commands.create_experiment(experiment, f"stops-{experiment}", "file:///a"),
                *(commands.create_run(r, experiment, run_name="r", user_id="u", artifact_uri="file:///a/r") for r in (going, ended)),
                commands.request_stop(going, "diverged"),
                commands.request_stop(ended),
                commands.end_run(ended, "KILLED"),
                too_late,
                unknown,
            ])
        name = "stops-" + uuid.uuid4().hex[:8]
        engine = self.project(log_uri, database(), name, join_group=False)
        with engine.connect() as connection:
            assert get_stop_request(connection, going)["reason"] == "diverged"
            assert get_stop_request(connection, ended) is None
        assert refusal_of(engine, [too_late.event_id], []) == (
            "INVALID_PARAMETER_VALUE", f"Run {ended} is KILLED: only a RUNNING or SCHEDULED run can be stopped.")
        assert refusal_of(engine, [unknown.event_id], [])[0] == "RESOURCE_DOES_NOT_EXIST"
        engine.dispose()
