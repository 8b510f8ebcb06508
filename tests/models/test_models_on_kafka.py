"""The model round trip on the distributed backends: a server on Kafka with PostgreSQL views."""

from __future__ import annotations

import os
import sys

import httpx
import pytest

import eventflow
import eventflow.models as models

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
sys.path.insert(0, os.path.dirname(__file__))
from scoring import scoring_server  # noqa: E402
from serving import running_server  # noqa: E402

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


@pytest.fixture
def kafka_server(tmp_path, kafka_bootstrap, new_postgres_database, monkeypatch):
    db = new_postgres_database("models")
    home = tmp_path / "home"
    with running_server(home, "--kafka", kafka_bootstrap, "--db", db) as url:
        monkeypatch.setenv("EVENTFLOW_CAPTURE_ENV", "false")
        eventflow.set_tracking_uri(url)
        try:
            yield url, home
        finally:
            while eventflow.active_run():
                eventflow.end_run()
            eventflow.set_tracking_uri(None)


def test_log_load_serve_and_refuse_a_changed_file_on_kafka_and_postgresql(kafka_server, estimator, frame, tmp_path):
    url, home = kafka_server
    with eventflow.start_run() as run:
        info = models.log_model(estimator, "model", input_example=frame.head(2))
    model = models.load_model(info.model_uri)
    assert list(model.predict(frame)) == list(estimator.predict(frame))
    with scoring_server(info.model_uri, "--tracking-uri", url, log_path=str(tmp_path / "serve.out")) as scoring:
        response = httpx.post(scoring + "/invocations", json={"dataframe_split": frame.to_dict(orient="split")})
        assert response.json() == {"predictions": [int(v) for v in estimator.predict(frame)]}
    stored = next(home.rglob(f"{run.run_id}/artifacts/model/MLmodel"))
    stored.write_text(stored.read_text().replace("predict_fn: predict", "predict_fn: predict_proba"))
    with pytest.raises(models.ModelIntegrityError, match="model/MLmodel.*sha256"):
        models.load_model(info.model_uri)
