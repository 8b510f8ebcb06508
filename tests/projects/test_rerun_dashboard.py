"""The dashboard in real headless Chromium: a rerun's page shows its reproducibility report
and links to the original; the original's page links to its reruns."""

from __future__ import annotations

import json
import os
import subprocess
import sys


sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
from rerun_repos import run_script, training_repo  # noqa: E402
from serving import running_server  # noqa: E402
from browsing import browser, page  # noqa: E402,F401  (the fixtures: one real headless Chromium, a page that fails on JavaScript errors)


def test_the_rerun_page_shows_its_report_and_both_runs_link_to_each_other(page, tmp_path):
    with running_server(tmp_path / "server") as url:
        original = run_script(training_repo(tmp_path / "repo"), url, "--lr", "0.25")
        done = subprocess.run([sys.executable, "-m", "eventflow", "rerun", original, "--tracking-uri", url,
                               "--env-manager", "local", "--set", "lr=0.5", "--json"], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        new = json.loads(done.stdout)["run_id"]

        page.goto(f"{url}/#/runs/{new}")
        page.wait_for_selector('#reproducibility[data-loaded="true"]', timeout=30000)
        assert page.locator("#rerun-of a").get_attribute("href") == f"#/runs/{original}"
        rows = page.locator("#reproducibility tr[data-input]")
        assert {rows.nth(i).get_attribute("data-input"): rows.nth(i).get_attribute("data-same") for i in range(rows.count())} == {
            "commit": "true", "patch": "true", "python": "true", "parameters": "false", "packages": "true", "datasets": "true"}
        assert "lr: 0.25 → 0.5" in page.locator('#reproducibility tr[data-input="parameters"]').inner_text()
        assert page.locator('#reproducibility tr[data-metric="loss"]').get_attribute("data-same") == "false"
        assert page.locator('#reproducibility tr[data-artifact="model/weights.txt"]').get_attribute("data-same") == "false"
        assert "outputs different" in page.locator("#reproducibility .verdict").inner_text()

        page.click("#rerun-of a")
        page.wait_for_selector(f'#reruns a[href="#/runs/{new}"]', timeout=30000)
        assert page.locator("#reproducibility").count() == 0  # the original is no rerun
