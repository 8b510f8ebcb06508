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

from browsing import SCREENSHOTS, browser, page, shot  # noqa: F401 - fixtures
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


def test_mlflow_printed_run_link_opens_the_run_with_every_metric_value(page, autolog):
    link = autolog["run_links"][0]
    assert "/#/experiments/" in link and "/runs/" in link, link
    page.goto(link)
    page.wait_for_function("() => document.querySelector('#run-name').textContent === 'logreg-C0.5'")
    metrics = autolog["metrics"][0]
    assert len(metrics) >= 5, metrics  # autolog's training_* scores
    page.wait_for_function("(n) => document.querySelectorAll('#metrics-table tbody tr').length === n", arg=len(metrics))
    for key, value in metrics.items():
        row = f'#metrics-table tr[data-metric-row="{key}"]'
        assert texts(page, f"{row} td[data-column=latest]") == [shown(page, value)], key
        assert texts(page, f"{row} td[data-column=min]") == texts(page, f"{row} td[data-column=max]") == [shown(page, value)]
        assert texts(page, f"{row} td[data-column=step]") == ["0"]
    # A one-point series is drawn as a marker, not an invisible line.
    modes = page.evaluate("""() => document.querySelector('[data-metric="training_score"]').data.map(t => t.mode)""")
    assert modes == ["markers"]
    # Sortable by clicking a header, the other way on a second click.
    page.click('#metrics-table th[data-sort="latest"]')
    ascending = sorted(metrics, key=lambda k: (metrics[k], k))
    page.wait_for_function("(keys) => JSON.stringify([...document.querySelectorAll('#metrics-table tbody tr')].map(r => r.dataset.metricRow)) === JSON.stringify(keys)",
                           arg=ascending)
    page.click('#metrics-table th[data-sort="latest"]')
    page.wait_for_function("() => document.querySelector('#metrics-table tbody tr').dataset.metricRow === 'training_roc_auc'")
    shot(page, "run-metrics")


def test_mlflow_printed_experiment_link_and_artifact_route_open_their_pages(page, autolog):
    page.goto(autolog["experiment_link"])
    page.wait_for_function("(name) => document.querySelector('#title').textContent.includes(name)", arg=autolog["experiment"])
    page.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 2")
    # MLflow's route to a run's artifact opens the run with the artifact previewed.
    page.goto(autolog["run_links"][1] + "/artifacts/estimator.html")
    page.wait_for_function("() => document.querySelector('#run-name').textContent === 'logreg-C2.0'")
    page.wait_for_selector("#preview iframe.preview")


def test_compare_shows_every_metric_value_bars_parallel_coordinates_and_a_scatter(page, url, autolog):
    ids = autolog["run_ids"]
    page.goto(f"{url}/#/compare?runs={','.join(ids)}")
    keys = sorted(autolog["metrics"][0])
    page.wait_for_function("(n) => document.querySelectorAll('#compare-metrics tbody tr').length === n", arg=len(keys))
    for key in keys:
        for run_id, metrics in zip(ids, autolog["metrics"]):
            assert texts(page, f'#compare-metrics tr[data-metric-row="{key}"] td[data-run="{run_id}"]') == [shown(page, metrics[key])]
    # One value per run: a bar per run.
    page.wait_for_function("""() => document.querySelector('[data-metric="training_log_loss"]')?.dataset.kind === "bar" """)
    bars = page.evaluate("""() => { const t = document.querySelector('[data-metric="training_log_loss"]').data[0]; return [t.type, t.x, t.y]; }""")
    assert bars == ["bar", ["logreg-C0.5", "logreg-C2.0"], [m["training_log_loss"] for m in autolog["metrics"]]]
    # Params and metrics together.
    page.wait_for_function("() => document.querySelector('#parallel').data?.[0]?.type === 'parcoords'")
    labels = page.evaluate("() => document.querySelector('#parallel').data[0].dimensions.map(d => d.label)")
    assert {"C", "max_iter", "training_score", "training_log_loss"} <= set(labels), labels
    page.select_option("#scatter-x", "params.C")
    page.select_option("#scatter-y", "metrics.training_log_loss")
    page.wait_for_function("() => document.querySelector('#scatter').layout?.xaxis.title.text === 'params.C' && document.querySelector('#scatter').layout.yaxis.title.text === 'metrics.training_log_loss'")
    xy = page.evaluate("() => { const t = document.querySelector('#scatter').data[0]; return [t.x, t.y]; }")
    assert xy == [[0.5, 2.0], [m["training_log_loss"] for m in autolog["metrics"]]]
    shot(page, "compare-values")
    # The scatter alone: headless Chromium here has no WebGL for Plotly's parcoords (its data is checked above).
    page.locator("#scatter").screenshot(path=str(SCREENSHOTS / "compare-scatter.png"))


