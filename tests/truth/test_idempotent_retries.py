"""Retried requests are stored once (issue 12, finding 3).

A 503 does not say "nothing happened": during a broker outage the server gives up on an
append that kafka-python still holds and delivers later, and when the projector lags
more than the write timeout the event is already on the log. The MLflow client retries
503s (up to 7 times, by default), and each retry used to be a new event: points stored
two to four times. MLflow's own store makes (run, key, timestamp, step, value) a metric
point's identity, so there a retry is harmless; here it must be too. And a client that
sends an ``Idempotency-Key`` gets one effect and one answer for all its attempts.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import httpx
import pytest
from sqlalchemy import create_engine, text

from harness import BACKENDS, Backend, backend_for, caught_up, running_projector, running_server, stop, wait_until

from mlflow.entities import Metric, Param  # the real client, from PyPI
from mlflow.tracking import MlflowClient

API = "/api/2.0/mlflow/"
POINTS_PER_BATCH = 50


class Retries(logging.Handler):
    """Counts the MLflow client's retries (urllib3 logs each one), per request path."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.paths: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Incremented Retry"):
            self.paths.append(str(record.args[0]) if record.args else "")

    def count(self, fragment: str = "") -> int:
        return sum(fragment in path for path in self.paths)


@pytest.fixture
def retries():
    handler, logger = Retries(), logging.getLogger("urllib3.util.retry")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def batch(number: int, started_ms: int) -> list[Metric]:
    """Batch ``number``'s points: each (key, value, timestamp, step) sent once, by one batch."""
    return [Metric("loss", float(number * POINTS_PER_BATCH + j), started_ms + number, number * POINTS_PER_BATCH + j) for j in range(POINTS_PER_BATCH)]


