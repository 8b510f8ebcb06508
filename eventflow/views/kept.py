"""What the views database holds that a replay of the log cannot rebuild, and how
``eventflow views rebuild`` keeps it.

Two kinds, declared here and nowhere else:

- ``SECRETS``: password and token hashes (``auth_credentials``) and webhook signing
  secrets (``webhook_secrets``). Kept off the log on purpose; an acknowledged write of one
  has no other copy.
- ``CONSUMER_STATE``: what the consumers that keep their own offsets in the views have
  done — the webhook dispatcher's subscriptions, outbox (``webhook_deliveries``: what was
  sent, what is pending, how many attempts), attempts and entity map, and the OpenLineage
  consumer's sent-state — together with those consumers' rows of ``log_positions``
  (every consumer's but the projector's). Each was written in the same transaction as
  its offsets, so the two only make sense together.

The decision: a rebuild *carries* both into the new database exactly — read in one
snapshot of the old views, written in one transaction, while the rebuild holds the views
exclusively (eventflow/views/lock.py), so nothing is written meanwhile — rather than
keeping them in a store the rebuild never touches. Why: the outbox and its offsets
must commit together (a delivery recorded exactly once), so they cannot move to
another database without the dispatcher's offsets and the subscriptions they are matched
against; carried as one, the dispatcher resumes where it stood: nothing sent again,
nothing missed, failure counts kept. (Left to replay, it would record and send again
every delivery since each subscription was made.)

The views commit without waiting for their flush (SQLite ``synchronous=NORMAL``,
PostgreSQL ``synchronous_commit=off``, issue 19), where a machine crash may lose the last
commits. That is fine for the derived rows and for ``CONSUMER_STATE`` (their offsets are
lost with them: the batch is applied again, at worst a delivery goes once more, with the
same webhook-id), but not for ``SECRETS``, which have no offsets to stay with: a
transaction that writes one is flushed at its commit (eventflow/views/db.py
``_secrets_durable_at_commit``, keyed on this tuple), so they stay in the one database
this carry copies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import ColumnElement, Connection, Engine, MetaData, Table, inspect, select, text

from eventflow.views.positions import PROJECTOR
from eventflow.views.tables import log_positions

SECRETS = ("auth_credentials", "webhook_secrets")
CONSUMER_STATE = (
    "webhook_subscriptions", "webhook_deliveries", "webhook_attempts", "webhook_entity_experiments", "openlineage_state",
    # the alert watcher's (consumers/alerts.py): its offsets are carried, so its rules and series must be
    "alert_rules", "alert_runs", "alert_series", "alert_emitted",
    "watched_runs",  # the run watchdog's (consumers/watchdog.py): a run silent since before the rebuild is still judged
    # the scheduler's (consumers/scheduler.py), likewise: its jobs, the ticks it owes, the triggers it appended
    "scheduler_jobs", "scheduler_emitted",
)
KEPT_TABLES = (*SECRETS, *CONSUMER_STATE)

_CHUNK = 1000


def carry_kept(source: Engine, target: Engine) -> dict[str, int]:
    """Copy what the log does not hold from the views being replaced into rebuilt ones,
    replacing whatever the target had of it; returns how many rows each table carried
    (``log_positions``: the other consumers' offsets)."""
    from eventflow.alerts.tables import create_tables as create_alert_tables
    from eventflow.consumers.openlineage import create_tables as create_lineage_tables
    from eventflow.consumers.watchdog import create_tables as create_watchdog_tables
    from eventflow.consumers.scheduler import create_tables as create_scheduler_tables
    from eventflow.webhooks.tables import create_tables as create_webhook_tables

    create_webhook_tables(target)
    create_lineage_tables(target)
    create_alert_tables(target)
    create_watchdog_tables(target)
    create_scheduler_tables(target)
    present = set(inspect(source).get_table_names())
    carried: dict[str, int] = {}
    with _snapshot(source) as reading, target.begin() as writing:
        for name in KEPT_TABLES:
            if name in present:
                carried[name] = _copy(reading, writing, Table(name, MetaData(), autoload_with=reading),
                                      Table(name, MetaData(), autoload_with=writing))
        others = log_positions.c.consumer != PROJECTOR
        writing.execute(log_positions.delete().where(others))
        carried["log_positions"] = _copy(reading, writing, log_positions, log_positions, where=others, clear=False)
    return carried


@contextlib.contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """One transaction that sees one moment of the database, for every table it reads."""
    options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    with engine.connect().execution_options(**options) as connection, connection.begin():
        yield connection


def _copy(reading: Connection, writing: Connection, source: Table, target: Table, *,
          where: ColumnElement[bool] | None = None, clear: bool = True) -> int:
    # An older views database may lack columns added since: copy the ones both have.
    shared = [c.name for c in source.columns if c.name in target.columns]
    if clear:
        writing.execute(target.delete())
    query = select(*[source.c[n] for n in shared])
    if where is not None:
        query = query.where(where)
    copied = 0
    for rows in reading.execution_options(yield_per=_CHUNK).execute(query).partitions():
        writing.execute(target.insert(), [dict(zip(shared, row)) for row in rows])
        copied += len(rows)
    _follow_sequence(writing, target)
    return copied


def _follow_sequence(writing: Connection, table: Table) -> None:
    """On PostgreSQL, move a serial key's sequence past the rows copied with their keys,
    or the next insert would be given a key already taken."""
    column = table.autoincrement_column
    if writing.dialect.name != "postgresql" or column is None:
        return
    writing.execute(
        text(f"SELECT setval(pg_get_serial_sequence(:table, :column), COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false)"),
        {"table": table.name, "column": column.name},
    )
