"""Acknowledged means it took effect (issue 12, finding 1).

A write is answered 200 only when the decision it needs (the name is free, the run exists,
the param is unchanged) went its way. Waiting until the projector's offset passes the
event is not that: a dead-lettered event passes too. Real servers, real projector
processes, the real ``mlflow`` client; the embedded default and Kafka + PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import create_engine, text

from harness import BACKENDS, HERE, Backend, backend_for, caught_up, events_named, running_projector, running_server, stop, wait_until

from eventflow import commands
from eventflow.codec import encode
from eventflow.codec.framing import CONTENT_TYPE, pack
from eventflow.events import Event

API = "/api/2.0/mlflow/"
WRITE_TIMEOUT = 15  # s: the server's wait for the projector (EVENTFLOW_WRITE_TIMEOUT)


def post(url: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(url + API + path, json=body, timeout=120)


def get(url: str, path: str, **params: str) -> httpx.Response:
    return httpx.get(url + API + path, params=params, timeout=60)


def experiment_exists(url: str, experiment_id: str, name: str) -> bool:
    found = get(url, "experiments/get", experiment_id=experiment_id)
    return found.status_code == 200 and found.json()["experiment"]["name"] == name


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_retry_after_a_503_is_never_answered_with_an_id_that_does_not_exist(kind, tmp_path, request):
    """``experiments/create`` answered 503 (appended, no projector), retried while the
    projector starts again: each answer is an error, or 200 with an id that exists."""
    backend = backend_for(request, kind, tmp_path / "home", "phantom")
    name = f"x-{uuid.uuid4().hex[:8]}"
    env = {"EVENTFLOW_WRITE_TIMEOUT": str(WRITE_TIMEOUT)}
    with running_projector(backend) as first, running_server(backend.home, "--no-consumers", *backend.options, env=env) as url:
        wait_until(lambda: get(url, "experiments/get", experiment_id="0").status_code == 200, 180, "the Default experiment in the views")
        stop(first)  # the projector goes away (a deploy, a crash)
        answers = [post(url, "experiments/create", {"name": name})]
        assert answers[0].status_code == 503, answers[0].text  # no projector: nothing decided, not a success
        # The client retries; two retries in flight at once, as several MLflow processes do.
        with ThreadPoolExecutor(2) as pool:
            retries = [pool.submit(post, url, "experiments/create", {"name": name}) for _ in range(2)]
            wait_until(
                lambda: len(events_named(url, "experiment.created", name=name)) >= 3 or all(r.done() for r in retries),
                60, "the retries to be appended (or answered)",
            )
            with running_projector(backend, "projector-again.out"):  # and the projector is back
                answers += [r.result() for r in retries]
                granted = {a.json()["experiment_id"] for a in answers if a.status_code == 200}
                phantom = sorted(i for i in granted if not experiment_exists(url, i, name))
                assert phantom == [], (
                    f"answered 200 with experiment ids that do not exist: {phantom} "
                    f"(answers: {[(a.status_code, a.text[:120]) for a in answers]})"
                )
                assert len(granted) <= 1, f"one name, one experiment: {granted}"


@pytest.mark.parametrize("kind", BACKENDS)
def test_mlflow_processes_racing_to_create_one_experiment_are_all_given_one_that_exists(kind, tmp_path, request):
    """Four processes run MLflow's get-or-create of the same names at once (the issue's
    ``load`` experiment): every id any of them was given exists, and it is the same one."""
    backend = backend_for(request, kind, tmp_path / "home", "racers")
    names = [f"load-{uuid.uuid4().hex[:6]}-{i}" for i in range(4)]
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    with running_server(backend.home, *backend.options) as url:
        outs = [tmp_path / f"racer-{i}.json" for i in range(4)]
        racers = [
            subprocess.Popen([sys.executable, str(HERE / "mlflow_racer.py"), url, str(barrier), str(out), *names],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for out in outs
        ]
        try:
            wait_until(lambda: len(list(barrier.glob("ready-*"))) == 4 or any(r.poll() is not None for r in racers), 180, "the racers to be ready")
            (barrier / "go").touch()
            for racer in racers:
                output, _ = racer.communicate(timeout=240)
                assert racer.returncode == 0, output[-3000:]
        finally:
            for racer in racers:
                if racer.poll() is None:
                    racer.kill()
        given = [json.loads(out.read_text()) for out in outs]
        phantom = sorted({(n, g[n]["id"]) for g in given for n in names if not experiment_exists(url, g[n]["id"], n)})
        failed_runs = sorted({g[n]["error"] for g in given for n in names if "error" in g[n]})
        assert phantom == [], f"{len(phantom)} ids given out that do not exist, e.g. {phantom[:3]}; create_run then failed: {failed_runs[:2]}"
        for name in names:
            assert len({g[name]["id"] for g in given}) == 1, f"{name}: one name, one experiment"


# -- POST /api/2.0/eventflow/events: the SDK's HTTP path obeys the same state rules ------------


@pytest.fixture(scope="module", params=BACKENDS)
def served(request, tmp_path_factory):
    """A server (consumers inside) on each backend, with a run that logged ``lr=0.1``."""
    backend = backend_for(request, request.param, tmp_path_factory.mktemp("events-rules") / "home", "rules")
    with running_server(backend.home, *backend.options) as url:
        experiment_id = post(url, "experiments/create", {"name": f"rules-{uuid.uuid4().hex[:8]}"}).json()["experiment_id"]
        run = post(url, "runs/create", {"experiment_id": experiment_id, "run_name": "kept"}).json()["run"]
        assert post(url, "runs/log-parameter", {"run_id": run["info"]["run_id"], "key": "lr", "value": "0.1"}).status_code == 200
        yield backend, url, run


def _post_events(url: str, *events) -> httpx.Response:
    body = pack([encode(event) for event in events])
    return httpx.post(url + "/api/2.0/eventflow/events", content=body, headers={"content-type": CONTENT_TYPE}, timeout=120)


def _views(backend: Backend, sql: str, **params) -> list[tuple]:
    engine = create_engine(backend.views_url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql), params)]
    finally:
        engine.dispose()


RULE_BREAKERS = {
    # case: (the event, given the module's run; MLflow's error code; SQL that must find nothing afterwards)
    "param changed": (
        lambda run, other: commands.log_params(run["info"]["run_id"], {"lr": "0.2"}),
        "INVALID_PARAMETER_VALUE",
        "SELECT value FROM params WHERE run_id = :run AND key = 'lr' AND value <> '0.1'",
    ),
    "run created twice": (
        lambda run, other: commands.create_run(
            run["info"]["run_id"], run["info"]["experiment_id"], run_name="second", user_id="intruder", artifact_uri="file:///elsewhere"
        ),
        "RESOURCE_ALREADY_EXISTS",
        "SELECT run_id FROM runs WHERE run_id = :run AND (run_name <> 'kept' OR artifact_uri = 'file:///elsewhere')",
    ),
    "tags for an unknown run": (
        lambda run, other: commands.set_tags(other, {"ghost": "yes"}),
        "RESOURCE_DOES_NOT_EXIST",
        "SELECT key FROM tags WHERE run_id = :other",
    ),
    "experiment 0 created again with another name": (
        lambda run, other: commands.create_experiment("0", f"not-default-{other[:8]}", "mlflow-artifacts:/0"),
        "RESOURCE_ALREADY_EXISTS",
        "SELECT name FROM experiments WHERE experiment_id = '0' AND name <> 'Default' OR name = 'not-default-' || substr(:other, 1, 8)",
    ),
    "artifact with size -5 and sha256 'not-a-hash'": (
        # Built by hand: commands.log_artifact itself refuses it, so only a client of its own sends it.
        lambda run, other: Event("run.artifact_logged", {"run_id": run["info"]["run_id"], "path": "weights.bin", "size": -5, "sha256": "not-a-hash"}),
        "INVALID_PARAMETER_VALUE",
        "SELECT path FROM artifacts WHERE run_id = :run AND path = 'weights.bin'",
    ),
}


@pytest.mark.parametrize("case", list(RULE_BREAKERS))
def test_events_that_break_a_state_rule_are_refused_with_mlflows_error_and_never_reach_the_views(served, case):
    backend, url, run = served
    make, error_code, trace_sql = RULE_BREAKERS[case]
    other = commands.new_run_id()
    answer = _post_events(url, make(run, other))
    caught_up(backend)  # whatever was appended has been applied or dead-lettered by now
    trace = _views(backend, trace_sql, run=run["info"]["run_id"], other=other)
    assert (answer.status_code, answer.json().get("error_code")) == (404 if error_code == "RESOURCE_DOES_NOT_EXIST" else 400, error_code), (
        f"{case}: answered {answer.status_code} {answer.text[:200]}; in the views: {trace}"
    )
    assert trace == [], f"{case}: it reached the views: {trace}"
