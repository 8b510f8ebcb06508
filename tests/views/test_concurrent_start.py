"""Several processes started at once on an empty database all come up: the server and two
projectors race to create the schema (views and webhook tables), ten times over, on
fresh PostgreSQL databases and on fresh SQLite files.

Before the schema lock, two processes both saw a table missing and both created it:
PostgreSQL answered ``UniqueViolation pg_type_typname_nsp_index`` (or "already exists"),
SQLite "table … already exists", and one of the processes died.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
from serving import running_server  # noqa: E402

ROUNDS = 10


def start_projector(home, db: str, log_path: str) -> tuple[subprocess.Popen, object]:
    out = open(log_path, "w")
    command = [sys.executable, "-m", "eventflow", "consume", "projector", "--home", str(home), "--db", db]
    return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT), out


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def one_round(home, db: str) -> None:
    """Start the API server (no consumers of its own) and two projectors at the same
    moment; all must come up, and a write must be applied by the projectors."""
    home.mkdir(parents=True)
    projectors = [start_projector(home, db, str(home / f"projector-{i}.out")) for i in range(2)]
    try:
        with running_server(home, "--db", db, "--no-consumers", env={"EVENTFLOW_WRITE_TIMEOUT": "60"}) as url:
            created = httpx.post(url + "/api/2.0/mlflow/experiments/create", json={"name": f"e-{home.name}"}, timeout=90)
            assert created.status_code == 200, created.text  # a projector applied it: they are up
            for process, out in projectors:
                assert process.poll() is None, f"a projector died:\n{open(out.name).read()[-3000:]}"
    finally:
        for process, out in projectors:
            stop(process)
            out.close()
    for i in range(2):
        output = (home / f"projector-{i}.out").read_text()
        assert "Traceback" not in output, output[-3000:]
    assert "Traceback" not in (home / "server.out").read_text(), (home / "server.out").read_text()[-3000:]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_a_server_and_two_projectors_start_together_on_an_empty_database(request, tmp_path, backend):
    started = time.monotonic()
    for n in range(ROUNDS):
        home = tmp_path / f"round-{n}"
        if backend == "postgresql":
            db = request.getfixturevalue("new_postgres_database")("concurrent")
        else:
            db = f"sqlite:///{tmp_path / f'views-{n}.db'}"
        one_round(home, db)
    print(f"{ROUNDS} rounds on {backend} in {time.monotonic() - started:.0f} s")
