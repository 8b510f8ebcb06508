"""The dashboard's audit views in real headless Chromium against a real server: the History
tab, the Activity page's entity links, the model page's time control and the lineage graph
(vis-network, served from the installed pyvis package)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from browsing import browser, page, shot  # noqa: F401 - fixtures
from serving import next_ms, ok, running_server

KIM, LEE = ("kim", "x"), ("lee", "x")  # HTTP Basic names, unchecked: auth is off


def alias_time(url: str, name: str, version: str) -> int:
    """When the alias was last moved to ``version`` (the server's stamp, from the audit)."""
    entries = httpx.get(f"{url}/api/2.0/eventflow/audit", params={"entity_type": "registered_model", "entity": name}).json()["entries"]
    return [e["time"] for e in entries if e["event_type"] == "model_version.alias_set" and str(e["payload"]["version"]) == version][-1]


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A run with a param, a logged model, two versions of a model from it, stages moved and
    an alias moved from version 1 (by kim) to version 2 (by lee); no authentication, so
    every actor is the client's unchecked name."""
    with running_server(tmp_path_factory.mktemp("dashboard-audit")) as url:
        name = f"churn-{uuid.uuid4().hex[:6]}"
        experiment_id = ok(url, "POST", "experiments/create", auth=KIM, name=f"audit-{name}")["experiment_id"]
        run_id = ok(url, "POST", "runs/create", auth=KIM, experiment_id=experiment_id, run_name="train")["run"]["info"]["run_id"]
        ok(url, "POST", "runs/log-parameter", auth=KIM, run_id=run_id, key="lr", value="0.01")
        model_id = ok(url, "POST", "logged-models", auth=KIM, experiment_id=experiment_id, name="churn-model", source_run_id=run_id)["model"]["info"]["model_id"]
        ok(url, "POST", "registered-models/create", auth=KIM, name=name)
        version = {"name": name, "source": f"models:/{model_id}", "run_id": run_id, "model_id": model_id}
        ok(url, "POST", "model-versions/create", auth=KIM, **version)
        ok(url, "POST", "model-versions/transition-stage", auth=KIM, name=name, version="1", stage="Production", archive_existing_versions=False)
        ok(url, "POST", "registered-models/alias", auth=KIM, name=name, alias="production", version="1")
        moved_to_1 = alias_time(url, name, "1")
        next_ms(moved_to_1)  # what follows is stamped after that moment
        ok(url, "POST", "model-versions/create", auth=LEE, **version)
        ok(url, "POST", "model-versions/transition-stage", auth=LEE, name=name, version="2", stage="Production", archive_existing_versions=True)
        ok(url, "POST", "registered-models/alias", auth=LEE, name=name, alias="production", version="2")
        assert alias_time(url, name, "2") > moved_to_1
        yield {"url": url, "name": name, "experiment_id": experiment_id, "run_id": run_id, "model_id": model_id, "moved_to_1": moved_to_1}


def open_history(page) -> None:
    page.click('.tabs button[data-tab="history"]')
    page.wait_for_selector("#history table.history tbody tr")


def test_history_tab_shows_a_param_change_and_an_alias_move_with_their_actors(page, story):
    page.goto(f"{story['url']}/#/runs/{story['run_id']}")
    page.wait_for_selector('#status [data-status="RUNNING"]')
    assert page.locator('[data-pane="history"]').is_hidden()
    open_history(page)
    row = page.locator('#history tr[data-event-type="run.params_logged"]')
    row.wait_for()
    assert "param lr = 0.01" in row.locator(".what").inner_text()
    assert row.locator(".actor").inner_text().startswith("kim")
    assert "claimed (not authenticated)" in row.locator(".actor .claim").inner_text()  # auth is off: the name is a claim
    assert "eventflow.runs[" in row.inner_text()  # its log position
    assert page.locator('[data-pane="overview"]').is_hidden()

    page.goto(f"{story['url']}/#/models/{story['name']}")
    open_history(page)
    moved = page.locator('#history tr[data-event-type="model_version.alias_set"]', has_text="version 1 → 2")
    moved.wait_for()
    assert "alias production: version 1 → 2" in moved.locator(".what").inner_text()
    assert moved.locator(".actor").inner_text().startswith("lee")
    assert moved.get_attribute("data-authenticated") == "false" and moved.locator(".claim").count() == 1
    first = page.locator('#history tr[data-event-type="model_version.alias_set"]', has_text="→ version 1")
    assert first.locator(".actor").inner_text().startswith("kim")
    shot(page, "model-history")

    page.goto(f"{story['url']}/#/models/{story['name']}/versions/2")
    open_history(page)
    page.wait_for_selector('#history tr[data-event-type="model_version.stage_transitioned"]')
    page.goto(f"{story['url']}/#/experiments/{story['experiment_id']}")
    open_history(page)
    page.wait_for_selector('#history tr[data-event-type="experiment.created"]')


def test_history_tab_pages_with_more(page, story):
    url = story["url"]
    run_id = ok(url, "POST", "runs/create", experiment_id=story["experiment_id"], run_name="many-tags")["run"]["info"]["run_id"]
    for i in range(205):  # one event each: more than the tab's page of 200
        ok(url, "POST", "runs/set-tag", run_id=run_id, key=f"k{i}", value=str(i))
    page.goto(f"{story['url']}/#/runs/{run_id}")
    open_history(page)
    more = page.locator("#history button.more")
    more.wait_for()
    assert page.locator("#history tbody tr").count() == 200
    more.click()
    page.wait_for_function("() => document.querySelectorAll('#history tbody tr').length === 206")  # run.created + 205 tags
    assert page.locator("#history button.more").count() == 0
    assert "tag k204 = 204" in page.locator("#history tbody tr").last.inner_text()


def test_activity_links_every_entity_to_its_page(page, story):
    page.goto(f"{story['url']}/#/activity")
    page.wait_for_selector("#feed li")
    name = f"feed-{uuid.uuid4().hex[:6]}"  # its own model and run: the story's stay as they are
    url = story["url"]
    experiment_id = ok(url, "POST", "experiments/create", name=name)["experiment_id"]
    run_id = ok(url, "POST", "runs/create", experiment_id=experiment_id, run_name="feed-run")["run"]["info"]["run_id"]
    ok(url, "POST", "runs/log-parameter", run_id=run_id, key="alpha", value="1")
    ok(url, "POST", "registered-models/create", name=name)
    ok(url, "POST", "model-versions/create", name=name, source=f"models:/{story['model_id']}", model_id=story["model_id"])
    ok(url, "POST", "registered-models/alias", name=name, alias="staging", version="1")
    version_link = page.locator(f'#feed li[data-type="model_version.alias_set"] a[data-link="version"][href="#/models/{name}/versions/1"]')
    version_link.wait_for()
    assert page.locator(f'#feed li[data-type="run.created"] a[data-link="experiment"][href="#/experiments/{experiment_id}"]').count() == 1
    assert page.locator(f'#feed li[data-type="model_version.created"] a[data-link="model"][href="#/models/{name}"]').count() == 1
    version_link.click()
    page.wait_for_function("(name) => location.hash === `#/models/${name}/versions/1`", arg=name)
    page.wait_for_selector("#version-details td:has-text('@staging')")

    page.go_back()
    page.locator(f'#feed li[data-type="run.params_logged"] a[data-link="run"][href="#/runs/{run_id}"]').click()
    page.wait_for_selector('#status [data-status="RUNNING"]')
    page.go_back()
    page.locator(f'#feed li[data-type="registered_model.created"] a[data-link="model"][href="#/models/{name}"]').click()
    page.wait_for_selector('#aliases tr[data-alias="staging"]')
    page.go_back()
    page.locator(f'#feed li[data-type="experiment.created"] a[data-link="experiment"][href="#/experiments/{experiment_id}"]').click()
    page.wait_for_function("(name) => document.querySelector('#title')?.textContent.includes(name)", arg=name)


def test_time_control_shows_the_alias_where_it_pointed_before_a_later_move(page, story):
    page.goto(f"{story['url']}/#/models/{story['name']}")
    page.wait_for_selector('#aliases tr[data-alias="production"] td[data-version="2"]')  # live
    assert page.locator("#as-of-banner").is_hidden()
    moment = page.evaluate("(ms) => new Date(ms - new Date(ms).getTimezoneOffset() * 60000).toISOString().slice(0, 23)", story["moved_to_1"])
    page.fill("#as-of", moment)
    page.click("#show-as-of")
    page.wait_for_selector('#aliases tr[data-alias="production"] td[data-version="1"]')
    banner = page.locator("#as-of-banner")
    assert banner.is_visible() and "As of" in banner.inner_text()
    assert time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(story["moved_to_1"] / 1000)) in banner.inner_text()
    # As they were: only version 1, in Production (later archived by version 2's promotion).
    assert page.eval_on_selector_all("#versions tr[data-version]", "rows => rows.map(r => r.dataset.version)") == ["1"]
    assert page.locator('#versions tr[data-version="1"] td[data-stage]').inner_text() == "Production"
    shot(page, "model-as-of")

    page.click("#live")
    page.wait_for_selector('#aliases tr[data-alias="production"] td[data-version="2"]')
    assert banner.is_hidden()
    page.wait_for_selector('#versions tr[data-version="1"] td[data-stage="Archived"]')
    assert page.eval_on_selector_all("#versions tr[data-version]", "rows => rows.map(r => r.dataset.version)") == ["2", "1"]
    # Live again: a change shows without a reload.
    ok(story["url"], "POST", "registered-models/alias", name=story["name"], alias="canary", version="1")
    page.wait_for_selector('#aliases tr[data-alias="canary"] td[data-version="1"]')


