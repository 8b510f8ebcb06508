"""The live websocket protocol against real servers: snapshot + stream without gap or
duplicate, resume after a reconnect, slow clients reset, on embedded and on Kafka."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest

from live_client import LiveClient, RawLiveClient
from serving import kafka_postgres_options, running_server

API = "/api/2.0/mlflow"


@pytest.fixture(scope="module", params=["embedded", "kafka+postgresql"])
def backend(request, tmp_path_factory):
    """Options for a server on the embedded default, then on Kafka with PostgreSQL."""
    options = kafka_postgres_options(request, "live") if request.param == "kafka+postgresql" else []
    return request.param, options, tmp_path_factory


@pytest.fixture(scope="module")
def url(backend):
    _, options, factory = backend
    # A small queue bound, so that the slow-client test passes it quickly; a long keepalive,
    # since a reader that stopped cannot answer pings and a loaded machine may take longer
    # than the default 2 × 20 s to send what overflows it.
    with running_server(factory.mktemp("live"), *options, env={"EVENTFLOW_LIVE_MAX_QUEUED": "1048576", "EVENTFLOW_LIVE_PING_SECONDS": "600"}) as url:
        yield url


def new_run(http: httpx.Client, experiment_id: str = "0") -> str:
    response = http.post(API + "/runs/create", json={"experiment_id": experiment_id, "run_name": "live"})
    assert response.status_code == 200, response.text
    return response.json()["run"]["info"]["run_id"]


def caught_up(url: str, timeout: float = 180) -> None:
    """Wait until a server's views show its Default experiment: on a shared broker a fresh
    database first replays every earlier test's events."""
    deadline = time.monotonic() + timeout
    while httpx.get(url + API + "/experiments/get", params={"experiment_id": "0"}).status_code != 200:
        assert time.monotonic() < deadline, f"{url} did not catch up with the log"
        time.sleep(0.5)


def log_steps(http: httpx.Client, run_id: str, steps: range, key: str = "loss", pause: float = 0.0) -> None:
    for step in steps:
        response = http.post(API + "/runs/log-batch", json={"run_id": run_id, "metrics": [
            {"key": key, "value": step / 10, "timestamp": int(time.time() * 1000), "step": step}]})
        assert response.status_code == 200, response.text
        if pause:
            time.sleep(pause)


def test_subscribers_joining_mid_stream_see_every_point_exactly_once(url):
    """Snapshot positions from the views + the hub's events from there on: whenever a
    client subscribes during a training loop, it ends with each point once."""
    join_mid_stream(url)


def test_without_the_ring_the_log_fills_the_gap(backend, tmp_path):
    """A hub whose ring holds one batch: a resume (and a join, when the views lag the
    hub) reads the missing events from the log itself, still without gap or duplicate."""
    _, options, _ = backend
    with running_server(tmp_path / "tiny-ring", *options, env={"EVENTFLOW_LIVE_RING_BYTES": "1"}) as url:
        join_mid_stream(url)
        resume_after_reconnect(url)


def join_mid_stream(url: str) -> None:
    total = 300
    with httpx.Client(base_url=url, timeout=30) as http:
        run_id = new_run(http)
        writer = threading.Thread(target=log_steps, args=(http, run_id, range(total)), kwargs={"pause": 0.003})
        writer.start()
        clients = []
        try:
            for i in range(4):
                time.sleep(0.25)
                client = LiveClient(url)
                client.subscribe("run", "runs", run_ids=[run_id])
                clients.append(client)
            writer.join()
            for client in clients:
                client.until(lambda c=client: len(c.points["run"]) >= total)
                client.drain(0.5)
                counts = client.points["run"]
                assert sorted(step for (_, _, step) in counts) == list(range(total))
                assert set(counts.values()) == {1}, "no point twice"
                assert client.messages[0]["type"] == "snapshot"
            # The later clients joined mid-stream: their snapshot held part of the points.
            assert any(0 < len(c.snapshots["run"]["runs"][0]["history"].get("loss", {}).get("step", [])) < total for c in clients)
        finally:
            writer.join()
            for client in clients:
                client.close()


def test_a_reconnect_resumes_from_its_last_position_without_loss(url):
    resume_after_reconnect(url)


