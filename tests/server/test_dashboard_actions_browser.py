"""The dashboard's actions in real headless Chromium against a real server (issue 16): each
goes through the REST API, lands as an event (the page changes when it comes back, and the
Activity page lists it), a running run is stopped from its page and its real training
process exits KILLED as on Ctrl-C, moving an alias names the deployment it causes, and a
user without the right sees the server's refusal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from browsing import browser, page, shot  # noqa: F401 - fixtures
from serving import free_port, ok, running_server
from test_run_stop import STOPPABLE

KIM = ("kim", "x")  # an HTTP Basic name, unchecked: auth is off

# Logs a point every 50 ms until something stops it; prints its run id first.
TRAINING = STOPPABLE.replace('run_name="stoppable"', 'run_name="long-training"')


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> Iterator[str]:
    with running_server(tmp_path_factory.mktemp("dashboard-actions")) as url:
        yield url


def new_run(url: str, name: str = "acted-on") -> tuple[str, str]:
    experiment_id = ok(url, "POST", "experiments/create", auth=KIM, name=f"actions-{uuid.uuid4().hex[:6]}")["experiment_id"]
    run_id = ok(url, "POST", "runs/create", auth=KIM, experiment_id=experiment_id, run_name=name)["run"]["info"]["run_id"]
    return experiment_id, run_id


def activity_lists(page, url: str, entity: str, types: list[str]) -> None:
    """The Activity page lists an event of each type about ``entity``."""
    page.goto(f"{url}/#/activity")
    for event_type in types:
        page.wait_for_selector(f'#feed li[data-type="{event_type}"][data-entity="{entity}"]', timeout=15000)


def confirm(page, *expected: str) -> str:
    """Confirm the open dialog, after checking it says each of ``expected``; returns its text."""
    dialog = page.locator("dialog.confirm[open]")
    dialog.wait_for()
    text = dialog.inner_text()
    for words in expected:
        assert words in text, text
    dialog.locator("[data-confirm]").click()
    return text


def status_says(page, words: str, scope: str = "") -> None:
    page.wait_for_function("([scope, words]) => document.querySelector(scope + ' .action-status')?.textContent.includes(words)",
                           arg=[scope, words], timeout=15000)


def test_a_run_is_renamed_tagged_noted_and_untagged_from_its_page(page, url):
    _, run_id = new_run(url)
    page.goto(f"{url}/#/runs/{run_id}")
    page.wait_for_selector('#status [data-status="RUNNING"]')

    page.click('#run-actions [data-action="rename"]')
    page.fill('#run-actions form[data-form="rename"] input', "renamed-from-the-dashboard")
    page.click('#run-actions form[data-form="rename"] button[type="submit"]')
    page.wait_for_function("() => document.querySelector('#run-name').textContent === 'renamed-from-the-dashboard'")
    page.wait_for_selector('#run-actions form[data-form="rename"]', state="hidden")  # the form closes once saved

    page.fill('#run-actions form[data-form="tag"] input[name="key"]', "team")
    page.fill('#run-actions form[data-form="tag"] input[name="value"]', "vision")
    page.click('#run-actions form[data-form="tag"] button[type="submit"]')
    page.wait_for_selector("#tags td:has-text('vision')")  # the page's own tags table

    page.click('#run-actions [data-action="note"]')
    page.fill('#run-actions form[data-form="note"] textarea', "baseline: lr too high\nsee the loss")
    page.click('#run-actions form[data-form="note"] button[type="submit"]')
    page.wait_for_function("() => document.querySelector('#run-actions [data-note]').textContent === 'baseline: lr too high\\nsee the loss'")

    page.click('#run-actions [data-delete-tag="team"]')
    page.wait_for_function("() => !document.querySelector('#tags').textContent.includes('vision')")
    shot(page, "run-actions")

    run = ok(url, "GET", "runs/get", run_id=run_id)["run"]
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert run["info"]["run_name"] == "renamed-from-the-dashboard" and "team" not in tags
    assert tags["mlflow.note.content"] == "baseline: lr too high\nsee the loss"  # where MLflow keeps a run's note
    activity_lists(page, url, run_id, ["run.renamed", "run.tags_set", "run.tag_deleted"])


def test_a_run_is_deleted_and_restored_from_its_page(page, url):
    _, run_id = new_run(url)
    page.goto(f"{url}/#/runs/{run_id}")
    page.wait_for_selector('#status [data-status="RUNNING"]')
    page.click('#run-actions [data-action="delete"]')
    confirm(page, "Delete run acted-on?")
    page.wait_for_selector("#run-actions [data-deleted]:not([hidden])")
    assert ok(url, "GET", "runs/get", run_id=run_id)["run"]["info"]["lifecycle_stage"] == "deleted"
    page.click('#run-actions [data-action="restore"]')
    page.wait_for_selector("#run-actions [data-deleted][hidden]", state="attached")
    page.wait_for_selector('#run-actions [data-action="delete"]:not([hidden])')
    assert ok(url, "GET", "runs/get", run_id=run_id)["run"]["info"]["lifecycle_stage"] == "active"
    activity_lists(page, url, run_id, ["run.deleted", "run.restored"])


def test_a_cancelled_dialog_changes_nothing(page, url):
    _, run_id = new_run(url)
    page.goto(f"{url}/#/runs/{run_id}")
    page.wait_for_selector('#status [data-status="RUNNING"]')
    page.click('#run-actions [data-action="delete"]')
    page.locator("dialog.confirm[open] [data-cancel]").click()
    page.wait_for_selector("dialog.confirm", state="detached")
    assert ok(url, "GET", "runs/get", run_id=run_id)["run"]["info"]["lifecycle_stage"] == "active"
    events = httpx.get(f"{url}/api/2.0/eventflow/events", params={"type": "run.deleted", "max_results": 10000}).json()["events"]
    assert [e for e in events if e["event"]["payload"]["run_id"] == run_id] == []


def test_an_experiment_is_renamed_noted_deleted_and_restored_from_its_page(page, url):
    experiment_id, _ = new_run(url)
    new_name = f"renamed-{uuid.uuid4().hex[:6]}"
    page.goto(f"{url}/#/experiments/{experiment_id}")
    page.wait_for_selector("#runs tbody tr")

    page.click('#experiment-actions [data-action="rename"]')
    page.fill('#experiment-actions form[data-form="rename"] input', new_name)
    page.click('#experiment-actions form[data-form="rename"] button[type="submit"]')
    page.wait_for_function("(name) => document.querySelector('#title').textContent === `Experiment: ${name}`", arg=new_name)

    page.click('#experiment-actions [data-action="note"]')
    page.fill('#experiment-actions form[data-form="note"] textarea', "the churn baselines")
    page.click('#experiment-actions form[data-form="note"] button[type="submit"]')
    page.wait_for_selector("#experiment-actions [data-note]:has-text('the churn baselines')")

    page.click('#experiment-actions [data-action="delete"]')
    confirm(page, f"Delete experiment {new_name}?")
    page.wait_for_selector("#experiment-actions [data-deleted]:not([hidden])")
    assert ok(url, "GET", "experiments/get", experiment_id=experiment_id)["experiment"]["lifecycle_stage"] == "deleted"
    page.click('#experiment-actions [data-action="restore"]')
    page.wait_for_selector('#experiment-actions [data-action="delete"]:not([hidden])')
    experiment = ok(url, "GET", "experiments/get", experiment_id=experiment_id)["experiment"]
    assert (experiment["name"], experiment["lifecycle_stage"]) == (new_name, "active")
    assert {t["key"]: t["value"] for t in experiment["tags"]}["mlflow.note.content"] == "the churn baselines"
    activity_lists(page, url, experiment_id, ["experiment.renamed", "experiment.tag_set", "experiment.deleted", "experiment.restored"])
    page.goto(url + "/")  # the experiments list shows the new name
    page.wait_for_selector(f'#experiments tr[data-experiment="{experiment_id}"] a:has-text("{new_name}")')


def test_the_experiments_list_shows_a_rename_live(page, url):
    experiment_id, _ = new_run(url)
    page.goto(url + "/")
    page.wait_for_selector(f'#experiments tr[data-experiment="{experiment_id}"]')
    new_name = f"renamed-live-{uuid.uuid4().hex[:6]}"
    ok(url, "POST", "experiments/update", experiment_id=experiment_id, new_name=new_name)
    page.wait_for_selector(f'#experiments tr[data-experiment="{experiment_id}"] a:text-is("{new_name}")')


class Training:
    """A real training process: the eventflow SDK logging in a loop until it is stopped."""

    def __init__(self, url: str, tmp_path: Path):
        script = tmp_path / "long_training.py"
        script.write_text(TRAINING)
        self.process = subprocess.Popen(
            [sys.executable, str(script), f"stoppable-{uuid.uuid4().hex[:6]}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env={**os.environ, "EVENTFLOW_TRACKING_URI": url},
        )
        self.run_id = self.process.stdout.readline().strip()
        assert self.run_id, "the training script did not start its run: " + self.process.stderr.read()[-2000:]

    def wait(self, timeout: float) -> tuple[int, str]:
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        return code, self.process.stderr.read()


def test_a_running_run_is_stopped_from_its_page_and_its_training_process_exits_killed(page, url, tmp_path):
    training = Training(url, tmp_path)
    page.goto(f"{url}/#/runs/{training.run_id}")
    page.wait_for_selector('#status [data-status="RUNNING"]')
    page.click('#run-actions [data-action="stop"]')
    confirm(page, "Stop run long-training?", "ends the run as KILLED")
    status_says(page, "Stop requested")
    page.wait_for_selector('#status [data-status="KILLED"]', timeout=30000)  # the process ended it, live
    status_says(page, "Stopped: the training process ended the run KILLED.")
    page.wait_for_selector('#run-actions [data-action="stop"][hidden]', state="attached")
    shot(page, "run-stopped")
    code, stderr = training.wait(timeout=30)
    assert code == -signal.SIGINT, stderr[-2000:]  # as on Ctrl-C
    assert "KeyboardInterrupt" in stderr and "stopped from the dashboard" in stderr
    assert ok(url, "GET", "runs/get", run_id=training.run_id)["run"]["info"]["status"] == "KILLED"
    activity_lists(page, url, training.run_id, ["run.stop_requested", "run.killed"])


def test_a_stop_asked_elsewhere_shows_on_the_run_page_and_in_activity(page, url):
    _, run_id = new_run(url)
    page.goto(f"{url}/#/runs/{run_id}")
    page.wait_for_selector('#status [data-status="RUNNING"]')
    answer = httpx.post(f"{url}/api/2.0/eventflow/runs/stop", json={"run_id": run_id, "reason": "diverged"}, auth=KIM)
    assert answer.status_code == 200, answer.text
    page.wait_for_selector("#run-actions [data-stop-request]:has-text('Stop requested by kim (diverged)')")
    ok(url, "POST", "runs/update", run_id=run_id, status="KILLED", end_time=int(time.time() * 1000))
    page.wait_for_selector('#status [data-status="KILLED"]')
    page.wait_for_selector("#run-actions [data-stop-request]", state="hidden")
    activity_lists(page, url, run_id, ["run.stop_requested"])
    assert "stop requested: diverged" in page.locator(f'#feed li[data-type="run.stop_requested"][data-entity="{run_id}"]').inner_text()


def test_an_ended_run_offers_no_stop(page, url):
    _, run_id = new_run(url)
    ok(url, "POST", "runs/update", run_id=run_id, status="FINISHED", end_time=int(time.time() * 1000))
    page.goto(f"{url}/#/runs/{run_id}")
    page.wait_for_selector('#status [data-status="FINISHED"]')
    page.wait_for_selector('#run-actions [data-action="rename"]')  # the other actions are there
    assert page.locator('#run-actions [data-action="stop"]').is_hidden()


# -- the registry: aliases, stages and the deployments they cause ------------------------------


@pytest.fixture(scope="module")
def deploying(tmp_path_factory) -> Iterator[dict]:
    """A server whose deployer serves models:/NAME@production on a port, and version 1 of NAME
    (a real model, logged by the SDK) not deployed yet."""
    pd = pytest.importorskip("pandas")
    import eventflow
    from eventflow import models
    from eventflow.models.signature import infer_signature

    name, port = f"churn-{uuid.uuid4().hex[:6]}", free_port()
    env = {"EVENTFLOW_DEPLOY_TARGETS": f"models:/{name}@production={port}", "EVENTFLOW_CAPTURE_ENV": "false"}
    with running_server(tmp_path_factory.mktemp("dashboard-deploying"), env=env) as url:
        eventflow.set_tracking_uri(url)
        try:
            with eventflow.start_run():
                example = pd.DataFrame({"x": [1.0, 2.0]})
                info = models.log_model(lambda frame: [7] * len(frame), "model", signature=infer_signature(example),
                                        input_example=example, registered_model_name=name)
        finally:
            eventflow.set_tracking_uri(None)
        assert info.registered_model_version == "1"
        yield {"url": url, "name": name, "port": port, "target": f"{name}@production:{port}"}


def test_setting_an_alias_names_the_deployment_it_causes_and_causes_it(page, deploying):
    url, name, port = deploying["url"], deploying["name"], deploying["port"]
    # Configured, not deployed yet: the deployments API lists the target all the same.
    listed = httpx.get(f"{url}/api/2.0/eventflow/deployments").json()
    assert listed["targets"] == [{"target": deploying["target"], "name": name, "alias": "production", "endpoint": f"http://127.0.0.1:{port}"}]
    assert httpx.get(f"{url}/api/2.0/eventflow/deployments", params={"target": "other@production:1"}).json()["targets"] == []
    page.goto(f"{url}/#/models/{name}")
    page.wait_for_selector('#versions tr[data-version="1"]')

    # An alias no deployment follows: the dialog says so; cancelled, nothing changes.
    page.fill('#model-actions form[data-form="alias"] input[name="alias"]', "candidate")
    page.click('#model-actions form[data-form="alias"] button[type="submit"]')
    dialog = page.locator("dialog.confirm[open]")
    dialog.wait_for()
    assert f"No deployment is bound to models:/{name}@candidate" in dialog.inner_text()
    dialog.locator("[data-cancel]").click()
    assert ok(url, "GET", "registered-models/get", name=name)["registered_model"].get("aliases", []) == []

    page.fill('#model-actions form[data-form="alias"] input[name="alias"]', "production")
    page.select_option('#model-actions form[data-form="alias"] select[name="version"]', "1")
    page.click('#model-actions form[data-form="alias"] button[type="submit"]')
    text = confirm(page, f"This deploys version 1 of {name} to {deploying['target']} (http://127.0.0.1:{port})")
    assert "@production will point at version 1" in text
    page.wait_for_selector('#aliases tr[data-alias="production"] td[data-version="1"]')
    shot(page, "model-actions")
    page.goto(f"{url}/#/activity")
    page.wait_for_selector(f'#feed li[data-type="model_version.alias_set"][data-entity="{name} v1"]')
    started = page.locator(f'#feed li[data-type="deployment.started"][data-entity="{name} v1"]')
    started.wait_for(timeout=60000)  # the deployer acted on the alias the dialog named
    assert deploying["target"] in started.inner_text()


def test_a_stage_change_says_it_deploys_nothing_and_a_deleted_alias_keeps_serving(page, deploying):
    url, name = deploying["url"], deploying["name"]
    ok(url, "POST", "registered-models/alias", name=name, alias="production", version="1")
    page.goto(f"{url}/#/models/{name}/versions/1")
    page.wait_for_selector("#version-details td:has-text('@production')")
    page.select_option('#version-actions form[data-form="stage"] select[name="stage"]', "Production")
    page.click('#version-actions form[data-form="stage"] button[type="submit"]')
    confirm(page, f"Move version 1 of {name} to Production?", "this deploys nothing")
    page.wait_for_selector("#version-details td:text-is('Production')")

    page.select_option('#version-actions select[name="existing"]', "production")
    page.click('#version-actions [data-action="delete-alias"]')
    confirm(page, f"{deploying['target']} (http://127.0.0.1:{deploying['port']}) keeps serving", "undeploys nothing")
    page.wait_for_function("() => !document.querySelector('#version-details').textContent.includes('@production')")
    assert ok(url, "GET", "registered-models/get", name=name)["registered_model"].get("aliases", []) == []
    page.goto(f"{url}/#/activity")
    page.wait_for_selector(f'#feed li[data-type="model_version.stage_transitioned"][data-entity="{name} v1"]')
    page.wait_for_selector(f'#feed li[data-type="model_version.alias_deleted"][data-entity="{name}"]')


# -- permissions ---------------------------------------------------------------------------------

ADMIN, READER = ("admin", "the-admin-password"), ("reader", "reader-password")


@pytest.fixture(scope="module")
def governed(tmp_path_factory) -> Iterator[dict]:
    """A server with auth on; the admin's experiment with a running run and a registered model
    with a version; a user who may only READ (the default permission)."""
    env = {"EVENTFLOW_AUTH": "true", "EVENTFLOW_ADMIN_USERNAME": ADMIN[0], "EVENTFLOW_ADMIN_PASSWORD": ADMIN[1],
           "EVENTFLOW_AUTH_DEFAULT_PERMISSION": "READ"}
    with running_server(tmp_path_factory.mktemp("dashboard-governed"), env=env) as url:
        ok(url, "POST", "users/create", auth=ADMIN, username=READER[0], password=READER[1])
        experiment_id = ok(url, "POST", "experiments/create", auth=ADMIN, name="governed")["experiment_id"]
        run_id = ok(url, "POST", "runs/create", auth=ADMIN, experiment_id=experiment_id, run_name="theirs")["run"]["info"]["run_id"]
        model_id = ok(url, "POST", "logged-models", auth=ADMIN, experiment_id=experiment_id, name="m", source_run_id=run_id)["model"]["info"]["model_id"]
        ok(url, "POST", "registered-models/create", auth=ADMIN, name="governed-model")
        ok(url, "POST", "model-versions/create", auth=ADMIN, name="governed-model", source=f"models:/{model_id}", model_id=model_id)
        yield {"url": url, "experiment_id": experiment_id, "run_id": run_id}


def as_user(browser, user: tuple[str, str]):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, http_credentials={"username": user[0], "password": user[1]})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return context, page, errors


def test_a_reader_sees_each_action_refused_with_the_servers_reason_and_nothing_changes(browser, governed):
    url, run_id = governed["url"], governed["run_id"]
    context, page, errors = as_user(browser, READER)
    try:
        page.goto(f"{url}/#/runs/{run_id}")
        page.wait_for_selector('#status [data-status="RUNNING"]')
        page.click('#run-actions [data-action="rename"]')
        page.fill('#run-actions form[data-form="rename"] input', "not-mine-to-rename")
        page.click('#run-actions form[data-form="rename"] button[type="submit"]')
        status_says(page, f"Rename refused (403 PERMISSION_DENIED): Permission denied: EDIT on experiment '{governed['experiment_id']}' is needed")
        assert page.locator("#run-actions .action-status.error").count() == 1
        page.click('#run-actions [data-action="stop"]')
        confirm(page, "Stop run theirs?")
        status_says(page, "Stop refused (403 PERMISSION_DENIED)")
        shot(page, "action-refused")

        page.goto(f"{url}/#/models/governed-model")
        page.wait_for_selector('#versions tr[data-version="1"]')
        page.fill('#model-actions form[data-form="alias"] input[name="alias"]', "production")
        page.click('#model-actions form[data-form="alias"] button[type="submit"]')
        confirm(page, "@production will point at version 1")
        status_says(page, "Set @production refused (403 PERMISSION_DENIED): Permission denied: moving an alias or a stage")
    finally:
        context.close()
    assert not errors, errors
    run = ok(url, "GET", "runs/get", auth=ADMIN, run_id=run_id)["run"]
    assert (run["info"]["run_name"], run["info"]["status"]) == ("theirs", "RUNNING")
    assert httpx.get(f"{url}/api/2.0/eventflow/runs/stop", params={"run_id": run_id}, auth=ADMIN).json() == {}
    assert ok(url, "GET", "registered-models/get", auth=ADMIN, name="governed-model")["registered_model"].get("aliases", []) == []


def test_the_owner_is_allowed_the_same_action(browser, governed):
    url, run_id = governed["url"], governed["run_id"]
    context, page, errors = as_user(browser, ADMIN)
    try:
        page.goto(f"{url}/#/runs/{run_id}")
        page.wait_for_selector('#status [data-status="RUNNING"]')
        page.click('#run-actions [data-action="rename"]')
        page.fill('#run-actions form[data-form="rename"] input', "renamed-by-its-owner")
        page.click('#run-actions form[data-form="rename"] button[type="submit"]')
        page.wait_for_function("() => document.querySelector('#run-name').textContent === 'renamed-by-its-owner'")
        activity_lists(page, url, run_id, ["run.renamed"])
        assert page.locator(f'#feed li[data-type="run.renamed"][data-entity="{run_id}"] b').inner_text() == ADMIN[0]
    finally:
        context.close()
    assert not errors, errors
