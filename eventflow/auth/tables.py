"""The access tables, in the views database.

``auth_users``, ``auth_tokens`` and ``auth_permissions`` are views like the others,
built by the projector from the ``user.*``, ``token.*`` and ``permission.*`` events.
``auth_credentials`` is not: password and token hashes are kept off the log on purpose
(a log is widely readable and kept for ever), so this table is the one place they live,
as webhook secrets live in ``webhook_secrets``; ``views rebuild`` carries it across
(eventflow/views/kept.py).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Engine, MetaData, String, Table, Text

metadata = MetaData()

users = Table(
    "auth_users",
    metadata,
    Column("user_id", BigInteger, nullable=False),  # MLflow's clients show a number
    Column("username", String(256), primary_key=True),
    Column("is_admin", Boolean, nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("created_by", String(256), nullable=False),
)

tokens = Table(
    "auth_tokens",
    metadata,
    Column("token_id", String(64), primary_key=True),
    Column("username", String(256), nullable=False, index=True),
    Column("scopes", Text, nullable=False),  # comma-separated
    Column("expires_time", BigInteger),
    Column("description", Text, nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("revoked", Boolean, nullable=False),
)

permissions = Table(
    "auth_permissions",
    metadata,
    Column("resource_type", String(32), primary_key=True),  # experiment | registered_model
    Column("resource_id", String(500), primary_key=True),
    Column("username", String(256), primary_key=True),
    Column("permission", String(32), nullable=False),
)

credentials = Table(
    "auth_credentials",
    metadata,
    Column("kind", String(16), primary_key=True),  # password | token
    Column("name", String(256), primary_key=True),  # the username, or the token id
    Column("hash", String(300), nullable=False),
    Column("updated_time", BigInteger, nullable=False),
)


def create_tables(engine: Engine) -> None:
    metadata.create_all(engine)
