"""The server over HTTP: the SDK through it, read-your-writes, errors, the event stream."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import httpx
import pytest

from eventflow.events import metric_points

from serving import running_server, server  # noqa: F401  (the fixture)

API = "/api/2.0/mlflow"


def test_health_and_the_default_experiment(server):
    assert httpx.get(server + "/health").text == "OK"
    found = httpx.get(server + API + "/experiments/get", params={"experiment_id": "0"}).json()
    assert found["experiment"]["name"] == "Default"
    assert found["experiment"]["lifecycle_stage"] == "active"


def test_a_write_is_readable_as_soon_as_it_returns(server):
    with httpx.Client(base_url=server + API) as http:
        for i in range(20):
            experiment_id = http.post("/experiments/create", json={"name": f"ryw-{i}"}).json()["experiment_id"]
            run = http.post("/runs/create", json={"experiment_id": experiment_id, "run_name": f"r{i}"}).json()["run"]
            run_id = run["info"]["run_id"]
            http.post("/runs/log-batch", json={"run_id": run_id, "params": [{"key": "i", "value": str(i)}],
                                               "metrics": [{"key": "m", "value": i, "timestamp": 1, "step": 0}]})
            got = http.get("/runs/get", params={"run_id": run_id}).json()["run"]
            assert got["data"]["params"] == [{"key": "i", "value": str(i)}]
            assert got["data"]["metrics"][0]["value"] == i
            assert http.get("/experiments/get-by-name", params={"experiment_name": f"ryw-{i}"}).status_code == 200


def test_errors_have_mlflows_shape_and_nothing_reaches_the_log(server):
    with httpx.Client(base_url=server) as http:
        before = len(http.get("/api/2.0/eventflow/events", params={"max_results": 10000}).json()["events"])
        missing = http.get(API + "/runs/get", params={"run_id": "0123456789abcdef"})
        assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
        by_name = http.get(API + "/experiments/get-by-name", params={"experiment_name": "nope"})
        assert by_name.status_code == 404 and by_name.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
        run_id = http.post(API + "/runs/create", json={"experiment_id": "0"}).json()["run"]["info"]["run_id"]
        after_create = len(http.get("/api/2.0/eventflow/events", params={"max_results": 10000}).json()["events"])
        for body in (
            {"run_id": run_id, "metrics": [{"key": "bad key!", "value": 1, "timestamp": 1, "step": 0}]},
            {"run_id": run_id, "metrics": [{"key": "ok", "value": "NaNish", "timestamp": 1, "step": 0}]},
            {"run_id": run_id, "params": [{"key": "p", "value": "x" * 6001}]},
            {"run_id": run_id, "params": [{"key": f"p{i}", "value": "1"} for i in range(101)]},
        ):
            response = http.post(API + "/runs/log-batch", json=body)
            assert response.status_code == 400, response.text
            assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE" and response.json()["message"]
        duplicate = http.post(API + "/experiments/create", json={"name": "Default"})
        assert duplicate.status_code == 400 and duplicate.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"
        http.post(API + "/runs/log-parameter", json={"run_id": run_id, "key": "lr", "value": "0.1"})
        changed = http.post(API + "/runs/log-parameter", json={"run_id": run_id, "key": "lr", "value": "0.2"})
        assert changed.status_code == 400 and "Changing param values is not allowed" in changed.json()["message"]
        malformed = http.post(API + "/runs/log-batch", content=b"{not json", headers={"content-type": "application/json"})
        assert malformed.status_code == 400 and malformed.json()["error_code"] == "MALFORMED_REQUEST"
        events = http.get("/api/2.0/eventflow/events", params={"max_results": 10000}).json()["events"]
        assert len(events) == after_create + 1, "only the one good log-parameter was appended"
        assert before < after_create


def test_the_event_stream_filters_by_type_and_pages(server):
    with httpx.Client(base_url=server) as http:
        run_id = http.post(API + "/runs/create", json={"experiment_id": "0"}).json()["run"]["info"]["run_id"]
        for step in range(30):
            http.post(API + "/runs/log-metric", json={"run_id": run_id, "key": "loss", "value": step, "timestamp": 5, "step": step})
        http.post(API + "/runs/update", json={"run_id": run_id, "status": "FAILED"})
        failed = http.get("/api/2.0/eventflow/events", params={"type": "run.failed"}).json()["events"]
        assert [e["event"]["payload"]["run_id"] for e in failed] == [run_id]
        seen, token = [], None
        while True:
            params = {"type": "run.metrics_logged", "max_results": 7, **({"page_token": token} if token else {})}
            page = http.get("/api/2.0/eventflow/events", params=params).json()
            seen += [p.step for e in page["events"] for p in metric_points(e["event"]["payload"])]
            token = page.get("next_page_token")
            if not token:
                break
        assert seen == list(range(30))
        run_events = http.get("/api/2.0/eventflow/events", params={"type": "run.*"}).json()["events"]
        assert run_events[0]["event"]["type"] == "run.created" and run_events[-1]["event"]["type"] == "run.failed"
        assert all(e["event"]["actor"] for e in run_events)


TRAIN = """
import eventflow
eventflow.set_experiment("over-http")
with eventflow.start_run(run_name="remote") as run:
    eventflow.log_params({"depth": 4})
    for step in range(2000):
        eventflow.log_metric("loss", 1.0 / (step + 1), step=step)
    eventflow.log_text("hi", "notes/readme.txt")
