"""The attacks of issue 13 that need no users, as the exact requests against a live server.

Each test sent its requests to the old code and saw them succeed (or do their damage);
now each is refused before anything is written, and the legitimate form still works.
Requests go through ``http.client`` where the path must reach the server byte for byte
(httpx would normalise ``/.`` and ``..`` away).
"""

from __future__ import annotations

import http.client
import json
import os
import struct
import time
import urllib.parse
from pathlib import Path

import httpx
import pytest

from eventflow.codec import encode
from eventflow.events import Event

from serving import running_server

API = "/api/2.0/mlflow"
ART = "/api/2.0/mlflow-artifacts/artifacts"
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    home = tmp_path_factory.mktemp("security") / "home"
    with running_server(home) as url:
        yield url, home


def raw(url: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None):
    """One request with ``path`` sent exactly as written; (status, parsed JSON or bytes, headers)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = data
    return response.status, parsed, response.headers


def new_run(url: str, experiment_id: str = "0") -> str:
    created = httpx.post(url + API + "/runs/create", json={"experiment_id": experiment_id})
    assert created.status_code == 200, created.text
    return created.json()["run"]["info"]["run_id"]


def event_count(url: str) -> int:
    return len(httpx.get(url + "/api/2.0/eventflow/events", params={"max_results": 10000}).json()["events"])


# -- the artifact store's paths ------------------------------------------------------------------


@pytest.mark.parametrize("path", [ART + "/", ART + "/.", ART + "/0/..", ART + "/0/./", ART + "/0/x/../.."])
def test_deleting_the_store_root_is_refused(live, path):
    url, home = live
    run_id = new_run(url)
    kept = f"{ART}/0/{run_id}/artifacts/kept.txt"
    assert raw(url, "PUT", kept, b"kept")[0] == 200
    status, body, _ = raw(url, "DELETE", path)
    assert status == 400, (status, body)
    assert body["error_code"] == "INVALID_PARAMETER_VALUE" and "artifact path" in body["message"]
    assert (home / "artifacts").is_dir()
    assert raw(url, "GET", kept)[1] == b"kept"


def test_a_put_to_the_store_root_is_refused_and_writes_nothing_outside(live):
    url, home = live
    before = sorted(p.name for p in home.iterdir())
    for path in (ART + "/", ART + "/.", ART + "/0/.."):
        status, body, _ = raw(url, "PUT", path, b"turns the root into a file")
        assert status == 400, (path, status, body)
    assert (home / "artifacts").is_dir(), "the root is still a directory"
    assert sorted(p.name for p in home.iterdir()) == before, "no .partial file beside the store"
    assert not list(home.glob(".*.partial"))
    run_id = new_run(url)
    assert raw(url, "PUT", f"{ART}/0/{run_id}/artifacts/after.txt", b"still works")[0] == 200


def test_a_dotdot_inside_the_store_cannot_overwrite_another_runs_file(live):
    url, _ = live
    victim, attacker = new_run(url), new_run(url)
    original = f"{ART}/0/{victim}/artifacts/a.txt"
    assert raw(url, "PUT", original, b"original")[0] == 200
    before = event_count(url)
    alias = f"{ART}/0/{attacker}/artifacts/../../{victim}/artifacts/a.txt"
    status, body, _ = raw(url, "PUT", alias, b"overwritten")
    assert status == 400 and "'..'" in body["message"], (status, body)
    assert raw(url, "GET", original)[1] == b"original", "nothing was written"
    assert event_count(url) == before
    status, body, _ = raw(url, "GET", alias)
    assert status == 400, "a download through the alias is refused, not served unchecked"
    assert raw(url, "GET", f"{ART}/0//{victim}/artifacts/a.txt")[0] == 400, "an empty segment is an alias too"


def test_a_finished_runs_artifacts_cannot_be_overwritten(live):
    url, _ = live
    run_id = new_run(url)
    model = f"{ART}/0/{run_id}/artifacts/model/model.pkl"
    assert raw(url, "PUT", model, b"the trained model")[0] == 200
    ended = httpx.post(url + API + "/runs/update", json={"run_id": run_id, "status": "FINISHED", "end_time": 1})
    assert ended.status_code == 200, ended.text
    before = event_count(url)
    for path in (model, f"{ART}/0/{run_id}/artifacts/model/extra.pkl"):
        status, body, _ = raw(url, "PUT", path, b"a pickle that runs code")
        assert status == 409, (status, body)
        assert body["error_code"] == "RESOURCE_CONFLICT" and "FINISHED" in body["message"]
    status, body, _ = raw(url, "DELETE", model)
    assert status == 409, "deleting and uploading again is an overwrite too"
    assert raw(url, "GET", model)[1] == b"the trained model"
    assert event_count(url) == before


# -- browsers -------------------------------------------------------------------------------------


def test_a_host_header_not_on_the_allow_list_is_refused(live):
    url, _ = live
    port = urllib.parse.urlsplit(url).port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "localhost"):
        status, _, _ = raw(url, "GET", API + "/experiments/get?experiment_id=0", headers={"Host": host})
        assert status == 200, host
    for host in ("attacker.example", f"attacker.example:{port}", f"127.0.0.1.attacker.example:{port}"):
        status, body, _ = raw(url, "GET", API + "/experiments/get?experiment_id=0", headers={"Host": host})
        assert status == 403 and body["error_code"] == "PERMISSION_DENIED", (host, status, body)
        assert "--allowed-hosts" in body["message"]


def test_a_cross_site_text_plain_post_changes_nothing(live):
    url, _ = live
    before = event_count(url)
    simple = {"content-type": "text/plain;charset=UTF-8", "origin": "http://attacker.example"}
    status, body, _ = raw(url, "POST", API + "/experiments/create", json.dumps({"name": "csrf"}).encode(), simple)
    assert status == 403 and "--cors-allowed-origins" in body["message"], (status, body)
    plain = {"content-type": "text/plain;charset=UTF-8"}  # as an older browser sends it, without Origin
    status, body, _ = raw(url, "POST", API + "/experiments/create", json.dumps({"name": "csrf"}).encode(), plain)
    assert status == 415 and "application/json" in body["message"], (status, body)
    no_type = raw(url, "POST", API + "/experiments/create?name=csrf2", b"")
    assert no_type[0] == 415, "a body-less POST naming its fields in the query string is refused too"
    alias = json.dumps({"name": "m", "alias": "production", "version": "1"}).encode()
    assert raw(url, "POST", API + "/registered-models/alias", alias, simple)[0] == 403
    assert raw(url, "POST", API + "/registered-models/alias", alias, plain)[0] == 415
    foreign = raw(url, "POST", API + "/experiments/create", json.dumps({"name": "csrf3"}).encode(),
                  {**JSON, "origin": "http://attacker.example"})
    assert foreign[0] == 403 and "--cors-allowed-origins" in foreign[1]["message"]
    assert raw(url, "POST", API + "/experiments/create", b'{"name": "n"}', {**JSON, "origin": "null"})[0] == 403
    assert event_count(url) == before
    assert httpx.get(url + API + "/experiments/get-by-name", params={"experiment_name": "csrf"}).status_code == 404
    same_origin = raw(url, "POST", API + "/experiments/create", json.dumps({"name": "same-origin"}).encode(),
                      {**JSON, "origin": url})
    assert same_origin[0] == 200, same_origin


def test_a_page_on_another_origin_cannot_open_the_live_socket(live):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url, _ = live
    socket_url = url.replace("http://", "ws://") + "/api/2.0/eventflow/live"
    with pytest.raises(InvalidStatus) as refused:
        with connect(socket_url, origin="http://attacker.example", open_timeout=30):
            pass
    assert refused.value.response.status_code == 403
    with connect(socket_url, origin=url, open_timeout=30) as ws:
        ws.send(json.dumps({"op": "subscribe", "sub": "e", "kind": "experiments"}))
        assert json.loads(ws.recv(timeout=60))["type"] == "snapshot"


def test_a_websocket_connection_has_a_subscription_limit(live):
    from websockets.sync.client import connect

    url, _ = live
    with connect(url.replace("http://", "ws://") + "/api/2.0/eventflow/live", open_timeout=30) as ws:
        for i in range(65):
            ws.send(json.dumps({"op": "subscribe", "sub": f"s{i}", "kind": "experiments"}))
        errors = []
        deadline = time.monotonic() + 60
        while not errors and time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=60))
            if message["type"] == "error":
                errors.append(message)
        assert errors and errors[0]["sub"] == "s64" and "64" in errors[0]["message"]


def test_pages_and_answers_carry_the_security_headers(live):
    url, _ = live
    for path in ("/", API + "/experiments/get?experiment_id=0"):
        headers = httpx.get(url + path).headers
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]


def test_the_operator_can_allow_a_host_and_an_origin(tmp_path):
    options = ("--allowed-hosts", "tracking.internal", "--cors-allowed-origins", "https://app.internal")
    with running_server(tmp_path / "home", *options) as url:
        ok = raw(url, "POST", API + "/experiments/create", b'{"name": "allowed"}',
                 {**JSON, "host": "tracking.internal", "origin": "https://app.internal"})
        assert ok[0] == 200, ok
        assert ok[2]["access-control-allow-origin"] == "https://app.internal"
        assert raw(url, "GET", "/health", headers={"host": "other.internal"})[0] == 403
        assert raw(url, "GET", "/health")[0] == 200, "loopback stays allowed"


# -- bounds ---------------------------------------------------------------------------------------


def _server_pid(home: Path) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"server" in command and str(home).encode() in command:
                return int(entry.name)
    raise AssertionError("the server process was not found")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _empty_tags_event(count: int) -> bytes:
    """A run.tags_set event holding ``count`` empty tags, built without materialising them."""
    small = encode(Event("run.tags_set", {"run_id": "a" * 32, "tags": []}))
    assert small.endswith(b"\x00")  # the empty array's end marker is the last byte

    def zigzag(n: int) -> bytes:
        n, out = n << 1, bytearray()
        while n > 0x7F:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
        return bytes(out)

    return small[:-1] + zigzag(count) + b"\x00\x00" * count + b"\x00"


def test_an_event_of_millions_of_empty_tags_is_refused_before_it_is_decoded(live):
    url, home = live
    pid = _server_pid(home)
    baseline = _peak_rss_mb(pid)
    item = _empty_tags_event(8_000_000)
    body = struct.pack(">I", len(item)) + item
    assert len(body) > 16_000_000
    started = time.monotonic()
    response = httpx.post(url + "/api/2.0/eventflow/events", content=body,
                          headers={"content-type": "application/vnd.eventflow.events"}, timeout=120)
    assert response.status_code == 400, response.text
    assert "items" in response.json()["message"]
    assert time.monotonic() - started < 30
    assert _peak_rss_mb(pid) - baseline < 300, "the server did not materialise the tags"


def test_a_body_over_the_cap_is_refused_while_it_is_read(live):
    url, home = live
    pid = _server_pid(home)
    baseline = _peak_rss_mb(pid)

    def chunks():
        for _ in range(200):
            yield b" " * (1 << 20)

    response = httpx.post(url + API + "/runs/log-batch", content=chunks(), headers=JSON, timeout=120)
    assert response.status_code == 413, response.text
    assert response.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED" or "at most" in response.json()["message"]
    assert _peak_rss_mb(pid) - baseline < 100, "the 200 MB body was never held whole"


def test_a_long_search_filter_is_refused_at_once(live):
    url, _ = live
    started = time.monotonic()
    response = httpx.post(url + API + "/runs/search", json={"experiment_ids": ["0"], "filter": "a" * 1_000_000}, timeout=120)
    assert response.status_code == 400 and "at most" in response.json()["message"], response.text
    assert time.monotonic() - started < 5
    ok = httpx.post(url + API + "/runs/search", json={"experiment_ids": ["0"], "filter": " AND ".join(["metrics.m > 0"] * 200)})
    assert ok.status_code == 200, ok.text


# -- where things may point ----------------------------------------------------------------------------


@pytest.mark.parametrize("location", ["file:///etc", "/etc", "http://169.254.169.254/latest/meta-data", "s3://bucket/x",
                                      "mlflow-artifacts:/../../etc", "mlflow-artifacts://evil.example/x"])
def test_an_artifact_location_outside_the_store_is_refused(live, location):
    url, _ = live
    before = event_count(url)
    response = httpx.post(url + API + "/experiments/create", json={"name": f"loc-{abs(hash(location))}", "artifact_location": location})
    assert response.status_code == 400 and response.json()["error_code"] == "INVALID_PARAMETER_VALUE", response.text
    assert "artifact store" in response.json()["message"]
    assert event_count(url) == before


def test_an_artifact_location_inside_the_store_is_kept(live):
    url, home = live
    for name, location in (("inside-1", "mlflow-artifacts:/team-a"), ("inside-2", str(home / "artifacts" / "team-b"))):
        created = httpx.post(url + API + "/experiments/create", json={"name": name, "artifact_location": location})
        assert created.status_code == 200, created.text
        got = httpx.get(url + API + "/experiments/get", params={"experiment_id": created.json()["experiment_id"]})
        assert got.json()["experiment"]["artifact_location"] == location


@pytest.mark.parametrize("address", ["[64:ff9b::a9fe:a9fe]", "[2002:a9fe:a9fe::1]", "[::a9fe:a9fe]", "[::ffff:0:a9fe:a9fe]",
                                     "[fec0::1]", "224.0.0.251", "[ff02::1]", "[::7f00:1]"])
def test_a_webhook_to_an_address_that_embeds_a_private_one_is_refused(live, address):
    url, _ = live
    response = httpx.post(url + "/api/2.0/eventflow/webhooks", json={"url": f"http://{address}/hook", "events": ["*"]})
    assert response.status_code == 400, response.text
    assert "refused" in response.json()["message"]


def test_the_registry_never_hands_out_a_location_outside_the_store(tmp_path):
    """An experiment the log holds from before locations were checked, kept in file:///etc."""
    from eventflow import commands
    from eventflow.log import open_log
    from eventflow.log.event_log import EventLog

    home = tmp_path / "home"
    log = open_log(str(home / "log"))
    try:
        EventLog(log).append_many([commands.create_experiment("77", "old", "file:///etc")])
    finally:
        log.close()
    with running_server(home) as url:
        run_id = new_run(url, "77")
        assert httpx.get(url + API + "/runs/get", params={"run_id": run_id}).json()["run"]["info"]["artifact_uri"].startswith("file:///etc")
        assert httpx.post(url + API + "/registered-models/create", json={"name": "leaky"}).status_code == 200
        created = httpx.post(url + API + "/model-versions/create", json={"name": "leaky", "source": f"runs:/{run_id}/model", "run_id": run_id})
        assert created.status_code == 200, created.text
        answer = httpx.get(url + API + "/model-versions/get-download-uri", params={"name": "leaky", "version": "1"})
        assert answer.status_code == 400, answer.text
        assert "outside the artifact store" in answer.json()["message"] and "/etc" not in answer.json().get("artifact_uri", "")