def stored_points(backend: Backend, run_id: str) -> tuple[int, int]:
    """(rows, distinct points) of a run's metrics in the views."""
    engine = create_engine(backend.views_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT count(*) FROM metrics WHERE run_id = :r"), {"r": run_id}).scalar()
            distinct = connection.execute(
                text("SELECT count(*) FROM (SELECT DISTINCT key, timestamp, step, value FROM metrics WHERE run_id = :r) AS d"), {"r": run_id}
            ).scalar()
    finally:
        engine.dispose()
    return rows, distinct


@pytest.mark.kafka
@pytest.mark.postgres
def test_mlflow_batches_logged_through_a_broker_outage_are_stored_once(tmp_path, kafka_bootstrap, new_postgres_database, retries):
    # kafka_bootstrap: the suite's broker must be available (Java and the broker's jars are
    # here); this test stops and restarts a broker of its own.
    from eventflow.dev.kafka import LocalKafka

    data = tmp_path / "kafka"
    broker = LocalKafka(data_dir=data, quiet=True).start()
    restarted = None
    backend = Backend("kafka+postgresql", tmp_path / "home", kafka=broker.bootstrap, db=new_postgres_database("outage"))
    backend.home.mkdir()
    try:
        with running_server(backend.home, *backend.options) as url:
            client = MlflowClient(url)
            run_id = client.create_run(client.create_experiment(f"outage-{uuid.uuid4().hex[:8]}")).info.run_id
            started_ms, sent, failures = int(time.time() * 1000), [], []
            done = threading.Event()

            def log_batches() -> None:
                number = 0
                while not done.is_set():
                    try:
                        client.log_batch(run_id, metrics=batch(number, started_ms))
                    except Exception as error:  # noqa: BLE001 - out of retries: reported below
                        failures.append(repr(error)[:300])
                        return
                    sent.append(number)
                    number += 1

            writer = threading.Thread(target=log_batches, daemon=True)
            writer.start()
            wait_until(lambda: len(sent) >= 3 or failures, 120, "batches before the outage")
            broker.stop()
            # Down until the server has given up on an append (its 503: the client will retry
            # while kafka-python still holds the record).
            wait_until(lambda: "log unavailable" in (backend.home / "server.out").read_text() or failures, 180, "the server to answer 503")
            restarted = LocalKafka(port=broker.port, data_dir=data, quiet=True).start()
            after = len(sent)
            wait_until(lambda: len(sent) >= after + 2 or failures or not writer.is_alive(), 240, "batches after the outage")
            done.set()
            writer.join(timeout=240)
            assert failures == [], f"the client ran out of retries: {failures}"
            caught_up(backend)
            rows, distinct = stored_points(backend, run_id)
            assert distinct == len(sent) * POINTS_PER_BATCH
            assert rows == distinct, (
                f"{rows} metric rows for {distinct} distinct points ({len(sent)} batches sent; "
                f"the client retried {retries.count('log-batch')} times)"
            )
    finally:
        broker.stop()
        if restarted is not None:
            restarted.stop()


def test_mlflow_retries_while_the_projector_lags_are_stored_once(tmp_path, request, retries):
    """``eventflow server --no-consumers`` with a short write timeout: the projector comes
    back only after the client got its first 503 and retried."""
    backend = backend_for(request, "embedded", tmp_path / "home", "lag")
    timeout = 3
    with running_projector(backend) as first, running_server(backend.home, "--no-consumers", *backend.options,
                                                              env={"EVENTFLOW_WRITE_TIMEOUT": str(timeout)}) as url:
        client = MlflowClient(url)
        experiment_id = client.create_experiment(f"lag-{uuid.uuid4().hex[:8]}")
        stop(first)

        def while_the_projector_lags(call, path: str, label: str):  # type: ignore[no-untyped-def]
            """Run ``call`` with no projector; start one once the client retried (or waited past the timeout)."""
            result, began, before = {}, time.monotonic(), retries.count(path)
            worker = threading.Thread(target=lambda: result.update(value=call()), daemon=True)
            worker.start()
            wait_until(lambda: retries.count(path) > before or time.monotonic() - began > timeout + 5 or not worker.is_alive(),
                       120, "a retry")
            with running_projector(backend, f"projector-{label}.out"):
                worker.join(timeout=240)
                assert "value" in result, f"{path} did not succeed"
                caught_up(backend)
            return result["value"]

        run = while_the_projector_lags(lambda: client.create_run(experiment_id), "runs/create", "run")
        with running_projector(backend, "projector-check.out"):
            caught_up(backend)
            listed = [r.info.run_id for r in client.search_runs([experiment_id])]
        started_ms = int(time.time() * 1000)
        while_the_projector_lags(
            lambda: client.log_batch(run.info.run_id, metrics=batch(0, started_ms), params=[Param("p", "1")]), "log-batch", "batch"
        )
        rows, distinct = stored_points(backend, run.info.run_id)
        stored = {"runs": len(listed), "metric rows": rows, "distinct points": distinct}
        assert stored == {"runs": 1, "metric rows": POINTS_PER_BATCH, "distinct points": POINTS_PER_BATCH}, (
            f"one create_run and one log_batch of {POINTS_PER_BATCH} points stored as {stored} "
            f"(the client retried runs/create {retries.count('runs/create')} and log-batch {retries.count('log-batch')} times)"
        )


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_request_retried_with_an_idempotency_key_is_applied_once_and_answered_alike(kind, tmp_path, request):
    """Each request is sent first with no projector (503: appended, not applied), then
    again, twice, with the same key once the projector runs: one effect, one answer."""
    backend = backend_for(request, kind, tmp_path / "home", "idem")
    with running_projector(backend) as first, running_server(backend.home, "--no-consumers", *backend.options,
                                                              env={"EVENTFLOW_WRITE_TIMEOUT": "3"}) as url:
        wait_until(lambda: httpx.get(url + API + "experiments/get", params={"experiment_id": "0"}).status_code == 200, 180, "the Default experiment")
        stop(first)

        problems: list[str] = []

        def attempts(path: str, body: dict, label: str) -> list[httpx.Response]:
            key = {"Idempotency-Key": str(uuid.uuid4())}
            answers = [httpx.post(url + API + path, json=body, headers=key, timeout=120)]
            assert answers[0].status_code == 503, answers[0].text  # nothing applied yet
            with running_projector(backend, f"projector-{label}.out"):
                caught_up(backend)
                answers += [httpx.post(url + API + path, json=body, headers=key, timeout=120) for _ in range(2)]
            if [a.status_code for a in answers[1:]] != [200, 200] or answers[1].json() != answers[2].json():
                problems.append(f"{path} retried with its key: answered {[(a.status_code, a.text[:100]) for a in answers[1:]]}")
            return answers

        name = f"idem-{uuid.uuid4().hex[:8]}"
        attempts("experiments/create", {"name": name}, "experiment")
        with running_projector(backend, "projector-check.out"):
            caught_up(backend)
            experiment_id = httpx.get(url + API + "experiments/get-by-name", params={"experiment_name": name}).json()["experiment"]["experiment_id"]
        answers = attempts("runs/create", {"experiment_id": experiment_id, "start_time": 1}, "run")
        run_id = next(a.json()["run"]["info"]["run_id"] for a in answers if a.status_code == 200)
        points = [{"key": "m", "value": float(i), "timestamp": 1000, "step": i} for i in range(20)]
        attempts("runs/log-batch", {"run_id": run_id, "metrics": points}, "batch")
        with running_projector(backend, "projector-check.out"):
            caught_up(backend)
            runs = httpx.post(url + API + "runs/search", json={"experiment_ids": [experiment_id]}).json().get("runs", [])
        if len(runs) != 1:
            problems.append(f"one runs/create key, {len(runs)} runs stored")
        if stored_points(backend, run_id) != (20, 20):
            problems.append(f"one log-batch key of 20 points, stored as (rows, distinct) {stored_points(backend, run_id)}")
        assert problems == [], "\n".join(problems)