def test_html_artifact_renders_sandboxed_and_previews_stay_in_the_viewport(page, url, autolog):
    page.goto(f"{url}/#/runs/{autolog['run_ids'][0]}")
    page.click("#artifacts a[data-file='estimator.html']")
    frame = page.wait_for_selector("#preview iframe.preview")
    assert frame.get_attribute("sandbox") == "", "no allow-scripts, no allow-same-origin"
    assert "LogisticRegression" in frame.get_attribute("srcdoc")
    assert page.locator("#preview pre").count() == 0, "rendered, not shown as source"
    viewport = page.viewport_size

    def within_viewport(selector: str) -> None:
        box = page.locator(selector).bounding_box()
        assert box["height"] <= viewport["height"] and box["width"] <= viewport["width"], (selector, box)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= viewport["width"], "the page is not stretched"

    within_viewport("#preview iframe.preview")
    shot(page, "artifact-html")
    page.click("#artifacts a[data-file='training_confusion_matrix.png']")
    page.wait_for_function("() => document.querySelector('#preview img.preview')?.complete")
    within_viewport("#preview img.preview")
    # A big text: the start of it, and a link to the whole file.
    page.click("#artifacts a[data-dir='logs']")
    page.click("#artifacts a[data-file='logs/big.txt']")
    page.wait_for_selector("#preview .truncated a[download]")
    assert len(page.locator("#preview pre.preview").text_content()) == 100000
    within_viewport("#preview pre.preview")
    whole = httpx.get(url + page.get_attribute("#preview .truncated a[download]", "href"))
    assert len(whole.text) == len("line of a big log\n") * 20000


def test_column_chooser_is_remembered_per_experiment_and_the_run_name_stays_in_view(page, url, autolog):
    page.set_viewport_size({"width": 900, "height": 800})
    page.goto(f"{url}/#/experiments/{autolog['experiment_id']}")
    page.wait_for_selector('#runs th[data-sort="params.tol"]')
    page.click("#columns-button")
    page.uncheck('#column-chooser input[data-column-toggle="params.tol"]')
    page.uncheck('#column-chooser input[data-column-toggle="user"]')
    page.wait_for_function("() => !document.querySelector('#runs th[data-sort=\"params.tol\"]')")
    assert page.locator('#runs td[data-column="params.tol"]').count() == 0
    page.reload()
    page.wait_for_selector('#runs th[data-sort="params.C"]')
    page.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 2")
    assert page.locator('#runs th[data-sort="params.tol"], #runs th[data-sort="user"]').count() == 0, "remembered"
    # Another experiment shows every column.
    other = ok(url, "POST", "experiments/create", name=f"other-{uuid.uuid4().hex[:6]}")["experiment_id"]
    ok(url, "POST", "runs/create", experiment_id=other, run_name="plain")
    page.goto(f"{url}/#/experiments/{other}")
    page.wait_for_selector('#runs th[data-sort="user"]')
    # Scrolled far right, the run's name is still where it was.
    page.goto(f"{url}/#/experiments/{autolog['experiment_id']}")
    page.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 2")
    name_cell = '#runs tbody tr:first-child td[data-column="name"]'
    before = page.locator(name_cell).bounding_box()
    scrolled = page.evaluate("() => { const w = document.querySelector('.table-wrap'); w.scrollLeft = 5000; return w.scrollLeft; }")
    assert scrolled > 300, "the table is wider than the page"
    page.wait_for_function(f"(x) => Math.abs(document.querySelector('{name_cell}').getBoundingClientRect().x - x) < 2", arg=before["x"])
    edges = page.evaluate(f"""() => {{ const rect = (s) => document.querySelector(s).getBoundingClientRect();
        const wrap = rect('.table-wrap'), select = rect('#runs tbody tr:first-child td.sticky-select'), name = rect('{name_cell}');
        return [select.left - wrap.left, name.left - select.right]; }}""")
    assert [round(edge) for edge in edges] == [0, 0], f"the box's and the name's cells sit side by side at the left edge: {edges}"
    shot(page, "runs-columns")


class Logger(threading.Thread):
    """Logs a metric point to a RUNNING run every few ms until stopped (the live updates)."""

    def __init__(self, url: str, run_id: str):
        super().__init__(daemon=True)
        self.url, self.run_id, self.stop, self.step = url, run_id, threading.Event(), 0

    def run(self) -> None:
        with httpx.Client(base_url=self.url + "/api/2.0/mlflow") as http:
            while not self.stop.is_set():
                http.post("/runs/log-metric", json={"run_id": self.run_id, "key": "loss", "value": 1 / (self.step + 1),
                                                    "timestamp": int(time.time() * 1000), "step": self.step}).raise_for_status()
                self.step += 1
                self.stop.wait(0.02)


