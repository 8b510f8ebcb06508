"""The lifecycle topics are kept for ever, and checked: on a real Kafka broker.

A cluster's default (``log.retention.hours=168``) deletes records after a week, and a
rebuild, an audit or a replay from offset zero would silently lose history. So eventflow
creates its topics with ``retention.ms=-1`` and ``retention.bytes=-1``, and the server and
every consumer refuse to start on a lifecycle topic that expires (made by hand, or by an
operator's defaults), naming the topic and the ``kafka-configs`` command that fixes it.

The broker is this module's own (a topic made to expire would stop every other Kafka
test of the session from starting).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

from eventflow.events import DEAD_LETTER_TOPIC, LIFECYCLE_TOPICS
from eventflow.log.kafka import KafkaLog

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
from serving import free_port, running_server  # noqa: E402

WEEK_MS = str(7 * 24 * 3600 * 1000)


@pytest.fixture(scope="module")
def broker():
    from eventflow.dev.kafka import LocalKafka, ServiceUnavailable

    kafka = LocalKafka(stop_timeout=20)
    try:
        kafka.start()
    except ServiceUnavailable as error:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"no local Kafka broker: {error}")
        pytest.skip(f"no local Kafka broker: {error}")
    yield kafka.bootstrap
    kafka.stop()


def configs_of(bootstrap: str, topics) -> dict[str, dict[str, str]]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        keys = {"retention.ms": None, "retention.bytes": None, "cleanup.policy": None, "message.timestamp.type": None}
        found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t, dict(keys)) for t in topics], config_filter="all")
    finally:
        admin.close()
    return {topic: {key: entry["value"] for key, entry in entries.items()} for topic, entries in found["topic"].items()}


def eventflow(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the CLI; a process that is still running at the deadline did not refuse."""
    try:
        return subprocess.run([sys.executable, "-m", "eventflow", *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"eventflow {' '.join(args)} kept running instead of refusing: {expired.stderr!r}")


def test_topics_are_created_to_be_kept_for_ever(broker):
    log = KafkaLog(broker)
    try:
        log.create_topic("eventflow.kept")
    finally:
        log.close()
    configs = configs_of(broker, ["eventflow.kept"])["eventflow.kept"]
    assert configs["retention.ms"] == "-1" and configs["retention.bytes"] == "-1", configs
    assert configs["message.timestamp.type"] == "LogAppendTime"  # still stamped by the broker
    assert configs["cleanup.policy"] == "delete"  # never compacted to the latest record per key


def test_replicated_topics_tolerate_one_replica_down_but_no_more():
    from eventflow.log.kafka import topic_configs

    assert topic_configs(1).get("min.insync.replicas") is None
    assert topic_configs(3)["min.insync.replicas"] == "2"
    assert topic_configs(2)["min.insync.replicas"] == "1"


def test_the_server_and_a_consumer_refuse_topics_that_expire_and_start_with_the_override(broker, tmp_path):
    admin = KafkaAdminClient(bootstrap_servers=broker)
    try:  # made by hand, the way an operator's script or a cluster default would
        admin.create_topics([
            NewTopic("eventflow.runs", 3, 1, topic_configs={"retention.ms": WEEK_MS}),
            NewTopic("eventflow.models", 3, 1, topic_configs={"cleanup.policy": "compact"}),
        ])
    finally:
        admin.close()

    for command in (["consume", "projector"], ["server", "--port", str(free_port())]):
        refused = eventflow(*command, "--kafka", broker, "--home", str(tmp_path / "refused"))
        assert refused.returncode != 0, refused.stderr
        err = refused.stderr
        assert "eventflow.runs" in err and f"retention.ms={WEEK_MS}" in err, err
        assert "eventflow.models" in err and "cleanup.policy=compact" in err, err
        assert "kafka-configs" in err and f"--bootstrap-server {broker}" in err, err
        assert "--entity-name eventflow.runs --add-config retention.ms=-1,retention.bytes=-1" in err, err
        assert "--allow-finite-retention" in err, err
        assert "Traceback" not in err, err
    # The topics that did not exist were made to be kept; the wrong ones were left alone.
    configs = configs_of(broker, [*LIFECYCLE_TOPICS, DEAD_LETTER_TOPIC])
    assert configs[DEAD_LETTER_TOPIC]["retention.ms"] == "-1" and configs["eventflow.experiments"]["retention.ms"] == "-1"
    assert configs["eventflow.runs"]["retention.ms"] == WEEK_MS

    with running_server(tmp_path / "allowed", "--kafka", broker, "--allow-finite-retention") as url:
        assert httpx.get(url + "/health").status_code == 200
        assert httpx.post(url + "/api/2.0/mlflow/experiments/create", json={"name": "kept-anyway"}, timeout=90).status_code == 200
    said = (tmp_path / "allowed" / "server.out").read_text()
    assert "WARNING" in said and "eventflow.runs" in said and "deletes history" in said, said

    out = open(tmp_path / "projector.out", "w+")
    projector = subprocess.Popen(
        [sys.executable, "-m", "eventflow", "consume", "projector", "--kafka", broker, "--home", str(tmp_path / "allowed"), "--allow-finite-retention"],
        stdout=out, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while "consuming" not in (tmp_path / "projector.out").read_text():
            assert projector.poll() is None, (tmp_path / "projector.out").read_text()
            assert time.monotonic() < deadline, "the projector did not start"
            time.sleep(0.2)
    finally:
        projector.terminate()
        projector.wait(timeout=30)
        out.close()
    said = (tmp_path / "projector.out").read_text()
    assert "WARNING" in said and "eventflow.models" in said, said

    # Fixed with the printed command's settings, it starts without the override.
    admin = KafkaAdminClient(bootstrap_servers=broker)
    try:
        kept = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, dict(kept)) for topic in ("eventflow.runs", "eventflow.models")])
    finally:
        admin.close()
    with running_server(tmp_path / "fixed", "--kafka", broker) as url:
        assert httpx.get(url + "/health").status_code == 200


def test_compose_brokers_keep_records_for_ever():
    """compose/'s broker defaults keep even a topic made by hand (the default is a week)."""
    import pathlib

    import yaml

    compose = yaml.safe_load((pathlib.Path(__file__).parents[2] / "compose" / "docker-compose.yml").read_text())
    environment = compose["services"]["kafka"]["environment"]
    assert str(environment["KAFKA_LOG_RETENTION_MS"]) == "-1"
    assert str(environment["KAFKA_LOG_RETENTION_BYTES"]) == "-1"