def test_the_lineage_graph_draws_the_run_its_model_and_versions_and_its_nodes_link(page, story):
    name, run_id = story["name"], story["run_id"]
    page.goto(f"{story['url']}/#/models/{name}/versions/2")
    page.wait_for_selector('#lineage-graph .graph[data-state="drawn"]')
    drawn = page.evaluate("() => document.querySelector('#lineage-graph .graph').network.body.data.nodes.getIds().sort()")
    assert {f"run:{run_id}", f"logged_model:{story['model_id']}", f"model_version:{name}/2", f"alias:{name}@production"} <= set(drawn)
    assert page.locator("#lineage-graph canvas").count() == 1
    assert page.locator(f'#lineage-graph li[data-node="run:{run_id}"] a').get_attribute("href") == f"#/runs/{run_id}"
    shot(page, "lineage")
    # A click on the run's node (where vis-network drew it) opens the run's page.
    x, y = page.evaluate("""(id) => { const network = document.querySelector('#lineage-graph .graph').network;
                                      const at = network.canvasToDOM(network.getPositions([id])[id]);
                                      const box = document.querySelector('#lineage-graph .graph').getBoundingClientRect();
                                      return [box.left + at.x, box.top + at.y]; }""", f"run:{run_id}")
    page.mouse.click(x, y)
    page.wait_for_function("(id) => location.hash === `#/runs/${id}`", arg=run_id)
    # The run's page draws its own graph, down to both versions, each a link.
    page.wait_for_selector('#lineage-graph .graph[data-state="drawn"]')
    for version in ("1", "2"):
        node = page.locator(f'#lineage-graph li[data-node="model_version:{name}/{version}"] a')
        assert node.get_attribute("href") == f"#/models/{name}/versions/{version}"
    page.locator(f'#lineage-graph li[data-node="model_version:{name}/1"] a').click()
    page.wait_for_selector("#version-details td:has-text('Archived')")


def test_the_graph_library_is_served_from_the_installed_package(story):
    answer = httpx.get(story["url"] + "/static/vendor/vis-network.min.js")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/javascript")
    assert "vis-network" in answer.text[:500] and len(answer.content) > 100_000