def resume_after_reconnect(url: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        run_id = new_run(http)
        log_steps(http, run_id, range(0, 10))
        first = LiveClient(url)
        first.subscribe("run", "runs", run_ids=[run_id])
        first.until(lambda: len(first.points["run"]) >= 10)
        log_steps(http, run_id, range(10, 20))
        first.until(lambda: len(first.points["run"]) >= 20)
        seen, positions = first.points["run"], first.positions["run"]
        first.close()
        log_steps(http, run_id, range(20, 50))  # while disconnected
        second = LiveClient(url)
        second.subscribe("run", "runs", run_ids=[run_id], resume=positions)
        second.until(lambda: len(second.points["run"]) >= 30)
        log_steps(http, run_id, range(50, 55))
        second.until(lambda: len(second.points["run"]) >= 35)
        second.drain(0.5)
        assert second.messages[0]["type"] == "resumed"
        assert sorted(s for (_, _, s) in second.points["run"]) == list(range(20, 55))
        assert set(second.points["run"].values()) == {1}
        assert not set(seen) & set(second.points["run"])
        second.close()


def test_experiment_runs_appear_and_change_status_live(url):
    with httpx.Client(base_url=url, timeout=30) as http:
        experiment_id = http.post(API + "/experiments/create", json={"name": f"live-{uuid.uuid4().hex[:8]}"}).json()["experiment_id"]
        before = new_run(http, experiment_id)
        client = LiveClient(url)
        client.subscribe("exp", "experiment", experiment_id=experiment_id)
        client.until(lambda: "exp" in client.snapshots)
        assert [r["info"]["run_id"] for r in client.snapshots["exp"]["runs"]] == [before]
        other = new_run(http)  # in another experiment: not for this page
        after = new_run(http, experiment_id)
        http.post(API + "/runs/log-parameter", json={"run_id": after, "key": "lr", "value": "0.1"})
        http.post(API + "/runs/update", json={"run_id": before, "status": "FINISHED"})

        def seen(type_: str, run_id: str) -> bool:
            return any(e["event"]["type"] == type_ and e["event"]["payload"]["run_id"] == run_id for e in client.events["exp"])

        client.until(lambda: seen("run.created", after) and seen("run.params_logged", after) and seen("run.finished", before))
        client.drain(0.3)
        assert not any(e["event"]["payload"].get("run_id") == other for e in client.events["exp"])
        client.close()


def test_activity_feed_filters_by_type_and_entity_in_log_order(url):
    with httpx.Client(base_url=url, timeout=30) as http:
        run_id = new_run(http)
        client = LiveClient(url)
        client.subscribe("feed", "events", types=["run.*"], entity=run_id)
        client.until(lambda: "feed" in client.snapshots)
        assert [e["event"]["type"] for e in client.events["feed"]] == ["run.created"]
        http.post(API + "/runs/set-tag", json={"run_id": run_id, "key": "k", "value": "v"})
        log_steps(http, run_id, range(3))
        new_run(http)  # another entity
        http.post(API + "/runs/update", json={"run_id": run_id, "status": "FAILED"})
        client.until(lambda: any(e["event"]["type"] == "run.failed" for e in client.events["feed"]))
        client.drain(0.3)
        types = [e["event"]["type"] for e in client.events["feed"]]
        assert types == ["run.created", "run.tags_set"] + ["run.metrics_logged"] * 3 + ["run.failed"]
        offsets = [e["offset"] for e in client.events["feed"]]
        assert offsets == sorted(offsets), "one run's events are one partition, in order"
        assert client.events["feed"][2]["event"]["payload"]["points"] == 1
        client.close()


def test_bad_subscriptions_are_answered_with_an_error(url):
    client = LiveClient(url)
    client.subscribe("a", "nonsense")
    client.subscribe("b", "experiment", experiment_id="0", filter="params.lr >>> 3")
    client.subscribe("c", "runs", run_ids=[])
    client.ws.send("{not json")
    client.until(lambda: sum(m["type"] == "error" for m in client.messages) >= 4)
    errors = {m["sub"]: m["message"] for m in client.messages if m["type"] == "error"}
    assert "unknown subscription kind" in errors["a"]
    assert errors["b"]
    assert "run_ids" in errors["c"]
    assert "invalid message" in errors[None]
    client.close()


def test_a_slow_client_is_reset_while_the_others_keep_up(url):
    """A client that stops reading is dropped back to a fresh snapshot; a reading client
    on the same server gets every point meanwhile."""
    with httpx.Client(base_url=url, timeout=60) as http:
        run_id = new_run(http)
        slow = RawLiveClient(url)
        slow.subscribe("run", "runs", run_ids=[run_id])
        slow.until(lambda: "run" in slow.snapshots)
        fast = LiveClient(url)
        fast.subscribe("run", "runs", run_ids=[run_id])
        fast.until(lambda: "run" in fast.snapshots)
        total = 0
        for step in range(60):  # 60 × 1000 points with long keys: ~16 MB, well past the kernel's buffers
            metrics = [{"key": f"m{k}-" + "x" * 240, "value": 1.5, "timestamp": 1, "step": step} for k in range(1000)]
            assert http.post(API + "/runs/log-batch", json={"run_id": run_id, "metrics": metrics}).status_code == 200
            total += len(metrics)
            fast.receive(0)
        fast.until(lambda: len(fast.points["run"]) >= total, timeout=60)
        assert set(fast.points["run"].values()) == {1}
        # The slow one now reads: it was reset and got a snapshot with everything.
        slow.until(lambda: any(m["type"] == "reset" for m in slow.messages), timeout=20)
        slow.until(lambda: len(slow.points["run"]) >= total, timeout=60)
        slow.drain(0.3)
        assert set(slow.points["run"].values()) == {1}
        slow.close()
        fast.close()

