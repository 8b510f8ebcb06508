"""``eventflow log copy --from HOME --to kafka://…`` moves an embedded installation to
Kafka (issue 15): afterwards ``eventflow views rebuild`` on the target (Kafka +
PostgreSQL) gives the views that a rebuild of the source (embedded + SQLite) gives, row
for row — runs, params, metrics with NaN, tags, artifacts, renames, a dead-lettered
param, registered models, versions, aliases and stages.

Copying moves an installation to a *new* cluster, so the target is a broker of this
test's own (Apache Kafka from Maven Central, started as ``tests/conftest.py`` starts the
session's when no other is given): the session's shared broker holds other tests' events
on the same lifecycle topics, and the views of those would differ from the source's.
A second copy adds nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from eventflow import commands
from eventflow.log import open_log
from eventflow.log.event_log import EventLog
from eventflow.registry import commands as registry

sys.path.insert(0, str(Path(__file__).parents[1] / "views"))
from projector_contract import dump, write_history  # noqa: E402


@pytest.fixture(scope="module")
def empty_kafka(tmp_path_factory):
    """A real, empty Apache Kafka broker for this module."""
    from eventflow.dev.kafka import LocalKafka, ServiceUnavailable

    kafka = LocalKafka(data_dir=tmp_path_factory.mktemp("empty-kafka"), stop_timeout=20)
    try:
        kafka.start()
    except ServiceUnavailable as exc:
        import os

        if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
            pytest.fail(f"no Kafka broker can start: {exc}")
        pytest.skip(f"no Kafka broker can start: {exc}")
    try:
        yield kafka.bootstrap
    finally:
        kafka.stop()


def registry_history(log) -> None:  # type: ignore[no-untyped-def]
    events = EventLog(log)
    events.append_many([
        registry.create_registered_model("churn", "predicts churn", [("team", "ml")]),
        registry.create_model_version("churn", "1", "models:/m-1"),
        registry.create_model_version("churn", "2", "models:/m-2"),
        registry.set_alias("churn", "production", "1"),
        registry.transition_stage("churn", "1", "Production"),
        registry.set_alias("churn", "production", "2"),
        registry.transition_stage("churn", "2", "Production", archive_existing_versions=True),
        registry.rename_registered_model("churn", "churn-v2"),
        registry.set_model_version_tag("churn-v2", "2", "validated", "yes"),
    ])


def eventflow(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eventflow", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.kafka
def test_a_copy_to_kafka_rebuilds_to_the_same_views_row_for_row(empty_kafka, new_postgres_database, tmp_path):
    source = tmp_path / "home"
    log = open_log(str(source / "log"))
    write_history(log)
    registry_history(log)
    experiment = commands.create_experiment("4242", "second", "file:///b")
    EventLog(log).append(experiment)
    log.close()

    done = eventflow("log", "copy", "--from", str(source), "--to", f"kafka://{empty_kafka}")
    assert done.returncode == 0, done.stderr
    assert "skipped 0 already on the target" in done.stdout, done.stdout

    before = eventflow("views", "rebuild", "--home", str(source), "--into", f"sqlite:///{tmp_path / 'source.db'}")
    assert before.returncode == 0, before.stderr
    target_db = new_postgres_database("copied")
    after = eventflow("views", "rebuild", "--home", str(tmp_path / "kafka-home"), "--kafka", empty_kafka, "--into", target_db)
    assert after.returncode == 0, after.stderr

    expected = dump(create_engine(f"sqlite:///{tmp_path / 'source.db'}"), "projector")
    copied = dump(create_engine(target_db), "projector")
    assert sum(len(rows) for rows in expected.values()) > 100, "the source views hold the history"
    assert {t for t, rows in expected.items() if rows} >= {"runs", "params", "metrics", "registered_models", "model_versions"}
    differs = {table: (len(set(expected[table]) - set(copied[table])), len(set(copied[table]) - set(expected[table])))
               for table in expected if set(expected[table]) != set(copied[table])}
    assert differs == {}, f"(rows only in the source, rows only in the copy) per table: {differs}"

    again = eventflow("log", "copy", "--from", str(source), "--to", f"kafka://{empty_kafka}")
    assert again.returncode == 0, again.stderr
    assert "appended 0 records" in again.stdout, again.stdout
    check = eventflow("log", "verify", "--log", f"kafka://{empty_kafka}")
    assert check.returncode == 0, check.stdout + check.stderr
