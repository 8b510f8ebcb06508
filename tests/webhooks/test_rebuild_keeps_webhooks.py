"""``eventflow views rebuild`` beside a running server, on SQLite and PostgreSQL: refused
while the server uses the views (naming it), done with ``--force``, and what the log does
not hold (signing secrets, what was delivered) is still there afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from serving import free_port, running_server
from webhook_receiver import Receiver, verify
from webhook_stack import FAST

from eventflow.sdk.client import Client


@dataclass
class Setup:
    home: Path
    served: list[str]  # the server's options before the rebuild
    rebuilding: list[str]  # the rebuild's
    rebuilt: list[str]  # the server's after it


def _setup(kind: str, request: pytest.FixtureRequest, home: Path) -> Setup:
    if kind == "sqlite":
        return Setup(home, [], ["--home", str(home)], [])
    if kind == "kafka":  # the server's views default to kafka-views.db in its home: the rebuild carries from there
        bootstrap, rebuilt = request.getfixturevalue("kafka_bootstrap"), f"sqlite:///{home.parent / 'rebuilt.db'}"
        return Setup(home, ["--kafka", bootstrap], ["--home", str(home), "--kafka", bootstrap, "--into", rebuilt],
                     ["--kafka", bootstrap, "--db", rebuilt])
    make = request.getfixturevalue("new_postgres_database")
    served, rebuilt = make("served"), make("rebuilt")
    return Setup(home, ["--db", served], ["--home", str(home), "--db", served, "--into", rebuilt], ["--db", rebuilt])


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), pytest.param("kafka", marks=pytest.mark.kafka)])
def setup(request, tmp_path) -> Setup:
    return _setup(request.param, request, tmp_path / "home")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def killable(request, tmp_path) -> Setup:
    """Not on Kafka: a killed server's group members would hold up the next test's server."""
    return _setup(request.param, request, tmp_path / "home")


def rebuild(setup: Setup, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eventflow", "views", "rebuild", *setup.rebuilding, *options],
                          capture_output=True, text=True, timeout=300, env={**os.environ, **FAST})


def fail_a_run(url: str) -> str:
    mlflow = url + "/api/2.0/mlflow"
    run_id = httpx.post(mlflow + "/runs/create", json={"experiment_id": "0"}).json()["run"]["info"]["run_id"]
    httpx.post(mlflow + "/runs/update", json={"run_id": run_id, "status": "FAILED"}).raise_for_status()
    return run_id


def delivered_signed(receiver: Receiver, run_id: str, secret: str) -> None:
    """Wait for the delivery of ``run_id``'s failure and check its signature."""
    receiver.wait_for(lambda: any(r.json["data"]["run_id"] == run_id for r in list(receiver.received)), timeout=60)
    [got] = [r for r in receiver.received if r.json["data"]["run_id"] == run_id]
    verify(secret, got.headers, got.body)


def test_a_rebuild_is_refused_while_served_forced_keeps_secrets_and_sends_nothing_twice(setup):
    with Receiver() as receiver:
        with running_server(setup.home, *setup.served, env=FAST) as url:
            created = Client(url).webhooks.create(receiver.url, ["run.failed"])
            secret, sid = created["secret"], created["webhook"]["subscription_id"]
            first = fail_a_run(url)
            delivered_signed(receiver, first, secret)

            refused = rebuild(setup)
            assert refused.returncode != 0, refused.stdout
            assert "in use" in refused.stderr and "--force" in refused.stderr, refused.stderr
            assert "pid " in refused.stderr and socket.gethostname() in refused.stderr and "server" in refused.stderr, refused.stderr
            second = fail_a_run(url)  # the refusal changed nothing the server uses
            delivered_signed(receiver, second, secret)

            forced = rebuild(setup, "--force")
            assert forced.returncode == 0, forced.stderr
            assert "webhook_secrets" in forced.stdout and "webhook_deliveries" in forced.stdout, forced.stdout
        with running_server(setup.home, *setup.rebuilt, env=FAST) as url:
            hooks = Client(url).webhooks
            assert hooks.get(sid)["url"] == receiver.url
            third = fail_a_run(url)
            delivered_signed(receiver, third, secret)
            # What was delivered before the rebuild is not delivered again after it.
            deadline = time.monotonic() + 60
            while not ((found := hooks.deliveries(sid)) and len(found) >= 3 and all(d["status"] == "SUCCEEDED" for d in found)):
                assert time.monotonic() < deadline, found
                time.sleep(0.1)
            assert len(found) == 3, found
            assert all([a["status_code"] for a in d["attempts"]] == [200] for d in found), "each delivery keeps its one attempt"
            assert sorted(r.json["data"]["run_id"] for r in receiver.received) == sorted([first, second, third])


def test_a_server_killed_with_sigkill_leaves_no_lock_behind(killable):
    setup = killable
    setup.home.mkdir(parents=True)
    port = free_port()
    output = open(setup.home / "server.out", "w")
    server = subprocess.Popen([sys.executable, "-m", "eventflow", "server", "--port", str(port), "--home", str(setup.home), *setup.served],
                              stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **FAST})
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (setup.home / "server.out").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        assert rebuild(setup).returncode != 0, "the running server holds the views"
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
        output.close()
    # The OS releases a dead process's lock; PostgreSQL ends its session when the socket closes.
    deadline = time.monotonic() + 30
    while (done := rebuild(setup)).returncode != 0:
        assert time.monotonic() < deadline, done.stderr
        time.sleep(0.5)
    assert "replayed" in done.stdout
