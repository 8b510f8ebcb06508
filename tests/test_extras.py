"""The base install carries what the server and the SDK need; Kafka, PostgreSQL, the lineage
graph's vis-network and the API docs' Swagger UI come with extras, and a missing one is a
clear message naming the extra (issue 16). Each test runs eventflow in a process where the
extra's package cannot be imported, as where it is not installed."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import httpx
import pytest

from tests.server.serving import running_server

BLOCKER = """
import sys
BLOCKED = {blocked!r}
class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _NotInstalled())
"""


def without(tmp_path: Path, *modules: str) -> dict[str, str]:
    """An environment whose Python cannot import ``modules`` (a sitecustomize blocks them)."""
    site = tmp_path / "blocked-site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER.format(blocked=set(modules)))
    env = {k: v for k, v in os.environ.items() if k not in ("EVENTFLOW_TRACKING_URI", "EVENTFLOW_KAFKA", "EVENTFLOW_DB")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _eventflow(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eventflow", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_base_install_leaves_the_extras_out():
    base = {r.split(";")[0].split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower()
            for r in metadata.requires("eventflow") or [] if "extra ==" not in r}
    assert {"starlette", "uvicorn", "fastavro", "sqlalchemy", "httpx", "plotly"} <= base
    assert not base & {"pyvis", "psycopg", "kafka-python", "swagger-ui-bundle"}, base


def test_the_blocker_blocks(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import pyvis"], env=without(tmp_path, "pyvis"), capture_output=True, text=True)
    assert done.returncode == 1 and "No module named 'pyvis'" in done.stderr


def test_a_server_without_pyvis_serves_and_says_what_the_lineage_graph_needs(tmp_path):
    with running_server(tmp_path / "home", env=without(tmp_path, "pyvis")) as url:
        assert httpx.get(url + "/", timeout=30).status_code == 200
        answer = httpx.get(url + "/static/vendor/vis-network.min.js", timeout=30)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/javascript")
        assert "pip install 'eventflow[lineage]'" in answer.text


def test_postgres_views_without_psycopg_name_the_extra(tmp_path):
    done = _eventflow("server", "--home", str(tmp_path / "home"), "--db", "postgresql+psycopg://u@127.0.0.1:1/eventflow",
                      env=without(tmp_path, "psycopg"), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "pip install 'eventflow[postgres]'" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_kafka_without_kafka_python_names_the_extra(tmp_path):
    env = without(tmp_path, "kafka")
    done = _eventflow("server", "--home", str(tmp_path / "home"), "--kafka", "127.0.0.1:1", env=env, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "pip install 'eventflow[kafka]'" in done.stderr and "Traceback" not in done.stderr, done.stderr
    code = "import eventflow\ntry:\n    eventflow.start_run()\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
    env.update(EVENTFLOW_TRACKING_URI="kafka://127.0.0.1:1", EVENTFLOW_HOME=str(tmp_path / "home"))
    sdk = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "pip install 'eventflow[kafka]'" in sdk.stdout, sdk.stdout + sdk.stderr
