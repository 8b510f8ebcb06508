"""The dashboard in real headless Chromium (Debian's, driven by Playwright), against a
real server, with a real training process logging through the SDK.

Screenshots of the main pages are written to docs/screenshots/ by this run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import httpx
import pytest

from browsing import browser, page, shot  # noqa: F401 - fixtures
from serving import running_server

API = "/api/2.0/mlflow"

TRAINING = textwrap.dedent(
    """
    import math, sys, time
    import eventflow

    experiment, name, lr = sys.argv[1:4]
    eventflow.set_experiment(experiment)
    with eventflow.start_run(run_name=name) as run:
        eventflow.log_params({"lr": lr, "layers": "2", "optimizer": "adam"})
        eventflow.set_tag("team", "vision")
        eventflow.log_text("epoch,loss\\n1,0.5\\n", "reports/summary.csv")
        eventflow.flush()
        print(run.run_id, flush=True)
        for line in sys.stdin:  # "log FROM TO PAUSE" | "end"
            words = line.split()
            if words[0] == "end":
                break
            start, stop, pause = int(words[1]), int(words[2]), float(words[3])
            for step in range(start, stop):
                eventflow.log_metric("loss", math.exp(-step / 40) * float(lr) * 10, step=step)
                eventflow.log_metric("accuracy", 1 - math.exp(-step / 30), step=step)
                time.sleep(pause)
            eventflow.flush()
            print("logged", flush=True)
    """
)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("dashboard")) as url:
        yield url


class Training:
    """A training script in its own process, told when to log over its stdin."""

    def __init__(self, url: str, tmp_path: Path, experiment: str, name: str, lr: str):
        script = tmp_path / f"train_{name}.py"
        script.write_text(TRAINING)
        self.process = subprocess.Popen(
            [sys.executable, str(script), experiment, name, lr], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "EVENTFLOW_TRACKING_URI": url},
        )
        self.run_id = self.process.stdout.readline().strip()
        assert self.run_id, "the training script did not start its run"

    def log(self, start: int, stop: int, pause: float = 0.0, wait: bool = True) -> None:
        self.process.stdin.write(f"log {start} {stop} {pause}\n")
        self.process.stdin.flush()
        if wait:
            assert self.process.stdout.readline().strip() == "logged"

    def end(self) -> None:
        self.process.stdin.write("end\n")
        self.process.stdin.flush()
        assert self.process.wait(timeout=60) == 0


def points(page, metric: str) -> int:
    """How many points the chart of ``metric`` holds (Plotly's own data on the graph div)."""
    return page.evaluate(
        """(metric) => { const gd = document.querySelector(`[data-metric="${metric}"]`);
             return gd && gd.data ? gd.data.filter(t => t.hoverinfo !== "skip").reduce((n, t) => n + t.x.length, 0) : 0; }""",
        metric,
    )


def wait_points(page, metric: str, count: int, timeout: float = 30.0) -> None:
    page.wait_for_function(
        """([metric, count]) => { const gd = document.querySelector(`[data-metric="${metric}"]`);
             return gd && gd.data && gd.data.filter(t => t.hoverinfo !== "skip").reduce((n, t) => n + t.x.length, 0) >= count; }""",
        arg=[metric, count], timeout=timeout * 1000,
    )


def wait_rows(page, run_ids: list[str]) -> None:
    """Wait until the runs table shows exactly these runs, in this order."""
    page.wait_for_function(
        "(ids) => JSON.stringify([...document.querySelectorAll('#runs tbody tr')].map(r => r.dataset.run)) === JSON.stringify(ids)",
        arg=run_ids, timeout=15000,
    )


def test_run_page_charts_grow_and_the_badge_changes_without_reload(page, url, tmp_path):
    experiment = f"browser-{uuid.uuid4().hex[:6]}"
    training = Training(url, tmp_path, experiment, "live-run", "0.1")
    page.goto(f"{url}/#/runs/{training.run_id}")
    page.evaluate("window.__sameDocument = true")
    page.wait_for_selector('#status [data-status="RUNNING"]')
    assert page.locator("#params").inner_text().count("lr") == 1
    assert "team" in page.locator("#tags").inner_text()

    training.log(0, 150, pause=0.02, wait=False)
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not seen or seen[-1] < 150):
        seen.append(points(page, "loss"))
        page.wait_for_timeout(50)
    assert seen[-1] == 150, seen
    assert len({n for n in seen if 0 < n < 150}) >= 2, f"the chart grew while points arrived: {seen}"
    assert training.process.stdout.readline().strip() == "logged"
    wait_points(page, "accuracy", 150)

    # Log scale, smoothing and x axis are chart options, applied to every chart.
    page.check("#logscale")
    page.wait_for_function("""() => document.querySelector('[data-metric="loss"]').layout.yaxis.type === "log" """)
    page.locator("#smoothing").fill("0.8")
    page.wait_for_function("""() => document.querySelector('[data-metric="loss"]').data.length === 2""")
    page.uncheck("#logscale")
    page.locator("#smoothing").fill("0")
    # The artifacts: browse, preview, download.
    page.click("text=reports/")
    page.click("text=summary.csv")
    page.wait_for_selector("pre.preview:has-text('epoch,loss')")
    shot(page, "run")

    training.end()
    page.wait_for_selector('#status [data-status="FINISHED"]', timeout=30000)
    assert page.evaluate("window.__sameDocument") is True, "no reload happened"


