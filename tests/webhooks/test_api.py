"""The webhook API over HTTP on a real ``eventflow server`` process, through the SDK and
the CLI; and the SSRF guard, with the operator's allowance and without it."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import time

import httpx
import pytest
from webhook_stack import FAST
from webhook_receiver import Receiver, verify
from serving import running_server

from eventflow.sdk.client import Client
from eventflow.validation import InvalidInput
from eventflow.webhooks import guard
from eventflow.webhooks.settings import parse_networks

NOT_ALLOWED = {k: v for k, v in FAST.items() if k != "EVENTFLOW_WEBHOOK_ALLOW_NETWORKS"}


def cli(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eventflow", "webhooks", *args, "--tracking-uri", url],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("webhooks-server"), env=FAST) as url:
        yield url


def _wait(check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_sdk_manages_subscriptions_and_reads_deliveries(server):
    hooks = Client(server).webhooks
    mlflow = server + "/api/2.0/mlflow"
    name = f"exp-{time.time_ns()}"
    experiment_id = httpx.post(mlflow + "/experiments/create", json={"name": name}).json()["experiment_id"]
    with Receiver(lambda got, n: (500, {}, b"nope") if n == 1 else None) as receiver:
        created = hooks.create(receiver.url, ["run.failed"], experiment_name=name)
        sid = created["webhook"]["subscription_id"]
        assert created["webhook"]["experiment_id"] == experiment_id
        assert hooks.get(sid)["events"] == ["run.failed"]
        assert sid in [h["subscription_id"] for h in hooks.list()]
        run_id = httpx.post(mlflow + "/runs/create", json={"experiment_id": experiment_id}).json()["run"]["info"]["run_id"]
        httpx.post(mlflow + "/runs/update", json={"run_id": run_id, "status": "FAILED"}).raise_for_status()
        _wait(lambda: [d["status"] for d in hooks.deliveries(sid)] == ["SUCCEEDED"])
        [delivery] = hooks.deliveries(sid)
        assert [a["status_code"] for a in delivery["attempts"]] == [500, 200]
        assert receiver.received[0].id == receiver.received[1].id == delivery["event_id"]
        verify(created["secret"], receiver.received[1].headers, receiver.received[1].body)
        assert receiver.received[1].json["data"]["run_id"] == run_id
        again = hooks.redeliver(sid, delivery["delivery_id"])
        assert again["status"] == "PENDING"
        receiver.wait_for(lambda: len(receiver.received) == 3)
        with pytest.raises(InvalidInput) as pending:
            hooks.redeliver(sid, 10**12)
        assert pending.value.error_code == "RESOURCE_DOES_NOT_EXIST"
        assert hooks.update(sid, status="DISABLED")["status"] == "DISABLED"
        hooks.delete(sid)
        with pytest.raises(InvalidInput) as gone:
            hooks.get(sid)
        assert gone.value.error_code == "RESOURCE_DOES_NOT_EXIST"


@pytest.mark.parametrize(
    "body, words",
    [
        ({"url": "ftp://example.com/x", "events": ["*"]}, "http"),
        ({"url": "https://example.com/x", "events": []}, "at least one event type"),
        ({"url": "https://example.com/x", "events": ["nosuch.*"]}, "no event family"),
        ({"url": "https://example.com/x", "events": ["*"], "condition": "metrics.acc >>> 1"}, "cannot read the condition"),
        ({"url": "https://example.com/x", "events": ["*"], "secret": "hunter2"}, "whsec_"),
        ({"url": "https://example.com/x", "events": ["*"], "experiment_name": "no-such-experiment-here"}, "Could not find experiment"),
    ],
)
def test_bad_subscriptions_are_refused_at_the_edge(server, body, words):
    response = httpx.post(server + "/api/2.0/eventflow/webhooks", json=body)
    assert 400 <= response.status_code < 500 and words in response.json()["message"], response.text


def test_the_cli_adds_lists_tests_shows_deliveries_and_redelivers(server):
    with Receiver() as receiver:
        added = cli(server, "add", receiver.url, "--event", "run.failed", "--event", "model_version.*", "--condition", "status = 'x' AND a.b = 1")
        assert added.returncode == 0, added.stderr
        sid = added.stdout.split()[0]
        assert "whsec_" in added.stdout and "run.failed, model_version.*" in added.stdout
        listed = cli(server, "list")
        assert sid in listed.stdout and receiver.url in listed.stdout
        tested = cli(server, "test", sid)
        assert tested.returncode == 0 and tested.stdout.startswith("SUCCEEDED: 200"), tested.stdout + tested.stderr
        assert receiver.received[-1].json["type"] == "webhook.test"
        shown = cli(server, "deliveries", sid)
        assert "webhook.test" in shown.stdout and "SUCCEEDED" in shown.stdout and " 200 " in shown.stdout
        delivery_id = shown.stdout.split()[0]
        again = cli(server, "redeliver", sid, delivery_id)
        assert again.returncode == 0 and "pending again" in again.stdout
        receiver.wait_for(lambda: len(receiver.received) == 2)
        assert receiver.received[0].id == receiver.received[1].id
    missing = cli(server, "deliveries", "nope")
    assert missing.returncode != 0 and "No webhook subscription" in missing.stderr
    bad = cli(server, "add", "https://example.com/x", "--event", "bogus.thing")
    assert bad.returncode != 0 and "no event family" in bad.stderr


# -- SSRF ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "10.1.2.3", "172.16.0.1", "192.168.1.1", "127.0.0.1", "0.0.0.0", "100.100.100.200",
     "::1", "fe80::1", "fd00:ec2::254", "::ffff:127.0.0.1", "::ffff:169.254.169.254"],
)
def test_non_public_addresses_are_refused(address):
    with pytest.raises(guard.Refused):
        guard.check_address(ipaddress.ip_address(address), ())


def test_public_addresses_and_allowed_networks_pass():
    guard.check_address(ipaddress.ip_address("93.184.215.14"), ())
    guard.check_address(ipaddress.ip_address("2606:4700::1111"), ())
    allowed = parse_networks("127.0.0.0/8, 10.1.0.0/16")
    guard.check_address(ipaddress.ip_address("127.0.0.1"), allowed)
    guard.check_address(ipaddress.ip_address("::ffff:10.1.2.3"), allowed)
    with pytest.raises(guard.Refused):
        guard.check_address(ipaddress.ip_address("10.2.0.1"), allowed)


def test_a_name_is_pinned_to_the_address_that_was_checked():
    target = guard.resolve("http://localhost:8123/hook?x=1", parse_networks("127.0.0.0/8,::1/128"))
    assert target.url in ("http://127.0.0.1:8123/hook?x=1", "http://[::1]:8123/hook?x=1")
    assert target.host_header == "localhost:8123" and target.server_name == "localhost"
    with pytest.raises(guard.Refused, match="loopback"):
        guard.resolve("http://localhost:8123/hook", ())


def test_ssrf_targets_are_refused_when_not_allowed(tmp_path):
    with running_server(tmp_path / "home", env=NOT_ALLOWED) as url, Receiver() as receiver:
        for target in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1:8080/admin", "http://[::1]/", f"http://127.0.0.1:{receiver.port}/"):
            response = httpx.post(url + "/api/2.0/eventflow/webhooks", json={"url": target, "events": ["*"]})
            assert response.status_code == 400, response.text
            assert "EVENTFLOW_WEBHOOK_ALLOW_NETWORKS" in response.json()["message"]
        # A name is checked where it counts, at each delivery: localhost resolves to loopback.
        hooks = Client(url).webhooks
        sid = hooks.create(f"http://localhost:{receiver.port}/hook", ["run.created"])["webhook"]["subscription_id"]
        httpx.post(url + "/api/2.0/mlflow/runs/create", json={"experiment_id": "0"}).raise_for_status()
        _wait(lambda: any(d["attempts"] for d in hooks.deliveries(sid)))
        attempt = hooks.deliveries(sid)[0]["attempts"][0]
        assert attempt["status_code"] is None and "refused to connect" in attempt["error"] and "loopback" in attempt["error"]
        tested = hooks.test(sid)
        assert tested["status"] == "PENDING" and "refused" in tested["attempts"][0]["error"]
        assert receiver.received == []


def test_the_operator_can_allow_a_network_by_config(tmp_path):
    env = {**NOT_ALLOWED, "EVENTFLOW_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8,::1/128"}
    with running_server(tmp_path / "home", env=env) as url, Receiver() as receiver:
        hooks = Client(url).webhooks
        sid = hooks.create(f"http://localhost:{receiver.port}/hook", ["*"])["webhook"]["subscription_id"]
        assert hooks.test(sid)["status"] == "SUCCEEDED"
        assert receiver.received[0].headers["host"] == f"localhost:{receiver.port}"


def self_signed(directory, name: str):
    """A key and a self-signed certificate for ``name`` only (no IP address in it)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(private.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    key, cert = directory / "key.pem", directory / "cert.pem"
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key, cert


def test_https_is_pinned_to_the_checked_address_and_verified_for_the_name(tmp_path):
    """The connection goes to the address the guard checked, while TLS still sends the
    name (SNI) and checks the certificate against it (the certificate has no IP in it)."""
    import ssl

    key, cert = self_signed(tmp_path, "localhost")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    env = {**FAST, "EVENTFLOW_WEBHOOK_CA_FILE": str(cert)}
    with running_server(tmp_path / "home", env=env) as url, Receiver(tls=tls) as receiver:
        hooks = Client(url).webhooks
        created = hooks.create(f"https://localhost:{receiver.port}/hook", ["run.failed"])
        delivery = hooks.test(created["webhook"]["subscription_id"])
        assert delivery["status"] == "SUCCEEDED", delivery
        assert receiver.server_names == ["localhost"]
        got = receiver.received[0]
        assert got.headers["host"] == f"localhost:{receiver.port}"
        verify(created["secret"], got.headers, got.body)
    # Without trusting that certificate, the same delivery fails verification.
    with running_server(tmp_path / "home2", env=FAST) as url, Receiver(tls=tls) as receiver:
        hooks = Client(url).webhooks
        sid = hooks.create(f"https://localhost:{receiver.port}/hook", ["run.failed"])["webhook"]["subscription_id"]
        delivery = hooks.test(sid)
        assert delivery["status"] == "PENDING" and "CERTIFICATE_VERIFY_FAILED" in delivery["attempts"][0]["error"]
        assert receiver.received == []


@pytest.mark.parametrize(
    "address",
    ["64:ff9b::a9fe:a9fe", "64:ff9b::a00:1", "2002:a9fe:a9fe::1", "2002:7f00:1::", "::a9fe:a9fe", "::7f00:1",
     "::ffff:0:a9fe:a9fe", "::ffff:0:a00:5", "64:ff9b:1::a9fe:a9fe", "fec0::1", "feff::1", "224.0.0.251", "239.255.255.250",
     "ff02::1", "ff0e::1"],
)
def test_addresses_that_embed_a_private_ipv4_and_multicast_and_site_local_are_refused(address):
    with pytest.raises(guard.Refused, match="refused to connect"):
        guard.check_address(ipaddress.ip_address(address), ())


def test_an_embedded_ipv4_address_is_judged_as_itself():
    for public in ("64:ff9b::808:808", "2002:808:808::1", "::ffff:0:808:808", "::ffff:8.8.8.8"):
        guard.check_address(ipaddress.ip_address(public), ())
    assert guard.embedded_ipv4(ipaddress.ip_address("64:ff9b::a9fe:a9fe")) == ipaddress.ip_address("169.254.169.254")
    with pytest.raises(guard.Refused, match=r"that is 169\.254\.169\.254.*ALLOW_NETWORKS=169\.254\.169\.254/32"):
        guard.check_address(ipaddress.ip_address("64:ff9b::a9fe:a9fe"), ())
    guard.check_address(ipaddress.ip_address("64:ff9b::a9fe:a9fe"), parse_networks("169.254.0.0/16"))
