"""The jobs views, built by the projector from the ``job.*`` events.

``jobs`` holds each job's definition as its last ``job.created`` / ``job.updated`` says;
``job_runs`` one row per run of a job (``job.triggered``), its history: the fold of the
run's events (eventflow/jobs/runs.py), as every agent folds them.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, Integer, MetaData, String, Table, Text

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("name", String(500), nullable=False),
    Column("project_uri", Text, nullable=False),
    Column("entry_point", String(500), nullable=False),
    Column("parameters", Text, nullable=False),  # JSON object
    Column("env_manager", String(20)),
    Column("experiment_name", String(500)),
    Column("cron", String(200)),
    Column("timezone", String(64), nullable=False),
    Column("on_events", Text, nullable=False),  # JSON list of patterns
    Column("model_name", String(500)),
    Column("alias", String(256)),
    Column("condition", Text),
    Column("experiment_id", String(64)),  # the trigger's filter
    Column("retries", Integer, nullable=False),
    Column("retry_delay", Float, nullable=False),
    Column("timeout", Float),
    Column("max_concurrent", Integer, nullable=False),
    Column("on_overlap", String(10), nullable=False),
    Column("queue", String(100), nullable=False),
    Column("catch_up", Boolean, nullable=False),
    Column("paused", Boolean, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("created_time", BigInteger, nullable=False),
    Column("created_by", String(256)),
    Column("updated_time", BigInteger, nullable=False),
)

job_runs = Table(
    "job_runs",
    metadata,
    Column("trigger_id", String(64), primary_key=True),
    Column("job_id", String(64), nullable=False, index=True),
    Column("reason", String(16), nullable=False),  # cron | event | manual
    Column("cause_event_id", String(64)),
    Column("tick", BigInteger),
    Column("parameters", Text, nullable=False),  # JSON object, resolved
    Column("triggered_time", BigInteger, nullable=False),
    # the fold of its events (eventflow/jobs/runs.py)
    Column("status", String(16), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("agent_id", String(256)),
    Column("lease_ms", BigInteger, nullable=False),
    Column("renewed", BigInteger, nullable=False),
    Column("available", BigInteger, nullable=False),
    Column("run_id", String(64)),
    Column("exit_code", Integer),
    Column("detail", Text),  # why it failed, was skipped or cancelled
    Column("cancel_requested", Boolean, nullable=False),
    Column("updated_time", BigInteger, nullable=False),
)
