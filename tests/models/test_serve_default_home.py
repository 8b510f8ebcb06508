"""``eventflow models serve`` with no tracking URI reads runs:/ and models:/ URIs from the
same default as the SDK: EVENTFLOW_TRACKING_URI, else the embedded home (issue 16)."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from tests.models.scoring import scoring_server

TRAIN = """
import eventflow, eventflow.models as models
from sklearn.linear_model import LinearRegression
import pandas as pd
frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
with eventflow.start_run() as run:
    models.log_model(LinearRegression().fit(frame, [1.0, 3.0, 5.0, 7.0]), "model", input_example=frame)
client = eventflow.Client()
version = client.register_model(f"runs:/{run.info.run_id}/model", "line")
client.set_registered_model_alias("line", "production", version["version"])
print(run.info.run_id)
"""


@pytest.fixture
def home_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("EVENTFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI")}
    env.update(EVENTFLOW_HOME=str(tmp_path / "home"), EVENTFLOW_CAPTURE_ENV="false")
    return env


@pytest.fixture
def run_id(home_env, tmp_path):
    done = subprocess.run([sys.executable, "-c", TRAIN], env=home_env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def _predict(url: str) -> list[float]:
    answer = httpx.post(url + "/invocations", json={"dataframe_split": {"columns": ["x"], "data": [[10.0]]}}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"]


@pytest.mark.parametrize("uri", ["runs:/{run_id}/model", "models:/line@production", "models:/line/1"])
def test_a_model_uri_is_served_from_the_embedded_home_by_default(uri, run_id, home_env, tmp_path):
    with scoring_server(uri.format(run_id=run_id), log_path=str(tmp_path / "serve.out"), env=home_env) as url:
        assert _predict(url) == pytest.approx([21.0])


def test_a_missing_alias_on_the_home_is_one_clear_error(run_id, home_env, tmp_path):
    done = subprocess.run([sys.executable, "-m", "eventflow", "models", "serve", "-m", "models:/line@staging"],
                          env=home_env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "models:/line@staging" in done.stderr and "staging" in done.stderr
