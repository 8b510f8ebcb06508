"""The dashboard's Jobs page in real headless Chromium against a real server and agent:
jobs with their schedule, triggers and next run; the history grows live, linked to runs."""

from __future__ import annotations

import pytest
from browsing import browser, page, shot  # noqa: F401 - fixtures
from jobstack import project, start_agent, stop
from serving import running_server

from eventflow.sdk.jobs import Jobs


@pytest.fixture
def stack(tmp_path):
    home = tmp_path / "home"
    with running_server(home) as url:
        agent = start_agent(home, url, tmp_path / "agent.out")
        yield url, project(tmp_path / "project")
        stop(agent)


def test_the_jobs_page_lists_jobs_and_their_runs_live(page, stack, tmp_path):
    url, directory = stack
    jobs = Jobs(url)
    nightly = jobs.add("nightly-retrain", str(directory), cron="0 3 * * *", timezone="Europe/Berlin", env_manager="local",
                       parameters={"marker": str(tmp_path / "m.txt")})
    jobs.add("evaluate-on-staging", str(directory), entry_point="evaluate", on_events=["model_version.alias_set"], alias="staging",
             parameters={"model_uri": "{event.model_uri}"})
    page.goto(url + "/#/jobs")
    row = page.locator('#jobs tr[data-job="%s"]' % nightly["job_id"])
    row.wait_for()
    assert "cron 0 3 * * * Europe/Berlin" in row.inner_text() and row.locator("[data-next-run]").inner_text().strip() not in ("", "—")
    assert "on model_version.alias_set · alias staging" in page.locator("#jobs").inner_text()
    assert page.locator("nav a.active").inner_text() == "Jobs"

    trigger = jobs.run_now(nightly["job_id"])["trigger_id"]  # no reload: the page hears the job events
    done = page.locator(f'#job-runs tr[data-trigger="{trigger}"][data-status="SUCCEEDED"]')
    done.wait_for(timeout=60_000)
    run_link = done.locator('a[data-link="run"]')
    run_id = run_link.inner_text()
    assert run_id == jobs.runs(nightly["job_id"])[0]["run_id"]
    shot(page, "jobs")
    run_link.click()
    page.wait_for_url(f"**/#/runs/{run_id}")

    page.goto(url + "/#/activity")  # every job event is in the feed, in words, linked to its job and run
    page.select_option("#type", "job.*")
    succeeded = page.locator('#feed li[data-type="job.succeeded"]')
    succeeded.wait_for()
    assert "attempt 1, exit code 0" in succeeded.inner_text()
    assert succeeded.locator('a[data-link="run"]').inner_text() == f"run {run_id}"
    succeeded.locator('a[data-link="job"]').click()
    page.wait_for_url("**/#/jobs")
