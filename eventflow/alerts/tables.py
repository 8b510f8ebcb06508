"""The alert watcher's tables, in the views database.

``alert_rules`` and ``alert_runs`` (which experiment each run is in) are built from the
log by the watcher itself, in the transactions that evaluate the points, so a rule and
the points it judges are applied by one consumer in one order, live and on replay.
``alert_series`` holds each (rule, run, metric)'s edge state (firing or not, the best
value). ``alert_emitted`` is the one table the log cannot rebuild: the ids of the alert
events the watcher appended, so that a watcher replaying from zero (after ``views
rebuild``, which carries it) appends none of them again.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Engine, Float, MetaData, String, Table, Text

metadata = MetaData()

rules = Table(
    "alert_rules",
    metadata,
    Column("rule_id", String(64), primary_key=True),
    Column("name", String(500), nullable=False),
    Column("condition", Text, nullable=False),
    Column("experiment_id", String(64)),
    Column("level", String(16), nullable=False),
    Column("description", Text),
    Column("created_time", BigInteger, nullable=False),  # points before it are not judged
    Column("created_by", String(256)),
    Column("deleted", Boolean, nullable=False),
)

runs = Table(
    "alert_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("experiment_id", String(64), nullable=False),
)

series = Table(
    "alert_series",
    metadata,
    Column("rule_id", String(64), primary_key=True),
    Column("run_id", String(64), primary_key=True),
    Column("metric", String(250), primary_key=True),
    Column("firing", Boolean, nullable=False),
    Column("best", Float),
    Column("value", Float),  # the last point judged
    Column("step", BigInteger),
    Column("changed_time", BigInteger, nullable=False),  # when it last fired or resolved
)

emitted = Table(
    "alert_emitted",
    metadata,
    Column("event_id", String(64), primary_key=True),
)


def create_tables(engine: Engine) -> None:
    metadata.create_all(engine)
