"""The SQLite views: derived rows commit without an fsync of their own (the log holds
them, and their offsets commit with them), what the log cannot rebuild (secrets) is
fsynced before its commit returns, and a server killed mid-stream loses nothing it
acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
from sqlalchemy import insert, text

from eventflow.views.db import open_views
from eventflow.views.tables import experiments
from tests.server.serving import free_port, ok


def test_derived_views_commit_at_normal_and_secrets_are_fsynced(tmp_path, monkeypatch):
    from eventflow.auth.accounts import _keep_hash
    from eventflow.webhooks.tables import create_tables, secrets

    engine = open_views(f"sqlite:///{tmp_path}/views.db")
    create_tables(engine)
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL

    synced: list[str] = []
    real_fsync = os.fsync

    def spying_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spying_fsync)
    wal = f"{tmp_path}/views.db-wal"
    with engine.begin() as c:
        c.execute(insert(experiments).values(experiment_id="7", name="derived", artifact_location="x", lifecycle_stage="active",
                                             creation_time=1, last_update_time=1))
    assert wal not in synced, "a derived row is not fsynced by the views: the log has it"

    _keep_hash(engine, "password", "ada", "a password")
    assert synced.count(wal) == 1, "a password's hash has no other copy: fsynced before the commit returns"

    with engine.begin() as c:
        c.execute(insert(secrets).values(subscription_id="s1", secret="whsec_x", created_time=1, expires_time=None))
    assert synced.count(wal) == 2, "a webhook secret likewise"

    with engine.begin() as c:
        c.execute(text("SELECT 1 FROM webhook_secrets"))  # a read of a secret table writes nothing
    assert synced.count(wal) == 2


def test_a_server_killed_mid_stream_keeps_every_acknowledged_point(tmp_path):
    """Four clients log points; each point's 200 is noted; kill -9 the server; a restarted
    server on the same home serves every noted point."""
    home = tmp_path / "home"
    port = free_port()
    command = [sys.executable, "-m", "eventflow", "server", "--port", str(port), "--home", str(home)]
    url = f"http://127.0.0.1:{port}"

    def start() -> subprocess.Popen:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    return process
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)

    server = start()
    acknowledged: dict[str, list[int]] = {}
    try:
        experiment_id = ok(url, "POST", "experiments/create", name="crash")["experiment_id"]
        runs = [ok(url, "POST", "runs/create", experiment_id=experiment_id)["run"]["info"]["run_id"] for _ in range(4)]

        def log(run_id: str) -> None:
            steps = acknowledged.setdefault(run_id, [])
            with httpx.Client(timeout=30) as client:
                for step in range(100_000):
                    try:
                        answer = client.post(f"{url}/api/2.0/mlflow/runs/log-metric",
                                             json={"run_id": run_id, "key": "m", "value": step, "timestamp": 1, "step": step})
                    except httpx.HTTPError:
                        return  # the server is gone: this point was never acknowledged
                    if answer.status_code != 200:
                        return
                    steps.append(step)

        writers = [threading.Thread(target=log, args=(run_id,)) for run_id in runs]
        for writer in writers:
            writer.start()
        deadline = time.monotonic() + 120
        while sum(len(s) for s in acknowledged.values()) < 200:
            assert time.monotonic() < deadline, "the writers did not get 200 points acknowledged"
            time.sleep(0.05)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    for writer in writers:
        writer.join(timeout=60)

    server = start()
    try:
        for run_id, steps in acknowledged.items():
            history = ok(url, "GET", "metrics/get-history", run_id=run_id, metric_key="m", max_results=100_000)
            kept = {int(m["step"]) for m in history.get("metrics", [])}
            assert set(steps) <= kept, f"{run_id}: acknowledged but gone: {sorted(set(steps) - kept)[:10]}"
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_on_postgresql_derived_commits_are_asynchronous_and_secrets_synchronous(new_postgres_database):
    from eventflow.auth.tables import credentials
    from eventflow.webhooks.tables import create_tables, secrets

    engine = open_views(new_postgres_database())
    create_tables(engine)

    def commit_mode(write) -> str:
        with engine.begin() as c:
            write(c)
            return c.execute(text("SHOW synchronous_commit")).scalar()

    derived = insert(experiments).values(experiment_id="7", name="derived", artifact_location="x", lifecycle_stage="active",
                                         creation_time=1, last_update_time=1)
    assert commit_mode(lambda c: c.execute(derived)) == "off"
    assert commit_mode(lambda c: c.execute(insert(credentials).values(kind="password", name="ada", hash="h", updated_time=1))) == "on"
    assert commit_mode(lambda c: c.execute(insert(secrets).values(subscription_id="s1", secret="whsec_x", created_time=1))) == "on"
    assert commit_mode(lambda c: c.execute(text("SELECT 1"))) == "off", "the next transaction on the connection is back to off"

