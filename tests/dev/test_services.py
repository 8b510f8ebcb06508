"""The services the tests run against are real: a Kafka broker and a PostgreSQL server."""

from __future__ import annotations

import uuid

import pytest
from click.testing import CliRunner

from eventflow.cli import main


@pytest.mark.kafka
def test_kafka_round_trips_a_record(kafka_bootstrap: str):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic
    from kafka.structs import TopicPartition

    topic = f"services-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        admin.wait_for_topics([topic], timeout_ms=30000)
        assert topic in admin.list_topics()
    finally:
        admin.close()

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    try:
        metadata = producer.send(
            topic, key=b"run-1", value=b"hello, kafka", headers=[("type", b"test")]
        ).get(timeout=30)
    finally:
        producer.close()
    assert metadata.topic == topic and metadata.offset == 0

    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        group_id=f"services-{uuid.uuid4().hex[:10]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        consumer.assign([TopicPartition(topic, metadata.partition)])
        consumer.seek_to_beginning()
        records = []
        for _ in range(60):
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
            if records:
                break
    finally:
        consumer.close()
    assert [(r.key, r.value, list(r.headers)) for r in records] == [(b"run-1", b"hello, kafka", [("type", b"test")])]


@pytest.mark.kafka
def test_kafka_cluster_metadata(kafka_bootstrap: str):
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        cluster = admin.describe_cluster()
    finally:
        admin.close()
    brokers = cluster["brokers"]
    assert len(brokers) >= 1
    assert cluster["cluster_id"]
    assert cluster["controller_id"] is not None
    host, _, port = kafka_bootstrap.rpartition(":")
    assert any(str(b["port"]) == port for b in brokers), (brokers, kafka_bootstrap)


@pytest.mark.postgres
def test_postgres_is_real_and_writable(postgres_url: str):
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    table = f"services_{uuid.uuid4().hex[:10]}"
    try:
        with engine.begin() as conn:
            assert "PostgreSQL" in conn.execute(sa.text("SELECT version()")).scalar_one()
            conn.execute(sa.text(f"CREATE TABLE {table} (id serial PRIMARY KEY, name text NOT NULL, value jsonb)"))
            conn.execute(
                sa.text(f"INSERT INTO {table} (name, value) VALUES (:name, CAST(:value AS jsonb))"),
                [{"name": "alpha", "value": '{"x": 1}'}, {"name": "βeta", "value": '{"x": 2}'}],
            )
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT name, value FROM {table} ORDER BY id")).all()
            assert [tuple(r) for r in rows] == [("alpha", {"x": 1}), ("βeta", {"x": 2})]
            assert conn.execute(sa.text("SHOW server_encoding")).scalar_one() == "UTF8"
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table}"))
    finally:
        engine.dispose()


@pytest.mark.parametrize("service, words", [
    ("kafka", ["Apache Kafka", "--port", "--data-dir", "eventflow server --kafka"]),
    ("postgres", ["PostgreSQL", "--port", "--data-dir", "eventflow server --db"]),
])
def test_dev_commands_explain_themselves(service: str, words: list[str]):
    result = CliRunner().invoke(main, ["dev", service, "--help"])
    assert result.exit_code == 0, result.output
    for word in words:
        assert word in result.output


def test_dev_group_lists_the_services():
    result = CliRunner().invoke(main, ["dev", "--help"])
    assert result.exit_code == 0, result.output
    assert "kafka" in result.output and "postgres" in result.output


def test_a_started_service_shows_its_log_and_an_unstarted_one_says_so(tmp_path):
    from eventflow.dev.kafka import LocalKafka
    from eventflow.dev.postgres import LocalPostgres

    assert LocalKafka().log_file is None and "no data directory" in LocalKafka().log_tail()
    with LocalPostgres(quiet=True) as postgres:
        assert postgres.log_file is not None and postgres.log_file.exists()
        assert "postgres.log" in postgres.log_tail()