print(run.run_id)
"""


def test_the_sdk_logs_over_http(server, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(TRAIN))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120,
        env={**os.environ, "EVENTFLOW_TRACKING_URI": server},
    )
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip().splitlines()[-1]
    with httpx.Client(base_url=server + API) as http:
        run = http.get("/runs/get", params={"run_id": run_id}).json()["run"]
        assert run["info"]["status"] == "FINISHED"
        assert run["data"]["params"] == [{"key": "depth", "value": "4"}]
        history = http.get("/metrics/get-history", params={"run_id": run_id, "metric_key": "loss"}).json()["metrics"]
        assert [p["step"] for p in history] == list(range(2000))
        files = http.get("/artifacts/list", params={"run_id": run_id, "path": "notes"}).json()["files"]
        assert files == [{"path": "notes/readme.txt", "is_dir": False, "file_size": 2}]
    experiment_id = run["info"]["experiment_id"]
    content = httpx.get(f"{server}/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/notes/readme.txt")
    assert content.text == "hi"


@pytest.mark.kafka
@pytest.mark.postgres
def test_the_server_on_kafka_and_postgresql(tmp_path, kafka_bootstrap, new_postgres_database):
    from sqlalchemy import create_engine, text

    db = new_postgres_database("server")
    home = tmp_path / "home"
    with running_server(home, "--kafka", kafka_bootstrap, "--db", db) as url:
        script = tmp_path / "train.py"
        script.write_text(textwrap.dedent(TRAIN))
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180,
                              env={**os.environ, "EVENTFLOW_TRACKING_URI": url})
        assert done.returncode == 0, done.stderr
        run_id = done.stdout.strip().splitlines()[-1]
        run = httpx.get(url + API + "/runs/get", params={"run_id": run_id}).json()["run"]
        assert run["info"]["status"] == "FINISHED"
    engine = create_engine(db)
    with engine.connect() as connection:
        points = connection.execute(text("SELECT count(*) FROM metrics WHERE run_id = :r"), {"r": run_id}).scalar()
    assert points == 2000, "the views live in PostgreSQL"
    engine.dispose()


def test_a_write_the_views_do_not_confirm_answers_503_and_is_applied_later(tmp_path):
    home = tmp_path / "apart"
    with running_server(home, "--no-consumers", env={"EVENTFLOW_WRITE_TIMEOUT": "1"}) as url:
        response = httpx.post(url + API + "/experiments/create", json={"name": "later"}, timeout=30)
        assert response.status_code == 503
        assert response.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert "projector" in response.json()["message"]
        projector = subprocess.Popen([sys.executable, "-m", "eventflow", "consume", "projector", "--home", str(home)])
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                found = httpx.get(url + API + "/experiments/get-by-name", params={"experiment_name": "later"})
                if found.status_code == 200:
                    break
                time.sleep(0.2)
            assert found.status_code == 200, "the acknowledged-as-appended write was applied once a projector ran"
        finally:
            projector.terminate()
            assert projector.wait(timeout=30) == 0, "the projector leaves cleanly on SIGTERM"
