"""A server on a log holding a damaged record keeps serving: its consumers dead-letter
the record and go on (before, the projector crash-looped while /health said OK and every
write answered 503)."""

from __future__ import annotations

import sqlite3

import httpx

from eventflow import commands
from eventflow.log.embedded import EmbeddedLog
from eventflow.log.event_log import EventLog

from serving import running_server

API = "/api/2.0/mlflow"


def test_a_server_on_a_log_with_undecodable_headers_serves_writes(tmp_path):
    home = tmp_path / "home"
    log = EmbeddedLog(home / "log")
    EventLog(log).append_many([commands.create_experiment("7", "damaged", "file:///a")])
    log.close()
    with sqlite3.connect(home / "log" / "log.db", isolation_level=None) as conn:
        assert conn.execute("UPDATE records SET headers = CAST(x'5b5bff' AS TEXT)").rowcount == 1
    with running_server(home, env={"EVENTFLOW_WRITE_TIMEOUT": "30"}) as url:
        created = httpx.post(url + API + "/experiments/create", json={"name": "after"}, timeout=60)
        assert created.status_code == 200, created.text
        got = httpx.get(url + API + "/experiments/get-by-name", params={"experiment_name": "after"}, timeout=30)
        assert got.status_code == 200, got.text
        assert httpx.get(url + API + "/experiments/get-by-name", params={"experiment_name": "damaged"}).status_code == 404
