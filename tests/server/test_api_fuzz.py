"""The OpenAPI document describes every route, and schemathesis finds no server error.

Schemathesis generates requests from the document (valid ones and nearly-valid ones) and
sends them to a live server: none may answer 5xx, and every error must have MLflow's
shape, ``{"error_code": ..., "message": ...}``.
"""

from __future__ import annotations

import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from eventflow.server import alerts_api, artifacts, deployments_api, events_api, jobs_api, mlflow_webhooks_api, openapi, runs_api, tracking, ui_artifacts, webhooks_api
from serving import running_server


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("fuzz")) as url:
        # Something to find: an experiment with a run, metrics, params and tags.
        api = url + "/api/2.0/mlflow"
        experiment_id = httpx.post(api + "/experiments/create", json={"name": "fuzzed"}).json()["experiment_id"]
        run_id = httpx.post(api + "/runs/create", json={"experiment_id": experiment_id}).json()["run"]["info"]["run_id"]
        httpx.post(api + "/runs/log-batch", json={"run_id": run_id, "metrics": [{"key": "m", "value": 1, "timestamp": 1, "step": 0}],
                                                  "params": [{"key": "p", "value": "v"}], "tags": [{"key": "t", "value": "v"}]})
        httpx.post(api + "/registered-models/create", json={"name": "fuzzed", "tags": [{"key": "t", "value": "v"}]})
        httpx.post(api + "/model-versions/create", json={"name": "fuzzed", "source": f"runs:/{run_id}/model", "run_id": run_id})
        httpx.post(api + "/registered-models/alias", json={"name": "fuzzed", "alias": "champion", "version": "1"})
        yield url


def test_no_request_makes_a_server_error(url):
    # Driven through Hypothesis directly: schemathesis' pytest plugin predates pytest 9.
    api = schemathesis.openapi.from_url(url + "/api/2.0/eventflow/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) == len(openapi.ENDPOINTS)
    for operation in operations:

        @settings(
            # Reproducible in CI; EVENTFLOW_FUZZ_RANDOM=1 EVENTFLOW_FUZZ_EXAMPLES=300 digs deeper.
            max_examples=int(os.environ.get("EVENTFLOW_FUZZ_EXAMPLES", "60")),
            derandomize=os.environ.get("EVENTFLOW_FUZZ_RANDOM") != "1",
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(case=operation.as_strategy())
        def no_server_error(case):
            response = case.call(timeout=30)
            assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:500]}"
            if response.status_code >= 400:
                body = response.json()
                assert isinstance(body.get("error_code"), str) and isinstance(body.get("message"), str), body

        no_server_error()


def test_the_document_lists_every_route_and_nothing_else():
    from starlette.routing import Route

    class Fake:  # routes only need the runtime to build their endpoints
        pass

    served = set()
    for route in [*tracking.routes(Fake()), *artifacts.routes(Fake()), *ui_artifacts.routes(Fake()), *events_api.routes(Fake()), *webhooks_api.routes(Fake()),
                  *mlflow_webhooks_api.routes(Fake()), *deployments_api.routes(Fake()), *alerts_api.routes(Fake()), *jobs_api.routes(Fake()), *runs_api.routes(Fake())]:
        assert isinstance(route, Route)
        if route.path.startswith("/ajax-api/"):
            continue
        for method in route.methods or ():
            if method != "HEAD":
                served.add((method, route.path))
    documented = {(m, openapi._path(p)) for m, p, _, _ in openapi.ENDPOINTS}
    # Artifact files (PUT/GET/DELETE of a path) and appending Avro events are not JSON APIs.
    binary = {(m, p) for m, p in served if "{path:path}" in p} | {("POST", "/api/2.0/eventflow/events")}
    assert documented == served - binary


def test_the_document_describes_metrics_about_logged_models():
    paths = openapi.document()["paths"]

    def body(path: str, method: str = "post") -> dict:
        return paths[path][method]["requestBody"]["content"]["application/json"]["schema"]["properties"]

    link = {"model_id", "dataset_name", "dataset_digest"}
    assert link <= set(body("/api/2.0/mlflow/runs/log-metric"))
    assert link <= set(body("/api/2.0/mlflow/runs/log-batch")["metrics"]["items"]["properties"])
    assert set(body("/api/2.0/mlflow/logged-models/search")["datasets"]["items"]["properties"]) == {"dataset_name", "dataset_digest"}
