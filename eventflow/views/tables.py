"""The views' tables, shaped like MLflow's tracking model (so MLflow's API maps 1:1).

A view's schema change is a rebuild from the log (``eventflow views rebuild``), never a
migration: the log is the source of truth.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

experiments = Table(
    "experiments",
    metadata,
    Column("experiment_id", String(64), primary_key=True),
    Column("name", String(500), nullable=False, unique=True),
    Column("artifact_location", Text, nullable=False),
    Column("lifecycle_stage", String(32), nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_update_time", BigInteger, nullable=False),
)

experiment_tags = Table(
    "experiment_tags",
    metadata,
    Column("experiment_id", String(64), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(256), primary_key=True),
    Column("experiment_id", String(64), nullable=False, index=True),
    Column("run_name", String(250), nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("status", String(20), nullable=False),
    Column("start_time", BigInteger, nullable=False),
    Column("end_time", BigInteger),
    Column("lifecycle_stage", String(32), nullable=False),
    Column("artifact_uri", Text, nullable=False),
    Column("parent_run_id", String(256)),
    Column("deleted_time", BigInteger),
)

params = Table(
    "params",
    metadata,
    Column("run_id", String(256), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

tags = Table(
    "tags",
    metadata,
    Column("run_id", String(256), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

# Every point, as logged, once: as in MLflow's store, (run, key, step, timestamp, value)
# is a point's identity, so a retried request (or an event appended twice) stores it
# once. NaN is stored as value 0 with is_nan set (SQLite turns NaN into NULL); ±inf are
# stored as they are.
METRIC_IDENTITY = "metrics_identity"

metrics = Table(
    "metrics",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(256), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Float(precision=53), nullable=False),
    Column("is_nan", Boolean, nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Index(METRIC_IDENTITY, "run_id", "key", "step", "timestamp", "value", "is_nan", unique=True),
)

latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column("run_id", String(256), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Float(precision=53), nullable=False),
    Column("is_nan", Boolean, nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("run_id", String(256), primary_key=True),
    Column("path", String(1000), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("logged_time", BigInteger, nullable=False),
)

datasets = Table(
    "datasets",
    metadata,
    Column("experiment_id", String(64), primary_key=True),
    Column("name", String(500), primary_key=True),
    Column("digest", String(36), primary_key=True),
    Column("source_type", String(36), nullable=False),
    Column("source", Text, nullable=False),
    Column("schema", Text),
    Column("profile", Text),
)

inputs = Table(
    "inputs",
    metadata,
    Column("run_id", String(256), primary_key=True),
    Column("dataset_name", String(500), primary_key=True),
    Column("dataset_digest", String(36), primary_key=True),
    Column("tags", Text, nullable=False),  # JSON list of {key, value}
)

# What a project run ran (``run.project_recorded``): one row per run, as eventflow run
# recorded it, so that the run can be rebuilt (eventflow/projects/records.py).
run_projects = Table(
    "run_projects",
    metadata,
    Column("run_id", String(256), primary_key=True),
    Column("name", String(500)),
    Column("uri", Text, nullable=False),
    Column("subdirectory", Text, nullable=False),
    Column("version", String(500)),
    Column("commit", String(64)),
    Column("repo_url", Text),
    Column("entry_point", Text, nullable=False),
    Column("parameters", Text, nullable=False),  # JSON list of {key, value}
    Column("command", Text, nullable=False),
    Column("env_manager", String(32), nullable=False),
    Column("env_digest", String(128)),
    Column("python_version", String(64)),
    Column("packages", Text, nullable=False),
    Column("patch_path", Text),
    Column("patch_sha256", String(64)),
    Column("recorded_time", BigInteger, nullable=False),
)

# A stop asked for a running run (``run.stop_requested``): its training process polls
# here, and ends the run KILLED. The last request of a run is kept.
run_stop_requests = Table(
    "run_stop_requests",
    metadata,
    Column("run_id", String(256), primary_key=True),
    Column("requested_time", BigInteger, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("reason", Text),
)

# MLflow 3's logged models: a model's files live under artifact_location.
logged_models = Table(
    "logged_models",
    metadata,
    Column("model_id", String(64), primary_key=True),
    Column("experiment_id", String(64), nullable=False, index=True),
    Column("name", String(250), nullable=False),
    Column("artifact_location", Text, nullable=False),
    Column("status", String(32), nullable=False),
    Column("status_message", Text),
    Column("model_type", String(250)),
    Column("source_run_id", String(256), index=True),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_updated_time", BigInteger, nullable=False),
    Column("lifecycle_stage", String(32), nullable=False),
)

logged_model_tags = Table(
    "logged_model_tags",
    metadata,
    Column("model_id", String(64), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

logged_model_params = Table(
    "logged_model_params",
    metadata,
    Column("model_id", String(64), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

logged_model_artifacts = Table(
    "logged_model_artifacts",
    metadata,
    Column("model_id", String(64), primary_key=True),
    Column("path", String(1000), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("logged_time", BigInteger, nullable=False),
)

# Metric points logged about a logged model (MLflow 3), keyed as MLflow keys them: one row
# per model, key, step, timestamp and run; the first point logged with that key wins. The
# run's own copy of each point is in metrics. No foreign key to logged_models: on a
# rebuild, a run's metrics may be read before the model's creation (another topic).
logged_model_metrics = Table(
    "logged_model_metrics",
    metadata,
    Column("model_id", String(64), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("step", BigInteger, primary_key=True),
    Column("timestamp", BigInteger, primary_key=True),
    Column("run_id", String(256), primary_key=True),
    Column("value", Float(precision=53), nullable=False),
    Column("is_nan", Boolean, nullable=False),
    Column("experiment_id", String(64)),
    Column("dataset_name", String(500)),
    Column("dataset_digest", String(36)),
)

# MLflow 3: the logged models a run took as inputs (log-inputs' "models").
run_model_inputs = Table(
    "run_model_inputs",
    metadata,
    Column("run_id", String(256), primary_key=True),
    Column("model_id", String(64), primary_key=True),
)

run_outputs = Table(
    "run_outputs",
    metadata,
    Column("run_id", String(256), primary_key=True),
    Column("model_id", String(64), primary_key=True),
    Column("step", BigInteger, nullable=False),
)

# The model registry. Versions keep their row when deleted (lifecycle_stage "deleted") so a
# number is never handed out twice; deleting a registered model removes all its rows.
# event_id is the event that made the row (a model's: its creation or the rename that
# gave it its name), which lets a writer see whether its own event won a race.
registered_models = Table(
    "registered_models",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("description", Text),
    Column("user_id", String(256)),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_updated_time", BigInteger, nullable=False),
    Column("event_id", String(36), nullable=False),
)

registered_model_tags = Table(
    "registered_model_tags",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("description", Text),
    Column("user_id", String(256)),
    Column("current_stage", String(20), nullable=False),
    Column("source", Text, nullable=False),
    Column("run_id", String(256), index=True),
    Column("run_link", Text),
    Column("model_id", String(64)),
    Column("lifecycle_stage", String(32), nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_updated_time", BigInteger, nullable=False),
    Column("event_id", String(36), nullable=False),
)

model_version_tags = Table(
    "model_version_tags",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

# The files each version pinned when it was created (its source's files as the log recorded
# them then): loading, serving and deploying the version verify against these, never
# against a later ``run.artifact_logged``. A version with no rows pinned nothing.
model_version_files = Table(
    "model_version_files",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("path", String(1000), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
)

registered_model_aliases = Table(
    "registered_model_aliases",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("alias", String(256), primary_key=True),
    Column("version", Integer, nullable=False),
)

# The last registry event applied about each name, kept after the model is deleted or
# renamed away: a rename onto a used name says it must follow that event.
registry_names = Table(
    "registry_names",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("event_id", String(36), nullable=False),
)

# Registry events that arrived before the model they name: on a rebuild, events keyed by
# a model's new name (another partition) may be read before the rename that made it.
# They wait here, in log order, and apply once a creation or rename brings the name.
registry_parked = Table(
    "registry_parked",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("name", String(256), nullable=False, index=True),
    Column("seq", BigInteger, nullable=False),  # arrival order
    Column("event", Text, nullable=False),  # the event as JSON (type, envelope, payload)
)

# Events already applied, by id: a producer that retries (a lost HTTP answer, a Kafka
# timeout while the client still holds the records) may append an event twice.
applied_events = Table(
    "applied_events",
    metadata,
    Column("event_id", String(36), primary_key=True),
)

# The events the projector refused, by id, with MLflow's error code and the message: the
# write that appended one is answered with its refusal, and so is a retry of it (same id).
refused_events = Table(
    "refused_events",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("error_code", String(64), nullable=False),
    Column("message", Text, nullable=False),
)

# Where each consumer is in each partition: written in the same transaction as the rows.
log_positions = Table(
    "log_positions",
    metadata,
    Column("consumer", String(100), primary_key=True),
    Column("topic", String(249), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
)

# Where each entity's events are on the log (eventflow/audit/index.py): a row per event
# and entity it is about, written by the projector in the batch's transaction, so that the
# history of one run or model is read from its own positions, not from a scan of its topic.
entity_events = Table(
    "entity_events",
    metadata,
    Column("entity_type", String(32), primary_key=True),
    Column("entity", String(512), primary_key=True),
    Column("topic", String(249), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("offset", BigInteger, primary_key=True),
    Column("time", BigInteger, nullable=False),
    Column("event_type", String(64), nullable=False),
)
