"""MLflow's webhook API on a real ``eventflow server``, driven by the real MlflowClient:
create/list/get/update/delete, test_webhook reaching a real receiver, and registry
changes delivered with MLflow's body and X-MLflow-* headers.

The verifier below follows MLflow's documented scheme (not eventflow's signer): the
signed content is ``{X-MLflow-Delivery-Id}.{X-MLflow-Timestamp}.{body}``, the HMAC key
is the secret's UTF-8 bytes, and X-MLflow-Signature is ``v1,`` + base64(HMAC-SHA256).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid

import httpx
import mlflow
import pytest
import sqlalchemy
from mlflow import MlflowClient
from mlflow.entities.webhook import WebhookEvent, WebhookStatus
from mlflow.exceptions import MlflowException
from serving import free_port, kafka_postgres_options, running_server
from webhook_receiver import Receiver
from webhook_stack import FAST

from eventflow.webhooks import queries
from eventflow.webhooks.tables import create_tables

SECRET = "my-mlflow-secret"


def verify_mlflow(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> None:
    delivery_id = headers["x-mlflow-delivery-id"]
    stamp = headers["x-mlflow-timestamp"]
    assert abs(time.time() - int(stamp)) <= tolerance
    content = f"{delivery_id}.{stamp}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(secret.encode("utf-8"), content, hashlib.sha256).digest()).decode()
    assert hmac.compare_digest(headers["x-mlflow-signature"], expected), "X-MLflow-Signature does not verify"


@pytest.fixture(scope="module", params=["embedded", pytest.param("kafka+postgresql", marks=[pytest.mark.kafka, pytest.mark.postgres])])
def url(request, tmp_path_factory):
    """A server on the embedded default, then on Kafka with its views in PostgreSQL."""
    options = kafka_postgres_options(request, "mlhooks") if request.param == "kafka+postgresql" else []
    with running_server(tmp_path_factory.mktemp("mlflow-webhooks"), *options, env=FAST) as found:
        yield found


@pytest.fixture
def client(url, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", url)
    yield MlflowClient(url, url)
    mlflow.set_registry_uri(None)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def views_url(request, tmp_path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("new_postgres_database")("mlhooks")
    return f"sqlite:///{tmp_path / 'views.db'}"


def test_an_older_views_database_gains_the_new_columns(views_url):
    """A views database from before MLflow webhooks: its subscriptions table is extended
    on start, and its rows stay eventflow-flavored."""
    engine = sqlalchemy.create_engine(views_url)
    with engine.begin() as c:
        c.execute(sqlalchemy.text(
            "CREATE TABLE webhook_subscriptions (subscription_id VARCHAR(64) PRIMARY KEY, url TEXT NOT NULL, events TEXT NOT NULL,"
            " experiment_id VARCHAR(64), model_name VARCHAR(500), condition TEXT, status VARCHAR(16) NOT NULL, disabled_reason TEXT,"
            " deleted BOOLEAN NOT NULL, created_time BIGINT NOT NULL, updated_time BIGINT NOT NULL, consecutive_failures INTEGER NOT NULL)"
        ))
        c.execute(sqlalchemy.text("INSERT INTO webhook_subscriptions VALUES ('s1', 'http://x/', '[\"*\"]', NULL, NULL, NULL, 'ACTIVE', NULL, false, 1, 1, 0)"))
    create_tables(engine)
    create_tables(engine)  # twice: nothing left to add
    with engine.connect() as c:
        old = queries.get_subscription(c, "s1")
        assert old["flavor"] is None and old["created_by"] is None  # no creator known: administrators manage it
    engine.dispose()


def _wait(check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_crud_through_the_mlflow_client(client, url):
    with Receiver() as receiver:
        name = f"hook-{uuid.uuid4().hex[:8]}"
        hook = client.create_webhook(
            name=name, url=receiver.url, events=["model_version.created", "model_version_alias.created"],
            description="ci hook", secret=SECRET,
        )
        assert hook.name == name and hook.url == receiver.url and hook.status == WebhookStatus.ACTIVE
        assert set(hook.events) == {WebhookEvent("model_version", "created"), WebhookEvent("model_version_alias", "created")}
        assert client.get_webhook(hook.webhook_id).description == "ci hook"
        assert hook.webhook_id in [w.webhook_id for w in client.list_webhooks()]
        updated = client.update_webhook(hook.webhook_id, name=name + "-2", status="DISABLED", events=["model_version_tag.set"])
        assert updated.name == name + "-2" and updated.status == WebhookStatus.DISABLED
        assert updated.events == [WebhookEvent("model_version_tag", "set")]
        assert updated.last_updated_timestamp >= hook.creation_timestamp
        # The same subscription is one of eventflow's own, mapped to its event type.
        ours = httpx.get(f"{url}/api/2.0/eventflow/webhooks/{hook.webhook_id}").json()["webhook"]
        assert ours["events"] == ["model_version.tag_set"] and ours["flavor"] == "mlflow"
        client.delete_webhook(hook.webhook_id)
        with pytest.raises(MlflowException, match="not found") as missing:
            client.get_webhook(hook.webhook_id)
        assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
        assert hook.webhook_id not in [w.webhook_id for w in client.list_webhooks()]


def test_unsupported_events_and_bad_urls_are_refused_at_the_edge(client, url):
    with pytest.raises(MlflowException, match="Unsupported webhook event 'prompt.created'") as bad:
        client.create_webhook(name="x", url="http://127.0.0.1:9/", events=["prompt.created"])
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE"
    answer = httpx.post(f"{url}/ajax-api/2.0/mlflow/webhooks", json={"name": "x", "url": "ftp://x/", "events": [{"entity": "MODEL_VERSION", "action": "CREATED"}]})
    assert answer.status_code == 400 and answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_test_webhook_reaches_a_real_receiver(client):
    with Receiver() as receiver:
        hook = client.create_webhook(name="t", url=receiver.url, events=["model_version_alias.created"], secret=SECRET)
        result = client.test_webhook(hook.webhook_id)
        assert result.success and result.response_status == 200 and result.response_body == "ok"
        [got] = receiver.received
        verify_mlflow(SECRET, got.headers, got.body)
        assert got.json["entity"] == "model_version_alias" and got.json["action"] == "created"
        assert set(got.json["data"]) == {"name", "alias", "version"}
        # An answer of 500 is a failed test, said in MLflow's shape.
        receiver.respond = lambda got, n: (500, {}, b"broken")
        failed = client.test_webhook(hook.webhook_id, event=WebhookEvent("model_version_alias", "created"))
        assert not failed.success and failed.response_status == 500 and failed.response_body == "broken"
        client.delete_webhook(hook.webhook_id)
    # Nobody listening: a failed result with an error message, not an exception.
    down = client.create_webhook(name="down", url=f"http://127.0.0.1:{free_port()}/hook", events=["model_version.created"])
    gone = client.test_webhook(down.webhook_id)
    assert not gone.success and gone.error_message
    client.delete_webhook(down.webhook_id)


def test_registry_changes_are_delivered_in_mlflow_shape(client):
    model = f"m-{uuid.uuid4().hex[:8]}"
    with Receiver() as receiver:
        hook = client.create_webhook(
            name="deliver", url=receiver.url, events=["model_version.created", "model_version_alias.created"], secret=SECRET,
        )
        client.create_registered_model(model)  # not subscribed: not delivered
        version = client.create_model_version(model, "mlflow-artifacts:/models/m1", run_id=None, tags={"team": "ml"})
        client.set_registered_model_alias(model, "champion", version.version)
        _wait(lambda: len(receiver.received) >= 2)
        time.sleep(0.3)  # nothing else should come
        assert len(receiver.received) == 2
        for got in receiver.received:
            verify_mlflow(SECRET, got.headers, got.body)
            assert got.headers["content-type"] == "application/json"
            assert "webhook-signature" not in got.headers
        created, alias = (r.json for r in receiver.received)
        assert (created["entity"], created["action"]) == ("model_version", "created")
        assert created["data"]["name"] == model and created["data"]["version"] == "1"
        assert created["data"]["source"] == "mlflow-artifacts:/models/m1" and created["data"]["tags"] == {"team": "ml"}
        assert (alias["entity"], alias["action"]) == ("model_version_alias", "created")
        assert alias["data"] == {"name": model, "alias": "champion", "version": "1"}
        assert receiver.received[0].headers["x-mlflow-delivery-id"] != receiver.received[1].headers["x-mlflow-delivery-id"]
        client.delete_webhook(hook.webhook_id)


def test_the_flavor_survives_a_restart(tmp_path, monkeypatch):
    """The flavor, name and description are on the log: a restarted server still serves
    the webhook through MLflow's API and still delivers MLflow's shape."""
    home = tmp_path / "home"
    model = f"m-{uuid.uuid4().hex[:8]}"
    with Receiver() as receiver:
        with running_server(home, env=FAST) as url:
            hook = MlflowClient(url, url).create_webhook(
                name="kept", url=receiver.url, events=["registered_model.created"], description="d", secret=SECRET,
            )
        with running_server(home, env=FAST) as url:
            client = MlflowClient(url, url)
            again = client.get_webhook(hook.webhook_id)
            assert (again.name, again.description, again.events) == ("kept", "d", [WebhookEvent("registered_model", "created")])
            client.create_registered_model(model, tags={"k": "v"})
            _wait(lambda: len(receiver.received) >= 1)
            got = receiver.received[0]
            verify_mlflow(SECRET, got.headers, got.body)
            assert got.json["data"] == {"name": model, "tags": {"k": "v"}, "description": None}