def test_live_rows_update_in_place_and_navigating_away_throws_nothing(page, url):
    experiment_id = ok(url, "POST", "experiments/create", name=f"live-{uuid.uuid4().hex[:6]}")["experiment_id"]
    run_ids = [ok(url, "POST", "runs/create", experiment_id=experiment_id, run_name=name)["run"]["info"]["run_id"] for name in ("a", "b")]
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{url}/#/experiments/{experiment_id}")
    page.check(f'input[data-select="{run_ids[0]}"]')
    page.evaluate(f"""() => {{ window.__box = document.querySelector('input[data-select="{run_ids[0]}"]');
                               window.__duration = document.querySelector('tr[data-run="{run_ids[0]}"] td[data-column="duration"]').textContent; }}""")
    logger = Logger(url, run_ids[0])
    logger.start()
    try:
        cell = f'tr[data-run="{run_ids[0]}"] td[data-column="metrics.loss"]'
        page.wait_for_function(f"() => document.querySelector('{cell}')?.textContent !== ''")
        # At least a second's redraw (the running duration ticks) while points arrive.
        page.wait_for_function(f"""() => document.querySelector('tr[data-run="{run_ids[0]}"] td[data-column="duration"]').textContent !== window.__duration""")
        first = page.text_content(cell)
        page.wait_for_function(f"(first) => document.querySelector('{cell}').textContent !== first", arg=first)
        assert page.evaluate(f"""() => window.__box === document.querySelector('input[data-select="{run_ids[0]}"]')
                                      && window.__box.isConnected && window.__box.checked""")
        # Navigate away while updates stream in: a page left behind must not redraw into the next.
        for _ in range(12):
            page.evaluate(f"location.hash = '#/experiments/{experiment_id}'")
            page.wait_for_selector(f'tr[data-run="{run_ids[0]}"] td[data-column="metrics.loss"]:not(:empty)')
            page.evaluate("location.hash = '#/models/nobody-registered-this'; setTimeout(() => { location.hash = '#/activity'; }, 0)")
            page.wait_for_selector("#feed")
            page.evaluate(f"location.hash = '#/runs/{run_ids[0]}'")
            page.wait_for_selector('#chart-loss')
            page.evaluate("location.hash = '#/'")
            page.wait_for_selector("#experiments")
    finally:
        logger.stop.set()
        logger.join()
    page.wait_for_timeout(300)  # not a condition: a last late redraw would land here
    assert errors == []


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


def test_models_link_to_their_pages_with_stages_and_an_empty_model_is_listed(page, url, autolog):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    name, empty = f"iris-{uuid.uuid4().hex[:6]}", f"leftover-{uuid.uuid4().hex[:6]}"
    run_id = autolog["run_ids"][0]
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    client.transition_model_version_stage(name, "2", "Staging")
    client.create_registered_model(empty)
    page.goto(url + "/#/models")
    page.wait_for_selector(f'#registered-models tr[data-model="{empty}"]')
    assert "no versions" in page.text_content(f'#registered-models tr[data-model="{empty}"]')
    row = f'#registered-models tr[data-model="{name}"]'
    page.wait_for_selector(f'{row} [data-version="2"] [data-stage="Staging"]')
    shot(page, "models-registry")
    page.click(f'{row} [data-version="2"] a')
    page.wait_for_function("() => location.hash.endsWith('/versions/2')")
    page.wait_for_selector("#version-details td:has-text('Staging')")
    page.click(f"h1 a:has-text('{name}')")
    page.wait_for_selector('#versions tr[data-version="1"]')
    # MLflow's own model routes open the same pages.
    page.goto(f"{url}/#/models/{name}/versions/1")
    page.wait_for_selector(f"#version-details a:has-text('{run_id}')")
    page.goto(f"{url}/#/models/{name}")
    page.wait_for_selector('#versions tr[data-version="2"] [data-stage="Staging"]')


@pytest.mark.parametrize("route, says", [
    ("#/experiments/424242424242", "Experiment 424242424242 not found"),
    ("#/runs/0123456789abcdef0123456789abcdef", "Run 0123456789abcdef0123456789abcdef not found"),
    ("#/models/never-registered", "Model never-registered not found"),
    ("#/models/never-registered/versions/3", "Version 3 of model never-registered not found"),
])
def test_a_missing_entity_says_not_found(page, url, route, says):
    page.goto(f"{url}/{route}")
    page.wait_for_selector(".not-found")
    text = page.text_content("#view")
    assert says in text, text
    assert "0 runs" not in text
