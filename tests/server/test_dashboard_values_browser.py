"""The dashboard shows every value, in real headless Chromium against a real server, with
runs logged by the real ``mlflow`` client (sklearn autolog: a single value per metric,
~15 params, an ``estimator.html`` artifact): metrics tables on the run and Compare pages,
MLflow's printed links, artifact previews, the runs table's columns and live rows, the
registry's models, and pages of what does not exist.

Screenshots are written to docs/screenshots/ by this run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from browsing import browser, page, shot  # noqa: F401 - fixtures
from serving import ok, running_server

AUTOLOG = textwrap.dedent(
    """
    import sys
    import mlflow
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    mlflow.set_experiment(sys.argv[1])
    mlflow.sklearn.autolog(log_models=False)
    features, labels = load_iris(return_X_y=True)
    for c in ("0.5", "2.0"):
        with mlflow.start_run(run_name=f"logreg-C{c}") as run:
            LogisticRegression(C=float(c), max_iter=300).fit(features, labels)
            mlflow.log_text("line of a big log\\n" * 20000, "logs/big.txt")
    """
)
PRINTED_RUN = re.compile(r"View run (\S+) at: (\S+)")
PRINTED_EXPERIMENT = re.compile(r"View experiment at: (\S+)")


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> Iterator[str]:
    with running_server(tmp_path_factory.mktemp("dashboard-values")) as url:
        yield url


@pytest.fixture(scope="module")
def autolog(url, tmp_path_factory) -> dict[str, Any]:
    """Two sklearn autolog runs from the real mlflow client in its own process, and the
    links it printed."""
    script = tmp_path_factory.mktemp("autolog") / "autolog.py"
    script.write_text(AUTOLOG)
    experiment = f"autolog-{uuid.uuid4().hex[:6]}"
    done = subprocess.run([sys.executable, str(script), experiment], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MLFLOW_TRACKING_URI": url})
    assert done.returncode == 0, done.stderr[-3000:]
    printed_runs = PRINTED_RUN.findall(done.stdout)
    assert [name for name, _ in printed_runs] == ["logreg-C0.5", "logreg-C2.0"], done.stdout
    run_ids = [link.rsplit("/", 1)[1] for _, link in printed_runs]
    runs = [ok(url, "GET", "runs/get", run_id=run_id)["run"] for run_id in run_ids]
    return {
        "experiment": experiment, "experiment_id": runs[0]["info"]["experiment_id"], "run_ids": run_ids,
        "run_links": [link for _, link in printed_runs], "experiment_link": PRINTED_EXPERIMENT.findall(done.stdout)[0],
        "metrics": [{m["key"]: m["value"] for m in run["data"]["metrics"]} for run in runs],
    }


def shown(page, value: float) -> str:
    """A value as the dashboard writes it (its own fmtValue)."""
    return page.evaluate("async (v) => (await import('/static/dashboard/util.js')).fmtValue(v)", value)


def texts(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "cells => cells.map(c => c.textContent.trim())")


def test_favicon_is_served(page, url):
    answer = httpx.get(url + "/favicon.ico")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("image/svg+xml")
    assert answer.text.lstrip().startswith("<svg")
    failed: list[str] = []
    page.on("response", lambda response: failed.append(response.url) if response.status >= 400 else None)
    page.goto(url + "/")
    page.wait_for_selector("#experiments tbody")
    assert page.evaluate("() => document.querySelector('link[rel=icon]').href") == url + "/favicon.ico"
    assert failed == []
