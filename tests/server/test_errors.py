"""A database fault answers 503 with a sentence that says which store and what to do;
no response body ever carries driver text, SQL, parameters or a traceback.

The faults are real: a PostgreSQL server really stopped under a running eventflow server
(then started again), and a really full disk (a small tmpfs filled to the last byte).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid

import httpx
import pytest

from eventflow.dev.postgres import LocalPostgres
from serving import running_server

API = "/api/2.0/mlflow"

# What leaked before: the driver's exception, the statement and its parameters.
DRIVER_TEXT = ("OperationalError", "psycopg", "sqlite3", "Traceback", "SELECT ", "INSERT ", "[SQL", "[parameters", "sqlalche.me")


def assert_clean(body: str) -> None:
    leaked = [text for text in DRIVER_TEXT if text in body]  # (no `in` assert: pytest would diff megabytes)
    assert not leaked, f"{leaked} leaked into the response: {body[:500]}"


def create_experiment(url: str, name: str) -> httpx.Response:
    return httpx.post(url + API + "/experiments/create", json={"name": name}, timeout=90)


@pytest.fixture
def own_postgres():
    """A PostgreSQL of this test's own, so that stopping it disturbs no other test. Its
    data directory is kept across a stop, so it can start again on the same port. (Not
    under pytest's private temporary directory: as root, the server runs as 'postgres'.)"""
    data = tempfile.mkdtemp(prefix="eventflow-pg-own-", dir="/tmp")
    os.chmod(data, 0o777)
    postgres = LocalPostgres(data_dir=data, durable=False)
    try:
        postgres.start()
    except Exception as error:  # noqa: BLE001 - the machine lacks PostgreSQL
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            raise
        pytest.skip(f"no local PostgreSQL: {error}")
    yield postgres
    postgres.stop()
    shutil.rmtree(data, ignore_errors=True)


def test_a_stopped_postgresql_answers_503_with_a_sentence_then_recovers(tmp_path, own_postgres):
    with running_server(tmp_path / "home", "--db", own_postgres.url, env={"EVENTFLOW_WRITE_TIMEOUT": "15"}) as url:
        assert create_experiment(url, "before").status_code == 200
        port = own_postgres.port
        own_postgres.stop()

        read = httpx.get(url + API + "/experiments/get", params={"experiment_id": "0"}, timeout=90)
        assert read.status_code == 503, read.text
        assert read.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        message = read.json()["message"]
        assert "views database" in message and "PostgreSQL" in message and "retry" in message, message
        assert f"127.0.0.1:{port}" in message  # which one, so an operator knows where to look
        assert_clean(read.text)

        write = create_experiment(url, "during")
        assert write.status_code == 503, write.text
        assert write.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert_clean(write.text)

        own_postgres.requested_port = port
        own_postgres.start()
        again = httpx.get(url + API + "/experiments/get", params={"experiment_id": "0"}, timeout=90)
        assert again.status_code == 200, again.text


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB tmpfs: a real file system that really runs out of space."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True, text=True)
    if result.returncode != 0:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"cannot mount a tmpfs (needs root): {result.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs (needs root): {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory) -> str:
    """Write a file until the disk has no byte left; returns its path."""
    path = os.path.join(directory, "filler")
    with open(path, "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 65536)
        except OSError:
            pass
        try:  # the last few bytes, one at a time
            while True:
                filler.write(b"\0")
        except OSError:
            pass
    return path


def test_a_full_disk_answers_503_with_a_sentence_then_recovers(small_disk):
    home = small_disk / "home"
    with running_server(home, env={"EVENTFLOW_WRITE_TIMEOUT": "15"}) as url:
        assert create_experiment(url, "before").status_code == 200
        run = httpx.post(url + API + "/runs/create", json={"experiment_id": "0"}, timeout=90).json()["run"]["info"]["run_id"]
        filler = fill(small_disk)
        answer = None
        for i in range(200):  # the log's and the views' files have some slack: write until it is used up
            tags = [{"key": f"t{i}-{j}", "value": "x" * 5000} for j in range(100)]
            answer = httpx.post(url + API + "/runs/log-batch", json={"run_id": run, "tags": tags}, timeout=90)
            if answer.status_code != 200:
                break
        assert answer is not None and answer.status_code == 503, answer.text
        assert answer.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        message = answer.json()["message"]
        assert "full" in message and "free" in message, message
        assert_clean(answer.text)

        os.unlink(filler)
        assert create_experiment(url, "after").status_code == 200


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_oversized_search_has_no_sql_in_its_answer(request, tmp_path, backend):
    options = ["--db", request.getfixturevalue("new_postgres_database")("oversized")] if backend == "postgresql" else []
    with running_server(tmp_path / "home", *options) as url:
        ids = [str(i) for i in range(70_000)]  # more parameters than one PostgreSQL statement may carry
        answer = httpx.post(url + API + "/runs/search", json={"experiment_ids": ids}, timeout=120)
        if answer.status_code != 200:
            assert_clean(answer.text)
            assert len(answer.text) < 2000, answer.text[:500]
        flood = "attributes.run_name IN (" + ",".join(f"'{uuid.uuid4().hex}'" for _ in range(70_000)) + ")"
        answer = httpx.post(url + API + "/runs/search", json={"experiment_ids": ["0"], "filter": flood}, timeout=120)
        if answer.status_code != 200:
            assert_clean(answer.text)
            assert len(answer.text) < 2000, answer.text[:500]


def test_a_full_views_database_answers_503_naming_it(tmp_path):
    """The views' SQLite file full (SQLite's ``max_page_count``: the file may not grow,
    the same SQLITE_FULL a full disk gives), on a request that writes to the views
    itself (a webhook's secret is kept there, off the log). No consumers run: a write
    that reached the log answers 503 once it is not applied within a short timeout, and
    the secrets fill the last free room of the file within a few requests."""
    from sqlalchemy import event, text
    from starlette.testclient import TestClient

    from eventflow.server.app import create_app
    from eventflow.server.browsers import Policy
    from eventflow.server.runtime import open_runtime

    runtime = open_runtime(home=str(tmp_path / "home"), run_consumers=False)
    runtime.write_timeout = 0.1
    app = create_app(runtime, policy=Policy.create(["testserver"]))  # the test client's Host
    with TestClient(app, raise_server_exceptions=False) as client:
        with runtime.engine.begin() as connection:
            connection.execute(text("CREATE TABLE ballast (b BLOB)"))
            cap = connection.execute(text("PRAGMA page_count")).scalar_one() + 20

        @event.listens_for(runtime.engine, "connect")
        def _cap(dbapi_connection, _record):
            dbapi_connection.execute(f"PRAGMA max_page_count = {cap}")

        runtime.engine.dispose()
        with pytest.raises(Exception, match="full"):
            for _ in range(1000):
                with runtime.engine.begin() as connection:
                    connection.execute(text("INSERT INTO ballast VALUES (zeroblob(4000))"))
        for _ in range(500):
            answer = client.post("/api/2.0/eventflow/webhooks", json={"url": "https://example.com/hook", "events": ["run.*"]})
            assert answer.status_code == 503, answer.text
            assert_clean(answer.text)
            if "did not apply" not in answer.json()["message"]:
                break
    message = answer.json()["message"]
    assert message.startswith(f"the views database (SQLite file {tmp_path / 'home'}") and "is full" in message, message
    assert_clean(answer.text)
