"""Identity is the server's word (issue 13): what the server stamps on the events it appends.

The forged audit trail of the issue — ``POST /events`` with ``actor="alice-the-admin"``,
``time=0`` and a made-up host, stored as such — against a live server; REST-made events;
SDK events over HTTP (stamped) and straight to Kafka (marked as the client's claim).
An authenticated caller is simulated here only at the stamping functions and the
middleware (the principal the authentication middleware puts in the scope); the
end-to-end authenticated case comes with eventflow/auth.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import threading
import time
from types import SimpleNamespace

import httpx
import pytest

from eventflow import commands
from eventflow.codec import DecodeError, decode, encode
from eventflow.codec.framing import CONTENT_TYPE, pack
from eventflow.events import Event, now_ms
from eventflow.server.errors import ApiError
from eventflow.server.stamping import ORIGIN, Origin, RequestOrigin, check_actors, stamp

from serving import running_server

EVENTS = "/api/2.0/eventflow/events"


def _created_run(run_id: str, **envelope) -> Event:
    event = commands.create_run(run_id, "0", run_name="forged", user_id="alice-the-admin", artifact_uri=f"mlflow-artifacts:/0/{run_id}/artifacts")
    return Event(event.type, event.payload, event_id=event.event_id, **envelope)


# -- the stamping functions, with a simulated principal ---------------------------------------


def test_stamp_sets_the_principal_the_server_time_and_the_address():
    event = _created_run(commands.new_run_id(), actor="bob", time=0, source={"host": "made-up", "process": "1", "sdk_version": "9",
                                                                            "stamped_by": "server", "client_address": "6.6.6.6"})
    before = now_ms()
    [stamped] = stamp([event], Origin("10.0.0.7", "bob"), from_client=True)
    assert stamped.actor == "bob" and before <= stamped.time <= now_ms()
    assert stamped.source == {"host": "made-up", "process": "1", "sdk_version": "9", "stamped_by": "server",
                              "authenticated": True, "client_address": "10.0.0.7", "client_time": 0}
    assert (stamped.event_id, stamped.payload) == (event.event_id, event.payload)


def test_stamp_names_the_principal_on_events_the_server_builds():
    event = _created_run(commands.new_run_id(), actor="whoever-the-basic-header-said")
    [stamped] = stamp([event], Origin("10.0.0.7", "bob"))
    assert stamped.actor == "bob" and stamped.source["client_time"] is None and stamped.source["authenticated"] is True


def test_without_a_principal_the_actor_stays_a_claim_and_says_so():
    event = _created_run(commands.new_run_id(), actor="alice-the-admin", time=5)
    [stamped] = stamp([event], Origin("127.0.0.1", None), from_client=True)
    assert stamped.actor == "alice-the-admin"
    assert stamped.source["authenticated"] is False and stamped.source["stamped_by"] == "server"
    [alone] = stamp([event], None)  # the server acting on its own (no request)
    assert alone.source["client_address"] is None and alone.source["authenticated"] is False


def test_an_authenticated_caller_may_not_post_events_naming_someone_else():
    mine, forged = _created_run(commands.new_run_id(), actor="bob"), _created_run(commands.new_run_id(), actor="alice-the-admin")
    check_actors([mine], Origin("10.0.0.7", "bob"))
    with pytest.raises(ApiError) as refused:
        check_actors([mine, forged], Origin("10.0.0.7", "bob"))
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "'alice-the-admin'" in refused.value.message and "'bob'" in refused.value.message
    check_actors([forged], Origin("10.0.0.7", None))  # authentication off: a claim, marked unauthenticated


def test_the_middleware_hands_each_request_s_origin_to_its_writes():
    seen = []

    async def app(scope, receive, send):
        seen.append(ORIGIN.get())

    middleware = RequestOrigin(app)
    principal = SimpleNamespace(username="bob")
    asyncio.run(middleware({"type": "http", "client": ("10.0.0.7", 5123), "eventflow.principal": principal}, None, None))
    asyncio.run(middleware({"type": "http", "client": None}, None, None))
    asyncio.run(middleware({"type": "lifespan"}, None, None))
    assert seen == [Origin("10.0.0.7", "bob"), Origin(None, None), None]
    assert ORIGIN.get() is None  # reset after the request


def test_post_events_refuses_a_forged_actor_and_appends_nothing(tmp_path):
    """The edge of ``POST /events`` for an authenticated caller: 400, nothing on the log."""
    from eventflow.server.events_api import append_events
    from eventflow.server.runtime import open_runtime

    runtime = open_runtime(home=str(tmp_path / "home"), run_consumers=False)
    try:
        ends = {t: runtime.log.end_offsets(t) for t in runtime.log.topics()}
        batch = pack([encode(_created_run(commands.new_run_id(), actor="bob")), encode(_created_run(commands.new_run_id(), actor="alice-the-admin"))])
        with pytest.raises(ApiError, match="names actor 'alice-the-admin', but this request authenticated as 'bob'"):
            append_events(runtime, batch, Origin("10.0.0.7", "bob"))
        assert {t: runtime.log.end_offsets(t) for t in runtime.log.topics()} == ends
    finally:
        runtime.stop()


# -- a live server (authentication off) ---------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("stamping") / "home") as url:
        yield url


def events_of(url: str, entity_id: str, deadline: float = 60) -> list[dict]:
    """The events on the log about one entity (its id anywhere in the payload), in log order."""
    found: list[dict] = []
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        page = httpx.get(url + EVENTS, params={"max_results": 10000}, timeout=30).json()
        found = [e["event"] for e in page["events"] if "event" in e and entity_id in str(e["event"]["payload"])]
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no event about {entity_id} reached the log")


def test_the_forged_audit_trail_of_the_issue_is_stamped_by_the_server(live):
    """Issue 13: a POST /events with actor="alice-the-admin", time=0 and a made-up host was
    stored as such. Now the time is the server's (the client's kept apart), the address is
    the one the server saw, and the actor is marked as an unauthenticated claim."""
    run_id = commands.new_run_id()
    forged = _created_run(run_id, actor="alice-the-admin", time=0, source={
        "host": "made-up-host", "process": "1", "sdk_version": "0.0.0",
        "stamped_by": "server", "authenticated": True, "client_address": "6.6.6.6", "client_time": 42,
    })  # fmt: skip
    before = now_ms()
    answer = httpx.post(live + EVENTS, content=pack([encode(forged)]), headers={"content-type": CONTENT_TYPE})
    assert answer.status_code == 200, answer.text
    [stored] = events_of(live, run_id)
    assert stored["event_id"] == forged.event_id and stored["type"] == "run.created"
    assert before <= stored["time"] <= now_ms(), "the envelope time is the server's"
    assert stored["actor"] == "alice-the-admin"  # authentication is off: the client's claim…
    assert stored["source"] == {
        "host": "made-up-host", "process": "1", "sdk_version": "0.0.0",  # …as the rest of what it says of itself
        "stamped_by": "server", "authenticated": False, "client_address": "127.0.0.1", "client_time": 0,
    }  # fmt: skip


def test_events_the_server_builds_from_rest_calls_carry_its_stamp(live):
    before = now_ms()
    made = httpx.post(live + "/api/2.0/mlflow/experiments/create", json={"name": f"stamped-{time.time_ns()}"}, auth=("carol", "unchecked"))
    assert made.status_code == 200, made.text
    [stored] = events_of(live, made.json()["experiment_id"])
    assert stored["actor"] == "carol" and before <= stored["time"] <= now_ms()
    assert stored["source"]["stamped_by"] == "server" and stored["source"]["authenticated"] is False
    assert stored["source"]["client_time"] is None


def test_events_the_server_builds_from_rest_calls_carry_the_client_address(live):
    made = httpx.post(live + "/api/2.0/mlflow/experiments/create", json={"name": f"addressed-{time.time_ns()}"})
    assert made.status_code == 200, made.text
    [stored] = events_of(live, made.json()["experiment_id"])
    assert stored["source"]["client_address"] == "127.0.0.1"


def test_the_sdk_over_http_sends_its_credentials_user_as_actor(live, monkeypatch, tmp_path):
    import eventflow

    monkeypatch.setenv("EVENTFLOW_TRACKING_USERNAME", "dana")
    monkeypatch.setenv("EVENTFLOW_TRACKING_PASSWORD", "pw")
    monkeypatch.setenv("EVENTFLOW_ACTOR", "someone-else")  # the credentials' user wins: the server would refuse another
    monkeypatch.setenv("EVENTFLOW_CAPTURE_ENV", "false")
    monkeypatch.setenv("EVENTFLOW_HOME", str(tmp_path / "sdk-home"))
    eventflow.set_tracking_uri(live)
    try:
        started = now_ms()
        with eventflow.start_run() as run:
            eventflow.log_metric("loss", 0.5, step=1)
        eventflow.flush()
    finally:
        eventflow.set_tracking_uri(None)
    stored = events_of(live, run.run_id)
    assert {e["type"] for e in stored} >= {"run.created", "run.metrics_logged", "run.finished"}
    for event in stored:
        assert event["actor"] == "dana"
        assert event["source"]["stamped_by"] == "server" and event["source"]["client_address"] == "127.0.0.1"
        assert started <= event["source"]["client_time"] <= event["time"]


def test_a_token_is_sent_as_bearer_and_its_user_asked_of_the_server(monkeypatch):
    """With only a token the SDK does not know its user name: it asks the server once
    (``GET /events/actor``) and names that user on every event."""
    from eventflow.sdk.http_store import HttpStore

    seen: list[tuple[str, str | None]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802
            seen.append((self.path, self.headers.get("authorization")))
            self._answer(b'{"actor": "erin", "authenticated": true}')

        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["content-length"]))
            seen.append((self.path, self.headers.get("authorization")))
            from eventflow.codec.framing import unpack

            seen.extend(("actor", decode(item).actor) for item in unpack(body))
            self._answer(b'{"positions": []}')

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for name in ("EVENTFLOW_TRACKING_USERNAME", "EVENTFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "EVENTFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-123")
    store = HttpStore(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        store.append([_created_run(commands.new_run_id(), actor="not-erin")])
        store.append([_created_run(commands.new_run_id(), actor="not-erin")])
    finally:
        store.close()
        server.shutdown()
    assert seen == [
        (EVENTS + "/actor", "Bearer tok-123"),
        (EVENTS, "Bearer tok-123"), ("actor", "erin"),
        (EVENTS, "Bearer tok-123"), ("actor", "erin"),
    ]  # fmt: skip


def test_basic_credentials_win_over_a_token_as_in_mlflow(monkeypatch):
    from eventflow.sdk.credentials import Credentials

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "frank")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw")
    monkeypatch.setenv("EVENTFLOW_TRACKING_TOKEN", "tok")
    monkeypatch.setenv("EVENTFLOW_TRACKING_USERNAME", "grace")  # eventflow's own name wins over MLflow's
    request = httpx.Request("GET", "http://x/")
    flow = Credentials.from_env().auth().auth_flow(request)
    sent = next(flow)
    assert sent.headers["authorization"] == "Basic " + base64.b64encode(b"grace:pw").decode()


def test_the_actor_endpoint_says_nobody_is_authenticated_when_auth_is_off(live):
    assert httpx.get(live + EVENTS + "/actor", auth=("mallory", "x")).json() == {"actor": None, "authenticated": False}


# -- straight to Kafka: the client's claim --------------------------------------------------------


@pytest.mark.kafka
def test_sdk_events_written_straight_to_kafka_are_marked_as_the_client_s_claim(tmp_path, monkeypatch, kafka_bootstrap):
    import eventflow
    from eventflow.events import FAMILIES
    from eventflow.log import open_log

    monkeypatch.setenv("EVENTFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EVENTFLOW_DB", raising=False)
    monkeypatch.setenv("EVENTFLOW_CAPTURE_ENV", "false")
    monkeypatch.setenv("EVENTFLOW_ACTOR", "kafka-writer")
    uri = f"kafka://{kafka_bootstrap}"
    eventflow.set_tracking_uri(uri)
    try:
        eventflow.set_experiment(f"straight-to-kafka-{time.time_ns()}")
        with eventflow.start_run() as run:
            eventflow.log_metric("loss", 0.25, step=1)
        eventflow.flush()
    finally:
        eventflow.set_tracking_uri(None)
    log = open_log(uri)
    found: list[Event] = []
    try:
        with log.consumer([FAMILIES["run"].topic]) as consumer:
            consumer.seek_to_beginning()
            until = time.monotonic() + 60
            while time.monotonic() < until and not any(e.type == "run.finished" for e in found):
                for record in consumer.poll(timeout=0.5, max_records=10000):
                    try:
                        event = decode(record.value)
                    except DecodeError:
                        continue  # the broker is shared: other tests put poison on this topic on purpose
                    if event.payload.get("run_id") == run.run_id:
                        found.append(event)
    finally:
        log.close()
    assert {e.type for e in found} >= {"run.created", "run.metrics_logged", "run.finished"}
    for event in found:
        assert event.actor == "kafka-writer"
        assert event.source["stamped_by"] == "client" and event.source["authenticated"] is False
        assert event.source["client_address"] is None and event.source["client_time"] is None
