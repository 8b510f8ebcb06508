"""The deployer with real processes: an ``eventflow server``, ``eventflow consume deployer``
as a subprocess, ``eventflow models serve`` backends it starts, and a client scoring on
the stable port all through the promotions."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
from serving import free_port, kafka_postgres_options, running_server  # noqa: E402

import eventflow  # noqa: E402
from eventflow import models  # noqa: E402
from eventflow.models.signature import infer_signature  # noqa: E402

pd = pytest.importorskip("pandas")

EXAMPLE = {"x": [1.0, 2.0]}


def constant(value: int):
    return lambda frame: [value] * len(frame)


def broken():
    """A model that loads and answers /ping, but fails every prediction (nested, so it is
    pickled by value: the scoring process cannot import this test module)."""

    def predict(frame):
        raise RuntimeError("this version is broken")

    return predict


@pytest.fixture(params=["embedded", pytest.param("kafka+postgresql", marks=pytest.mark.kafka)])
def server(request, tmp_path, monkeypatch):
    """A real ``eventflow server``, and the options a deployer needs to read its log."""
    home = tmp_path / "server"
    monkeypatch.setenv("EVENTFLOW_CAPTURE_ENV", "false")
    options = kafka_postgres_options(request, "deploy") if request.param != "embedded" else []
    with running_server(home, *options) as url:
        eventflow.set_tracking_uri(url)
        try:
            yield url, ["--home", str(home), *options]
        finally:
            eventflow.set_tracking_uri(None)


def register(name: str, predict) -> str:
    with eventflow.start_run():
        # The signature is given, so logging does not run the (maybe broken) model on its example.
        info = models.log_model(predict, "model", signature=infer_signature(pd.DataFrame(EXAMPLE)),
                                input_example=pd.DataFrame(EXAMPLE), registered_model_name=name)
    assert info.registered_model_version is not None
    return info.registered_model_version


def promote(url: str, name: str, version: str) -> None:
    answer = httpx.post(url + "/api/2.0/mlflow/registered-models/alias", json={"name": name, "alias": "production", "version": version})
    assert answer.status_code == 200, answer.text


class Deployer:
    """``eventflow consume deployer`` for one target, as a subprocess."""

    def __init__(self, url: str, backend: list[str], name: str, port: int, out):
        self.target = f"{name}@production:{port}"
        self.out = out
        self.process = subprocess.Popen(
            [sys.executable, "-m", "eventflow", "consume", "deployer", *backend, "--tracking-uri", url,
             "--target", f"models:/{name}@production={port}"],
            stdout=open(out, "w"), stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def deployment_events(url: str, target: str) -> list[dict]:
    page = httpx.get(url + "/api/2.0/eventflow/events", params={"topic": "eventflow.deployments", "max_results": 10000}).json()
    return [e["event"] for e in page["events"] if e["event"]["payload"]["target"] == target]


def wait_for(url: str, target: str, count: int, timeout: float = 120.0, log=None) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = deployment_events(url, target)
        if len(events) >= count:
            return events
        time.sleep(0.2)
    raise AssertionError(f"{count} deployment events did not come within {timeout} s: {deployment_events(url, target)}\n"
                         + (open(log).read()[-3000:] if log else ""))


class Hammer(threading.Thread):
    """Scores the stable address without pause; records every answer (or failure)."""

    def __init__(self, endpoint: str):
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.stopped = threading.Event()
        self.answers: list[int] = []
        self.failures: list[str] = []

    def run(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self.stopped.is_set():
                try:
                    answer = http.post(self.endpoint + "/invocations", json={"dataframe_split": {"columns": ["x"], "data": [[1.0]]}})
                    if answer.status_code == 200:
                        self.answers.append(answer.json()["predictions"][0])
                    else:
                        self.failures.append(f"HTTP {answer.status_code}: {answer.text[:200]}")
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))


def slow_on_five(value: int, seconds: float):
    """Answers ``value`` at once, except for x == 5, which takes ``seconds``."""

    def predict(frame):
        import time

        if 5.0 in list(frame["x"]):
            time.sleep(seconds)
        return [value] * len(frame)

    return predict


def flaky():
    """A model that scores its first request (the check beside the old version) and fails
    every later one (the check through the stable port, after the switch)."""
    calls = []

    def predict(frame):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("this version broke after its first answer")
        return [9] * len(frame)

    return predict


def types(events: list[dict]) -> list[tuple[str, str]]:
    return [(e["type"], e["payload"]["version"]) for e in events]


def test_promotions_roll_without_a_failed_request_and_a_broken_version_never_takes_over(server, tmp_path):
    url, backend = server
    name = "deploy-" + uuid.uuid4().hex[:8]
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    v1, v2, v3 = register(name, constant(1)), register(name, constant(2)), register(name, broken())
    deployer = Deployer(url, backend, name, port, tmp_path / "deployer.out")
    hammer = Hammer(endpoint)
    try:
        promote(url, name, v1)
        events = wait_for(url, deployer.target, 2, log=deployer.out)
        assert types(events) == [("deployment.started", v1), ("deployment.succeeded", v1)]
        assert events[1]["payload"]["previous_version"] is None and events[1]["payload"]["endpoint"] == endpoint
        assert events[1]["causation_id"] == events[0]["event_id"]

        hammer.start()
        time.sleep(0.5)
        promote(url, name, v2)
        events = wait_for(url, deployer.target, 4, log=deployer.out)
        assert types(events)[2:] == [("deployment.started", v2), ("deployment.succeeded", v2)]
        assert events[3]["payload"]["previous_version"] == v1
        time.sleep(0.5)
        before_broken = len(hammer.answers)

        promote(url, name, v3)
        events = wait_for(url, deployer.target, 6, log=deployer.out)
        assert types(events)[4:] == [("deployment.started", v3), ("deployment.failed", v3)]
        assert "failed its input example" in events[5]["payload"]["error"], events[5]["payload"]["error"]
        time.sleep(0.5)
        hammer.stopped.set()
        hammer.join(timeout=30)

        assert hammer.failures == [], hammer.failures[:5]
        assert hammer.answers[0] == 1 and hammer.answers[-1] == 2, "the answers switched from version 1 to version 2"
        switch = hammer.answers.index(2)
        assert set(hammer.answers[:switch]) == {1} and set(hammer.answers[switch:]) == {2}, "one switch, never back"
        assert len(hammer.answers) - before_broken > 0, "version 2 kept answering through the broken promotion"
        answer = httpx.post(endpoint + "/invocations", json={"dataframe_split": {"columns": ["x"], "data": [[1.0]]}})
        assert answer.json() == {"predictions": [2]} and answer.headers["x-eventflow-model-version"] == v2

        found = httpx.get(url + "/api/2.0/eventflow/deployments", params={"target": deployer.target}).json()
        assert found["deployments"] == [{
            "target": deployer.target, "name": name, "serving_version": v2, "last_version": v3, "status": "FAILED",
            "endpoint": endpoint, "updated_time": events[5]["time"], "error": events[5]["payload"]["error"],
        }]
        assert [(e["type"], e["version"]) for e in found["history"]] == types(events)[::-1]
        listing = cli("list", "--tracking-uri", url)
        row = next(line.split() for line in listing.stdout.splitlines() if line.startswith(deployer.target))
        assert row[:4] == [deployer.target, v2, v3, "FAILED"], listing.stdout
        assert f"version {v3} failed: " in listing.stdout
        history = cli("history", deployer.target, "--tracking-uri", url).stdout.splitlines()
        assert [line.split()[3:5] for line in history[1:]] == [[t.removeprefix("deployment."), v] for t, v in types(events)[::-1]]

        deployer.stop()  # a restart while the alias points at the broken version: version 2 serves again
        deployer = Deployer(url, backend, name, port, tmp_path / "deployer-2.out")
        events = wait_for(url, deployer.target, 8, log=deployer.out)
        assert types(events)[6:] == [("deployment.started", v2), ("deployment.succeeded", v2)]
        assert score(endpoint) == 2
        promote(url, name, v3)  # setting the alias again is another try
        events = wait_for(url, deployer.target, 10, log=deployer.out)
        assert types(events)[8:] == [("deployment.started", v3), ("deployment.failed", v3)]
        assert score(endpoint) == 2
    finally:
        hammer.stopped.set()
        deployer.stop()


def cli(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "eventflow", "deployments", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done


def score(endpoint: str) -> int:
    return httpx.post(endpoint + "/invocations", json={"dataframe_split": {"columns": ["x"], "data": [[1.0]]}}).json()["predictions"][0]


def test_a_restart_or_a_replay_deploys_only_the_latest_version_and_quick_moves_end_on_the_last(server, tmp_path):
    url, backend = server
    name = "deploy-" + uuid.uuid4().hex[:8]
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    v1, v2, v3 = (register(name, constant(n)) for n in (1, 2, 3))
    for version in (v1, v2, v3):  # history the deployer will read, not act on
        promote(url, name, version)
    deployer = Deployer(url, backend, name, port, tmp_path / "deployer-1.out")
    try:
        events = wait_for(url, deployer.target, 2, log=deployer.out)
        time.sleep(1.0)  # room for a wrong extra deployment to show
        assert types(deployment_events(url, deployer.target)) == [("deployment.started", v3), ("deployment.succeeded", v3)]
        assert score(endpoint) == 3
    finally:
        deployer.stop()
    assert deployer.process.returncode == 0, open(deployer.out).read()[-2000:]
    with pytest.raises(httpx.HTTPError):
        httpx.get(endpoint + "/ping", timeout=2)  # it took its backends with it

    deployer = Deployer(url, backend, name, port, tmp_path / "deployer-2.out")
    try:
        events = wait_for(url, deployer.target, 4, log=deployer.out)
        assert types(events)[2:] == [("deployment.started", v3), ("deployment.succeeded", v3)], "a restart serves the latest only"
        for version in (v1, v2, v1, v2):  # quick moves: the last one wins
            promote(url, name, version)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = httpx.get(url + "/api/2.0/eventflow/deployments", params={"target": deployer.target}).json()["deployments"][0]
            if state["serving_version"] == v2 and state["status"] == "SUCCEEDED":
                break
            time.sleep(0.2)
        time.sleep(1.0)
        events = deployment_events(url, deployer.target)
        assert types(events)[-1] == ("deployment.succeeded", v2), types(events)
        assert score(endpoint) == 2
        assert len(events) <= 4 + 2 * 4 and len(events) % 2 == 0
    finally:
        deployer.stop()


def test_bad_targets_are_refused_at_the_command_line(tmp_path):
    def consume(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "eventflow", "consume", "deployer", "--home", str(tmp_path), *args],
                              capture_output=True, text=True, timeout=60, env={k: v for k, v in os.environ.items() if not k.startswith("EVENTFLOW_")})

    wrong = consume("--target", "churn:8080", "--tracking-uri", "http://127.0.0.1:1")
    assert wrong.returncode == 2 and "write it as models:/NAME@ALIAS=PORT" in wrong.stderr
    missing = consume("--tracking-uri", "http://127.0.0.1:1")
    assert missing.returncode == 2 and "give the deployer a target" in missing.stderr
    local = consume("--target", "models:/churn@production=8080")
    assert local.returncode == 2 and "--tracking-uri http://HOST:PORT" in local.stderr


def test_a_version_that_fails_after_the_switch_is_rolled_back(server, tmp_path):
    url, backend = server
    name = "deploy-" + uuid.uuid4().hex[:8]
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    v1, v2 = register(name, constant(1)), register(name, flaky())
    promote(url, name, v1)
    deployer = Deployer(url, backend, name, port, tmp_path / "deployer.out")
    try:
        wait_for(url, deployer.target, 2, log=deployer.out)
        promote(url, name, v2)
        events = wait_for(url, deployer.target, 5, log=deployer.out)
        assert types(events)[2:] == [("deployment.started", v2), ("deployment.failed", v2), ("deployment.rolled_back", v2)]
        rolled = events[4]["payload"]
        assert rolled["previous_version"] == v1 and "after the switch" in rolled["reason"]
        assert events[4]["correlation_id"] == events[2]["event_id"] == events[3]["causation_id"]
        assert score(endpoint) == 1 and score(endpoint) == 1, "version 1 serves again"
        state = httpx.get(url + "/api/2.0/eventflow/deployments", params={"target": deployer.target}).json()["deployments"][0]
        assert (state["serving_version"], state["status"]) == (v1, "ROLLED_BACK")
    finally:
        deployer.stop()


def test_the_server_runs_the_deployer_when_targets_are_configured(tmp_path, monkeypatch):
    monkeypatch.setenv("EVENTFLOW_CAPTURE_ENV", "false")
    name = "deploy-" + uuid.uuid4().hex[:8]
    port = free_port()
    with running_server(tmp_path / "server", env={"EVENTFLOW_DEPLOY_TARGETS": f"models:/{name}@production={port}"}) as url:
        eventflow.set_tracking_uri(url)
        try:
            version = register(name, constant(7))
        finally:
            eventflow.set_tracking_uri(None)
        promote(url, name, version)
        events = wait_for(url, f"{name}@production:{port}", 2)
        assert types(events) == [("deployment.started", version), ("deployment.succeeded", version)]
        assert score(f"http://127.0.0.1:{port}") == 7
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2)  # the server took its deployer's backends with it


def test_the_old_version_finishes_its_requests_in_flight_before_it_is_stopped(server, tmp_path):
    url, backend = server
    name = "deploy-" + uuid.uuid4().hex[:8]
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    v1, v2 = register(name, slow_on_five(1, 8.0)), register(name, constant(2))
    promote(url, name, v1)
    deployer = Deployer(url, backend, name, port, tmp_path / "deployer.out")
    try:
        wait_for(url, deployer.target, 2, log=deployer.out)
        slow: dict = {}

        def slow_request() -> None:
            answer = httpx.post(endpoint + "/invocations", json={"dataframe_split": {"columns": ["x"], "data": [[5.0]]}}, timeout=60)
            slow.update(status=answer.status_code, body=answer.json(), done=time.time() * 1000)

        client = threading.Thread(target=slow_request)
        client.start()
        time.sleep(0.5)
        promote(url, name, v2)
        while "done" not in slow and score(endpoint) != 2:
            time.sleep(0.05)
        assert "done" not in slow, "version 2 took the traffic while the slow request was still in flight on version 1"
        events = wait_for(url, deployer.target, 4, log=deployer.out)
        client.join(timeout=60)
        assert slow["status"] == 200 and slow["body"] == {"predictions": [1]}, "the request in flight on version 1 was answered by it"
        assert types(events)[2:] == [("deployment.started", v2), ("deployment.succeeded", v2)]
        assert events[3]["time"] >= slow["done"] - 50, "version 1 was stopped only after its request finished"
        assert score(endpoint) == 2
    finally:
        deployer.stop()
