"""A real fault: the Kafka broker stops while training code logs, and comes back."""

from __future__ import annotations

import time

import pytest

import eventflow
from eventflow.dev.kafka import LocalKafka


@pytest.mark.kafka
def test_points_logged_while_the_broker_is_down_arrive_once_it_is_back(tmp_path, monkeypatch, kafka_bootstrap):
    # kafka_bootstrap: the suite's broker must be available (this proves Java and the
    # broker's jars are here); this test stops and restarts a broker of its own.
    data = tmp_path / "kafka"
    broker = LocalKafka(data_dir=data, quiet=True).start()
    port = broker.port
    uri = f"kafka://{broker.bootstrap}"
    monkeypatch.setenv("EVENTFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EVENTFLOW_DB", f"sqlite:///{tmp_path / 'views.db'}")
    monkeypatch.setenv("EVENTFLOW_CAPTURE_ENV", "false")
    eventflow.set_tracking_uri(uri)
    restarted = None
    try:
        eventflow.set_experiment("outage")
        run = eventflow.start_run()
        for step in range(500):
            eventflow.log_metric("loss", 1.0 / (step + 1), step=step)
        eventflow.flush(timeout=60)
        broker.stop()
        started = time.perf_counter()
        for step in range(500, 3000):
            eventflow.log_metric("loss", 1.0 / (step + 1), step=step)
        assert time.perf_counter() - started < 5, "log calls do not wait for the broker"
        time.sleep(3)  # the sender is failing and retrying now
        restarted = LocalKafka(port=port, data_dir=data, quiet=True).start()
        eventflow.end_run()
        eventflow.flush(timeout=180)
        history = eventflow.Client(uri).get_metric_history(run.run_id, "loss")
        assert [p["step"] for p in history] == list(range(3000)), "every point, once, in order"
        assert eventflow.Client(uri).get_run(run.run_id)["info"]["status"] == "FINISHED"
    finally:
        eventflow.set_tracking_uri(None)
        broker.stop()
        if restarted is not None:
            restarted.stop()


@pytest.mark.kafka
@pytest.mark.postgres
def test_the_sdk_produces_straight_to_kafka_with_views_in_postgresql(tmp_path, monkeypatch, kafka_bootstrap, new_postgres_database):
    from sqlalchemy import create_engine, text

    db = new_postgres_database("sdk")
    name = db.rsplit("/", 1)[1]
    monkeypatch.setenv("EVENTFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EVENTFLOW_DB", db)
    monkeypatch.setenv("EVENTFLOW_CAPTURE_ENV", "false")
    uri = f"kafka://{kafka_bootstrap}"
    eventflow.set_tracking_uri(uri)
    try:
        eventflow.set_experiment("straight-to-kafka-" + name)
        with eventflow.start_run() as run:
            eventflow.log_params({"depth": 5})
            for step in range(1000):
                eventflow.log_metrics({"loss": 1 / (step + 1), "acc": step / 1000}, step=step)
        client = eventflow.Client(uri)
        found = client.get_run(run.run_id)
        assert found["info"]["status"] == "FINISHED"
        assert {p["key"]: p["value"] for p in found["data"]["params"]} == {"depth": "5"}
        assert len(client.get_metric_history(run.run_id, "acc")) == 1000
    finally:
        eventflow.set_tracking_uri(None)
    engine = create_engine(db)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM metrics WHERE run_id = :r"), {"r": run.run_id}).scalar() == 2000
    engine.dispose()
