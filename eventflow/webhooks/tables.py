"""The dispatcher's tables, in the views database (created next to the views).

``webhook_subscriptions`` is a view like the others: built from the ``webhook.*``
events in log order by the dispatcher, so that subscription changes and the events they
filter are applied by the same consumer, in the same transactions. ``webhook_secrets``
is not: signing secrets are kept off the log on purpose (a log is widely readable and
kept for ever), so this table is the one place they live; ``views rebuild`` carries it
across, with the dispatcher's other tables and offsets (eventflow/views/kept.py).
``webhook_deliveries`` is the outbox: a row per (subscription, event), written with the
dispatcher's offsets before any attempt, then worked through by the sender; every
attempt is a ``webhook_attempts`` row.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Engine, Index, Integer, MetaData, String, Table, Text, UniqueConstraint, inspect, text

metadata = MetaData()

subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("subscription_id", String(64), primary_key=True),
    Column("url", Text, nullable=False),
    Column("events", Text, nullable=False),  # JSON list of patterns
    Column("experiment_id", String(64)),
    Column("model_name", String(500)),
    Column("condition", Text),
    Column("status", String(16), nullable=False),  # ACTIVE | DISABLED
    Column("disabled_reason", Text),
    Column("deleted", Boolean, nullable=False),
    Column("created_time", BigInteger, nullable=False),  # events before it are not for it
    Column("updated_time", BigInteger, nullable=False),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    # None: eventflow's deliveries; "mlflow": MLflow's body, event names and headers.
    Column("flavor", String(16)),
    Column("name", String(500)),
    Column("description", Text),
    # The actor of its webhook.created: with auth on, only they and administrators see,
    # change or delete it (NULL on a database older than the column: administrators only).
    Column("created_by", String(256)),
)

secrets = Table(
    "webhook_secrets",
    metadata,
    Column("subscription_id", String(64), primary_key=True),
    Column("secret", String(200), primary_key=True),
    Column("created_time", BigInteger, nullable=False),
    Column("expires_time", BigInteger),  # None: the current secret; else a rotated-out one
)

deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("delivery_id", Integer, primary_key=True, autoincrement=True),  # also the order per entity
    Column("subscription_id", String(64), nullable=False),
    Column("event_id", String(64), nullable=False),  # the webhook-id: stable across retries
    Column("event_type", String(100), nullable=False),
    Column("entity_key", String(500), nullable=False),
    Column("event_time", BigInteger, nullable=False),
    Column("body", Text, nullable=False),  # the exact bytes every attempt sends
    Column("status", String(16), nullable=False),  # PENDING | SUCCEEDED | FAILED
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_time", BigInteger, nullable=False),
    Column("created_time", BigInteger, nullable=False),
    Column("completed_time", BigInteger),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("lease_owner", String(64)),
    Column("lease_until", BigInteger),
    UniqueConstraint("subscription_id", "event_id", name="webhook_deliveries_once"),
    Index("webhook_deliveries_head", "subscription_id", "entity_key", "status", "delivery_id"),
    Index("webhook_deliveries_pending", "status", "delivery_id"),
)

attempts = Table(
    "webhook_attempts",
    metadata,
    Column("attempt_id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", Integer, nullable=False, index=True),
    Column("time", BigInteger, nullable=False),
    Column("status_code", Integer),
    Column("latency_ms", Integer, nullable=False),
    Column("error", Text),
    Column("response", Text),  # the first KB of the answer
    Column("dispatcher", String(64), nullable=False),
)

# Which experiment a run or logged model belongs to, for the experiment filter: their
# later events carry only their own id. Filled from run.created / logged_model.created,
# which come first in the entity's partition, so the dispatcher always knows in time.
entity_experiments = Table(
    "webhook_entity_experiments",
    metadata,
    Column("entity", String(300), primary_key=True),
    Column("experiment_id", String(64), nullable=False),
)


# Columns added after the first release, all nullable: a views database made before them
# gets them on start (its old subscriptions are eventflow-flavored, i.e. NULL).
_ADDED = {"webhook_subscriptions": ("flavor", "name", "description", "created_by")}


def create_tables(engine: Engine) -> None:
    """Create the tables and add the columns that came later, under the schema lock
    (several processes may start at once on an empty database)."""
    from eventflow.views.db import schema_lock

    with schema_lock(engine) as connection:
        metadata.create_all(connection)
        for table_name, names in _ADDED.items():
            have = {column["name"] for column in inspect(connection).get_columns(table_name)}
            table = metadata.tables[table_name]
            for name in names:
                if name not in have:
                    kind = table.c[name].type.compile(engine.dialect)
                    connection.execute(text(f"ALTER TABLE {table_name} ADD COLUMN {name} {kind}"))