def test_runs_table_filters_sorts_and_compares(page, url, tmp_path):
    experiment = f"table-{uuid.uuid4().hex[:6]}"
    first = Training(url, tmp_path, experiment, "small-lr", "0.01")
    page.goto(url + "/")
    page.click(f"text={experiment}")
    page.wait_for_selector(f'tr[data-run="{first.run_id}"]')
    # A new run appears without reloading, and its status changes live.
    second = Training(url, tmp_path, experiment, "large-lr", "0.5")
    page.wait_for_selector(f'tr[data-run="{second.run_id}"]')
    first.log(0, 50)
    second.log(0, 80)
    first.end()
    page.wait_for_selector(f'tr[data-run="{first.run_id}"] [data-status="FINISHED"]')
    page.wait_for_selector(f'tr[data-run="{second.run_id}"] [data-status="RUNNING"]')
    page.wait_for_function(
        f"""() => document.querySelector('tr[data-run="{second.run_id}"] td[data-column="metrics.accuracy"]')?.textContent !== "" """
    )
    # Sort by a metric column.
    page.click('th[data-sort="metrics.loss"]')
    wait_rows(page, [first.run_id, second.run_id])  # ascending loss: the small learning rate's first
    page.click('th[data-sort="metrics.loss"]')
    wait_rows(page, [second.run_id, first.run_id])
    shot(page, "runs")
    # Filter with MLflow's grammar.
    page.fill("#filter", 'params.lr = "0.5" and metrics.accuracy > 0.5')
    page.press("#filter", "Enter")
    wait_rows(page, [second.run_id])
    page.fill("#filter", "params.lr >>> 2")
    page.press("#filter", "Enter")
    page.wait_for_function("() => document.querySelector('#error').textContent.length > 0")
    page.fill("#filter", "")
    page.press("#filter", "Enter")
    page.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 2")
    # Compare the two.
    page.check(f'input[data-select="{first.run_id}"]')
    page.check(f'input[data-select="{second.run_id}"]')
    page.click("#compare")
    wait_points(page, "loss", 130)
    traces = page.evaluate("""() => document.querySelector('[data-metric="loss"]').data.map(t => t.name).sort()""")
    assert traces == ["large-lr", "small-lr"]
    differing = page.eval_on_selector_all("#params tr.differs", "rows => rows.map(r => r.dataset.param)")
    assert differing == ["lr"]
    assert page.locator('#params tr[data-param="optimizer"] td.diff').count() == 0
    shot(page, "compare")
    second.end()


def test_activity_feed_shows_events_in_order(page, url):
    page.goto(url + "/#/activity")
    page.wait_for_selector("#feed")
    page.wait_for_timeout(300)
    name = f"feed-{uuid.uuid4().hex[:6]}"
    with httpx.Client(base_url=url + API) as http:
        experiment_id = http.post("/experiments/create", json={"name": name}).json()["experiment_id"]
        run_id = http.post("/runs/create", json={"experiment_id": experiment_id, "run_name": "feed-run"}).json()["run"]["info"]["run_id"]
        http.post("/runs/log-parameter", json={"run_id": run_id, "key": "alpha", "value": "1"})
        http.post("/runs/update", json={"run_id": run_id, "status": "KILLED"})
    page.wait_for_selector(f'#feed li[data-type="run.killed"][data-entity="{run_id}"]')
    mine = page.eval_on_selector_all(
        "#feed li", f"items => items.filter(li => li.dataset.entity === '{run_id}').map(li => li.dataset.type)")
    assert mine == ["run.killed", "run.params_logged", "run.created"]  # newest first
    assert page.locator(f'#feed li[data-type="experiment.created"][data-entity="{experiment_id}"]').count() == 1
    # Filter by type and entity.
    page.select_option("#type", "run.*")
    page.fill("#entity", run_id)
    page.click("#apply")
    page.wait_for_function(f"""() => [...document.querySelectorAll('#feed li')].every(li => li.dataset.entity === '{run_id}')
                                     && document.querySelectorAll('#feed li').length === 3""")
    page.select_option("#type", "")
    page.fill("#entity", "")
    page.click("#apply")
    page.wait_for_selector(f'#feed li[data-type="experiment.created"][data-entity="{experiment_id}"]')
    shot(page, "activity")
    page.goto(url + "/")
    page.wait_for_selector(f"text={name}")
    shot(page, "experiments")
    page.goto(url + "/#/models")
    page.wait_for_selector("#registered")
    with httpx.Client(base_url=url + API) as http:  # appears without a reload
        created = http.post("/logged-models", json={"experiment_id": experiment_id, "name": "feed-model", "source_run_id": run_id})
        assert created.status_code == 200, created.text
    page.wait_for_selector("#logged-models td:has-text('feed-model')")
    shot(page, "models")


def test_a_dropped_websocket_reconnects_without_losing_points(page, url, tmp_path):
    training = Training(url, tmp_path, f"drop-{uuid.uuid4().hex[:6]}", "dropped", "0.2")
    page.goto(f"{url}/#/runs/{training.run_id}")
    page.wait_for_selector('#status [data-status="RUNNING"]')
    training.log(0, 40)
    wait_points(page, "loss", 40)
    before = page.evaluate("eventflow.channel.reconnects")
    training.log(40, 140, pause=0.005, wait=False)
    page.wait_for_timeout(150)
    page.evaluate("eventflow.channel.drop()")  # mid-stream
    assert training.process.stdout.readline().strip() == "logged"
    wait_points(page, "loss", 140)
    page.wait_for_timeout(500)
    assert page.evaluate("eventflow.channel.reconnects") == before + 1
    steps = page.evaluate("""() => document.querySelector('[data-metric="loss"]').data[0].x""")
    assert steps == list(range(140)), "every point once, in order"
    training.end()
