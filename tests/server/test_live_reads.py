"""A page that re-reads the REST API when the live feed tells it something changed (the
model page does) must read the change: the feed hands a lifecycle event on only once the
views reflect it. Real server (API only), a real projector process that the test pauses
with SIGSTOP, a real websocket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from live_client import LiveClient
from serving import ok, running_server, wait_for

API = "/api/2.0/mlflow"
PAUSED = 5.0  # s the projector stays stopped unless the event reaches the page first


def experiment_name(url: str, experiment_id: str) -> str:
    return httpx.get(url + API + "/experiments/get", params={"experiment_id": experiment_id}, timeout=30).json()["experiment"]["name"]


def test_a_lifecycle_event_reaches_the_page_only_once_a_read_shows_it(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with open(home / "projector.out", "a") as out:
        projector = subprocess.Popen([sys.executable, "-m", "eventflow", "consume", "projector", "--home", str(home)], stdout=out, stderr=subprocess.STDOUT)
    try:
        with running_server(home, "--no-consumers") as url:
            wait_for(lambda: httpx.get(url + API + "/experiments/get", params={"experiment_id": "0"}).status_code == 200, "the Default experiment in the views")
            before, after = f"before-{uuid.uuid4().hex[:6]}", f"after-{uuid.uuid4().hex[:6]}"
            experiment_id = ok(url, "POST", "experiments/create", name=before)["experiment_id"]
            client = LiveClient(url)
            client.subscribe("feed", "events", types=["experiment.*"], entity=experiment_id)
            client.until(lambda: "feed" in client.snapshots)

            def renamed_event() -> bool:
                return any(e["event"]["type"] == "experiment.renamed" for e in client.events["feed"])

            with ThreadPoolExecutor(1) as pool:
                os.kill(projector.pid, signal.SIGSTOP)  # the views fall behind the log
                try:
                    rename = pool.submit(ok, url, "POST", "experiments/update", experiment_id=experiment_id, new_name=after)
                    deadline = time.monotonic() + PAUSED
                    while not renamed_event() and time.monotonic() < deadline:
                        client.receive(0.2)
                    if renamed_event():  # it came while the views could not have applied it
                        assert experiment_name(url, experiment_id) == after, "the feed told the page before a read could show the change"
                finally:
                    os.kill(projector.pid, signal.SIGCONT)
                rename.result(timeout=120)
            client.until(renamed_event, timeout=60)
            assert experiment_name(url, experiment_id) == after
            client.close()
    finally:
        projector.terminate()
        projector.wait(timeout=30)
