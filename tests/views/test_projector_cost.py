"""What a projector batch costs, on real SQLite and PostgreSQL: the statements a sync
``log_metric`` or ``log_batch`` makes the projector build and send."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import event
from sqlalchemy.sql import cache_key

from eventflow import commands
from eventflow.consumers.base import ConsumerLoop
from eventflow.consumers.projector import Projector
from eventflow.log import open_log
from eventflow.log.event_log import EventLog
from eventflow.views.db import open_views


class CountingProjector(Projector):
    """Counts, inside its batches only, the cache keys SQLAlchemy generates (one per
    statement built anew, none for a prebuilt one) and the statements sent."""

    def __init__(self, engine):
        super().__init__(engine, "cost-" + uuid.uuid4().hex[:8])
        self.counting = False
        self.keys = 0
        self.statements = 0
        event.listen(engine, "before_cursor_execute", self._sent)

    def _sent(self, *_args) -> None:
        if self.counting:
            self.statements += 1

    def counted(self, deliveries, spans):
        self.counting = True
        try:
            return super().apply(deliveries, spans)
        finally:
            self.counting = False

    apply = counted


def sync_writes(run_id: str, step: int) -> list:
    """What a sync ``log_metric`` and an mlflow ``log_batch`` append about a run."""
    return [
        commands.log_metrics(run_id, commands.metric_columns([("loss", 0.5 / (step + 1), 1000 + step, step)])),
        commands.log_params(run_id, {f"p{step}": step}),
        commands.set_tags(run_id, {f"t{step}": "x"}),
        commands.log_metrics(run_id, commands.metric_columns((f"m{i}", i * 0.1, 1000 + step, step) for i in range(10))),
    ]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def new_views(request, tmp_path):
    """A function returning the URL of a fresh, empty views database."""
    if request.param == "sqlite":
        return lambda: f"sqlite:///{tmp_path / ('views-' + uuid.uuid4().hex[:8] + '.db')}"
    return lambda: request.getfixturevalue("new_postgres_database")("cost")


@pytest.fixture
def views_url(new_views):
    return new_views()


def project_one_event_per_batch(log_dir, url, rounds: int) -> CountingProjector:
    """A run, a warm-up round of writes, then ``rounds`` counted rounds, each event its own batch."""
    engine = open_views(url)
    projector = CountingProjector(engine)
    run_id = commands.new_run_id()
    with open_log(log_dir) as log:
        events = EventLog(log)
        events.append(commands.create_run(run_id, "0", run_name="r", user_id="u", artifact_uri="file:///a"))
        events.append_many(sync_writes(run_id, 0))
        loop = ConsumerLoop(log, projector, join_group=False, max_batch=1)
        loop.catch_up(timeout=120)
        projector.keys = projector.statements = 0
        for step in range(1, rounds + 1):
            events.append_many(sync_writes(run_id, step))
        loop.catch_up(timeout=120)
        loop.close()
    engine.dispose()
    return projector


def test_the_projector_builds_no_statement_for_a_sync_write_once_warm(tmp_path, views_url, monkeypatch):
    """Building and keying a statement per batch was the largest share of a sync write's
    projector time: once warm, metric, param and tag batches reuse prebuilt statements."""
    generate = cache_key.HasCacheKey._generate_cache_key
    counting: list[CountingProjector] = []

    def counted(self):
        if counting and counting[0].counting:
            counting[0].keys += 1
        return generate(self)

    monkeypatch.setattr(cache_key.HasCacheKey, "_generate_cache_key", counted)
    original_init = CountingProjector.__init__

    def remember(self, engine):
        original_init(self, engine)
        counting.append(self)

    monkeypatch.setattr(CountingProjector, "__init__", remember)
    projector = project_one_event_per_batch(str(tmp_path / "log"), views_url, rounds=3)
    assert projector.statements > 0, "the counted batches did reach the database"
    assert projector.keys == 0, f"{projector.keys} statements were built anew in 12 warm batches"


def test_a_batch_of_metric_points_settles_the_latest_value_in_one_statement(tmp_path, views_url):
    """The latest value per key was read, compared in Python and upserted: two statements
    (two round trips on PostgreSQL) where one conditional upsert decides the same."""
    engine = open_views(views_url)
    projector = CountingProjector(engine)
    run_id = commands.new_run_id()
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_: projector.counting and sent.append(statement))
    with open_log(str(tmp_path / "log")) as log:
        events = EventLog(log)
        events.append(commands.create_run(run_id, "0", run_name="r", user_id="u", artifact_uri="file:///a"))
        events.append(commands.log_metrics(run_id, commands.metric_columns([("loss", 1.0, 1000, 0)])))
        loop = ConsumerLoop(log, projector, join_group=False, max_batch=1)
        loop.catch_up(timeout=120)
        sent.clear()
        events.append(commands.log_metrics(run_id, commands.metric_columns([("loss", 0.5, 1001, 1), ("acc", 0.9, 1001, 1)])))
        loop.catch_up(timeout=120)
        loop.close()
    engine.dispose()
    touching_latest = [s for s in sent if "latest_metrics" in s]
    assert len(touching_latest) == 1, touching_latest
    # fence, first-seen ids, the run's stage, points, latest values, entity index
    assert len([s for s in sent if not s.startswith("BEGIN")]) == 6, sent


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "values, latest",
    [
        ([1.0, 2.0, 1.5], 2.0),
        ([2.0, 2.0], 2.0),
        ([NAN, 1.0], 1.0),
        ([1.0, NAN], 1.0),
        ([NAN, -INF], NAN),  # NaN ranks as -inf: a tie, and the first one stays
        ([-INF, NAN], -INF),
        ([-INF, -1e308], -1e308),
        ([INF, 5.0], INF),
    ],
)
def test_the_latest_value_at_one_step_and_time_follows_mlflow_across_batches(tmp_path, new_views, values, latest):
    """At an equal step and timestamp the higher value is the latest, NaN lowest (as -inf,
    the first of a tie staying): the same whether the points share a batch or not."""
    from sqlalchemy import select

    from eventflow.views.tables import latest_metrics

    def settled(max_batch: int) -> float:
        engine = open_views(new_views())
        run_id = commands.new_run_id()
        with open_log(str(tmp_path / f"log-{max_batch}")) as log:
            events = EventLog(log)
            events.append(commands.create_run(run_id, "0", run_name="r", user_id="u", artifact_uri="file:///a"))
            for value in values:
                events.append(commands.log_metrics(run_id, commands.metric_columns([("m", value, 1000, 3)])))
            loop = ConsumerLoop(log, Projector(engine, "latest"), join_group=False, max_batch=max_batch)
            loop.catch_up(timeout=120)
            loop.close()
        with engine.connect() as connection:
            row = connection.execute(select(latest_metrics.c.value, latest_metrics.c.is_nan).where(latest_metrics.c.run_id == run_id)).one()
        engine.dispose()
        return NAN if row.is_nan else row.value

    for max_batch in (1, 100):
        got = settled(max_batch)
        assert (got != got and latest != latest) or got == latest, f"max_batch={max_batch}: {got} is latest, not {latest}"
