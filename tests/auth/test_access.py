"""Users, tokens and permissions against a live ``eventflow server --auth``.

One server for the module (a server start costs seconds); each test makes its own users
and experiments, so the tests do not depend on one another.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import uuid
from collections.abc import Iterator

import httpx
import pytest

from serving import running_server

ADMIN = ("admin", "admin-password-" + uuid.uuid4().hex[:8])


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("auth") / "home")


@pytest.fixture(scope="module")
def url(home) -> Iterator[str]:
    env = {"EVENTFLOW_AUTH": "true", "EVENTFLOW_ADMIN_USERNAME": ADMIN[0], "EVENTFLOW_ADMIN_PASSWORD": ADMIN[1]}
    with running_server(home, env=env) as served:
        yield served


def api(url: str, method: str, path: str, auth=None, token: str | None = None, headers: dict | None = None, **kwargs) -> httpx.Response:
    headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    return httpx.request(method, url + path, auth=auth, headers=headers, timeout=30, **kwargs)


def new_user(url: str) -> tuple[str, str]:
    user = ("u-" + uuid.uuid4().hex[:10], "pw-" + uuid.uuid4().hex)
    answer = api(url, "POST", "/api/2.0/mlflow/users/create", ADMIN, json={"username": user[0], "password": user[1]})
    assert answer.status_code == 200, answer.text
    return user


def new_experiment(url: str, auth) -> str:
    answer = api(url, "POST", "/api/2.0/mlflow/experiments/create", auth, json={"name": "e-" + uuid.uuid4().hex})
    assert answer.status_code == 200, answer.text
    return answer.json()["experiment_id"]


def token_for(url: str, auth, scopes: list[str], **extra) -> str:
    answer = api(url, "POST", "/api/2.0/eventflow/tokens/create", auth, json={"scopes": scopes, **extra})
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


def all_events(url: str) -> list[dict]:
    events, token = [], None
    while True:
        page = api(url, "GET", "/api/2.0/eventflow/events", ADMIN, params={"max_results": 1000, **({"page_token": token} if token else {})}).json()
        events += [item["event"] for item in page["events"] if "event" in item]
        token = page.get("next_page_token")
        if not token:
            return events


# -- authentication -------------------------------------------------------------------------


def test_no_credentials_is_401_in_mlflows_shape_with_a_challenge(url):
    answer = api(url, "POST", "/api/2.0/mlflow/experiments/create", json={"name": "nobody"})
    assert answer.status_code == 401
    assert answer.json()["error_code"] == "UNAUTHENTICATED"
    assert "MLFLOW_TRACKING_USERNAME" in answer.json()["message"]
    assert answer.headers["www-authenticate"].startswith("Basic")
    assert api(url, "GET", "/health").status_code == 200  # a probe needs no credentials


def test_a_wrong_password_is_refused_and_nothing_reaches_the_log(url):
    """The attack: ``-u admin:wrong`` used to be recorded as admin."""
    before = len(all_events(url))
    name = "forged-" + uuid.uuid4().hex
    answer = api(url, "POST", "/api/2.0/mlflow/experiments/create", (ADMIN[0], "wrong"), json={"name": name})
    assert answer.status_code == 401
    assert "Invalid credentials" in answer.json()["message"]
    events = all_events(url)
    assert len(events) == before
    assert not any(e["payload"].get("name") == name for e in events)


def test_a_user_that_does_not_exist_is_401(url):
    assert api(url, "GET", "/api/2.0/mlflow/experiments/search", ("ghost", "x")).status_code == 401


def test_events_name_the_authenticated_user(url):
    alice = new_user(url)
    experiment_id = new_experiment(url, alice)
    created = [e for e in all_events(url) if e["type"] == "experiment.created" and e["payload"]["experiment_id"] == experiment_id]
    assert [e["actor"] for e in created] == [alice[0]]


def test_passwords_and_token_secrets_never_reach_the_log_and_are_stored_as_slow_hashes(url, home):
    bob = new_user(url)
    token = token_for(url, bob, ["read"])
    # ef_<id>_<secret>; the url-safe secret may itself hold "_".
    secret = token.split("_", 2)[2]
    assert len(secret) >= 40
    log_text = json.dumps(all_events(url))
    assert bob[1] not in log_text and secret not in log_text and "scrypt$" not in log_text
    with sqlite3.connect(f"{home}/views.db") as db:
        rows = dict(db.execute("SELECT kind || ':' || name, hash FROM auth_credentials").fetchall())
    stored = rows[f"password:{bob[0]}"]
    assert stored.startswith("scrypt$16384$8$1$") and bob[1] not in stored
    assert secret not in rows[f"token:{token[3:19]}"]


def test_a_taken_username_is_refused_and_keeps_its_password(url):
    carol = new_user(url)
    again = api(url, "POST", "/api/2.0/mlflow/users/create", ADMIN, json={"username": carol[0], "password": "other"})
    assert again.status_code == 400 and again.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"
    assert api(url, "GET", "/api/2.0/mlflow/experiments/search", carol).status_code == 200
    assert api(url, "GET", "/api/2.0/mlflow/experiments/search", (carol[0], "other")).status_code == 401


def test_only_admins_manage_users(url):
    dave = new_user(url)
    answer = api(url, "POST", "/api/2.0/mlflow/users/create", dave, json={"username": "x" + uuid.uuid4().hex[:6], "password": "p"})
    assert answer.status_code == 403 and answer.json()["error_code"] == "PERMISSION_DENIED"
    assert api(url, "PATCH", "/api/2.0/mlflow/users/update-admin", dave, json={"username": dave[0], "is_admin": True}).status_code == 403


def test_a_password_change_takes_effect_at_once_on_this_server(url):
    erin = new_user(url)
    assert api(url, "GET", "/api/2.0/mlflow/experiments/search", erin).status_code == 200  # now cached
    wrong = api(url, "PATCH", "/api/2.0/mlflow/users/update-password", erin, json={"username": erin[0], "password": "new", "current_password": "nope"})
    assert wrong.status_code == 400 and wrong.json() == {"error_code": "INVALID_PARAMETER_VALUE", "message": "Current password does not match."}
    changed = api(url, "PATCH", "/api/2.0/mlflow/users/update-password", erin, json={"username": erin[0], "password": "new-pw", "current_password": erin[1]})
    assert changed.status_code == 200, changed.text
    assert api(url, "GET", "/api/2.0/mlflow/experiments/search", erin).status_code == 401
    assert api(url, "GET", "/api/2.0/mlflow/experiments/search", (erin[0], "new-pw")).status_code == 200


# -- tokens ---------------------------------------------------------------------------------


def test_a_read_token_reads_but_cannot_write(url):
    frank = new_user(url)
    experiment_id = new_experiment(url, frank)
    token = token_for(url, frank, ["read"])
    assert api(url, "GET", "/api/2.0/mlflow/experiments/get", token=token, params={"experiment_id": experiment_id}).status_code == 200
    write = api(url, "POST", "/api/2.0/mlflow/runs/create", token=token, json={"experiment_id": experiment_id})
    assert write.status_code == 403 and "EDIT" in write.json()["message"]
    assert api(url, "POST", "/api/2.0/mlflow/experiments/create", token=token, json={"name": "t" + uuid.uuid4().hex}).status_code == 403


def test_a_write_token_writes_as_its_user(url):
    gina = new_user(url)
    experiment_id = new_experiment(url, gina)
    token = token_for(url, gina, ["write"])
    run = api(url, "POST", "/api/2.0/mlflow/runs/create", token=token, json={"experiment_id": experiment_id})
    assert run.status_code == 200, run.text
    run_id = run.json()["run"]["info"]["run_id"]
    created = [e for e in all_events(url) if e["type"] == "run.created" and e["payload"]["run_id"] == run_id]
    assert [e["actor"] for e in created] == [gina[0]]


def test_a_revoked_token_stops_at_once(url):
    hank = new_user(url)
    token = token_for(url, hank, ["read"])
    assert api(url, "GET", "/api/2.0/mlflow/experiments/search", token=token).status_code == 200
    listed = api(url, "GET", "/api/2.0/eventflow/tokens/list", hank).json()["tokens"]
    assert [t["token_id"] for t in listed] == [token[3:19]]
    assert api(url, "POST", "/api/2.0/eventflow/tokens/revoke", hank, json={"token_id": token[3:19]}).status_code == 200
    assert api(url, "GET", "/api/2.0/mlflow/experiments/search", token=token).status_code == 401


def test_an_expired_token_is_401_and_a_past_expiry_is_refused(url, home):
    ivy = new_user(url)
    assert api(url, "POST", "/api/2.0/eventflow/tokens/create", ivy, json={"scopes": ["read"], "expires_time": 1000}).status_code == 400
    token = token_for(url, ivy, ["read"], expires_in_days=1)
    assert api(url, "GET", "/api/2.0/mlflow/experiments/search", token=token).status_code == 200
    with sqlite3.connect(f"{home}/views.db") as db:  # the day passes
        db.execute("UPDATE auth_tokens SET expires_time = 1 WHERE token_id = ?", (token[3:19],))
    # The cache holds a token no longer than it lives; a fresh header form skips the cache.
    assert api(url, "GET", "/api/2.0/mlflow/experiments/search", headers={"Authorization": f"bearer  {token}"}).status_code == 401


def test_a_token_cannot_mint_a_broader_token(url):
    jack = new_user(url)
    token = token_for(url, jack, ["read"])
    answer = api(url, "POST", "/api/2.0/eventflow/tokens/create", token=token, json={"scopes": ["write"]})
    assert answer.status_code == 403


def test_a_garbled_authorization_header_is_401_not_500(url):
    for header in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Bearer ef_short", "Digest abc"):
        assert api(url, "GET", "/api/2.0/mlflow/experiments/search", headers={"Authorization": header}).status_code == 401, header


# -- permissions ----------------------------------------------------------------------------


def grant(url: str, experiment_id: str, username: str, permission: str, auth=ADMIN) -> httpx.Response:
    return api(url, "POST", "/api/2.0/mlflow/experiments/permissions/create", auth,
               json={"experiment_id": experiment_id, "username": username, "permission": permission})


def test_the_creator_gets_manage_and_others_the_default_read(url):
    kim, lee = new_user(url), new_user(url)
    experiment_id = new_experiment(url, kim)
    mine = api(url, "GET", "/api/2.0/mlflow/experiments/permissions/get", kim, params={"experiment_id": experiment_id, "username": kim[0]})
    assert mine.json()["experiment_permission"]["permission"] == "MANAGE"
    assert api(url, "GET", "/api/2.0/mlflow/experiments/get", lee, params={"experiment_id": experiment_id}).status_code == 200
    refused = api(url, "POST", "/api/2.0/mlflow/runs/create", lee, json={"experiment_id": experiment_id})
    assert refused.status_code == 403
    assert api(url, "POST", "/api/2.0/mlflow/experiments/delete", lee, json={"experiment_id": experiment_id}).status_code == 403
    # The creator shares it: EDIT lets lee log, not delete.
    assert grant(url, experiment_id, lee[0], "EDIT", auth=kim).status_code == 200
    assert api(url, "POST", "/api/2.0/mlflow/runs/create", lee, json={"experiment_id": experiment_id}).status_code == 200
    assert api(url, "POST", "/api/2.0/mlflow/experiments/delete", lee, json={"experiment_id": experiment_id}).status_code == 403
    # Only MANAGE manages permissions.
    assert grant(url, experiment_id, lee[0], "MANAGE", auth=lee).status_code == 403


def test_no_permissions_hides_an_experiment_from_get_and_search(url):
    mia, ned = new_user(url), new_user(url)
    experiment_id = new_experiment(url, mia)
    assert grant(url, experiment_id, ned[0], "NO_PERMISSIONS", auth=mia).status_code == 200
    assert api(url, "GET", "/api/2.0/mlflow/experiments/get", ned, params={"experiment_id": experiment_id}).status_code == 403
    found = api(url, "POST", "/api/2.0/mlflow/experiments/search", ned, json={"max_results": 50000}).json().get("experiments", [])
    assert experiment_id not in [e["experiment_id"] for e in found]
    assert experiment_id in [e["experiment_id"] for e in api(url, "POST", "/api/2.0/mlflow/experiments/search", mia, json={"max_results": 50000}).json()["experiments"]]
    run = api(url, "POST", "/api/2.0/mlflow/runs/create", mia, json={"experiment_id": experiment_id}).json()["run"]["info"]["run_id"]
    assert api(url, "GET", "/api/2.0/mlflow/runs/get", ned, params={"run_id": run}).status_code == 403
    assert api(url, "POST", "/api/2.0/mlflow/runs/search", ned, json={"experiment_ids": [experiment_id]}).status_code == 403
    # Artifacts too: neither read nor written by name.
    path = f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run}/artifacts/a.txt"
    assert api(url, "PUT", path, ned, content=b"x").status_code == 403
    assert api(url, "PUT", path, mia, content=b"x").status_code == 200
    assert api(url, "GET", path, ned).status_code == 403
    assert api(url, "GET", "/api/2.0/mlflow/artifacts/list", ned, params={"run_id": run}).status_code == 403


def test_a_run_s_project_record_needs_read_on_its_experiment(url):
    owner, outsider = new_user(url), new_user(url)
    experiment_id = new_experiment(url, owner)
    run = api(url, "POST", "/api/2.0/mlflow/runs/create", owner, json={"experiment_id": experiment_id}).json()["run"]
    assert grant(url, experiment_id, outsider[0], "NO_PERMISSIONS", auth=owner).status_code == 200
    path = "/api/2.0/eventflow/runs/project"
    assert api(url, "GET", path, owner, params={"run_id": run["info"]["run_id"]}).json() == {}  # not a project run
    refused = api(url, "GET", path, outsider, params={"run_id": run["info"]["run_id"]})
    assert refused.status_code == 403 and "READ" in refused.json()["message"]


def promote(url: str, name: str, auth=None, token=None) -> httpx.Response:
    return api(url, "POST", "/api/2.0/mlflow/registered-models/alias", auth, token=token, json={"name": name, "alias": "production", "version": "1"})


def test_moving_an_alias_is_a_deployment_and_needs_manage_or_the_promote_scope(url):
    owner, editor = new_user(url), new_user(url)
    experiment_id = new_experiment(url, owner)
    run = api(url, "POST", "/api/2.0/mlflow/runs/create", owner, json={"experiment_id": experiment_id}).json()["run"]["info"]
    name = "m-" + uuid.uuid4().hex[:8]
    assert api(url, "POST", "/api/2.0/mlflow/registered-models/create", owner, json={"name": name}).status_code == 200
    version = api(url, "POST", "/api/2.0/mlflow/model-versions/create", owner,
                  json={"name": name, "source": run["artifact_uri"] + "/model", "run_id": run["run_id"]})
    assert version.status_code == 200, version.text
    assert api(url, "POST", "/api/2.0/mlflow/registered-models/permissions/create", owner,
               json={"name": name, "username": editor[0], "permission": "EDIT"}).status_code == 200
    assert promote(url, name, editor).status_code == 403  # EDIT with a password: not a deployment right
    assert promote(url, name, token=token_for(url, owner, ["write"])).status_code == 403  # no promote scope
    assert promote(url, name, token=token_for(url, editor, ["promote"])).status_code == 200  # CI's promote token
    assert promote(url, name, owner).status_code == 200  # MANAGE
    stage = api(url, "POST", "/api/2.0/mlflow/model-versions/transition-stage", editor, json={"name": name, "version": "1", "stage": "Production"})
    assert stage.status_code == 403


def test_every_rest_route_has_a_rule():
    """A route nobody wrote a rule for would be open to every user; the table must name each."""
    from eventflow.audit import api as audit_api
    from eventflow.auth.policy import EVENTFLOW_ROUTES, ROUTES
    from eventflow.server import projects_api, runs_api
    from eventflow.server.tracking import ENDPOINTS
    from eventflow.server.ui_artifacts import ROUTES as UI_ARTIFACT_ROUTES

    named = set(ENDPOINTS) | set(UI_ARTIFACT_ROUTES)
    assert named - set(ROUTES) == set()
    assert set(ROUTES) - named == EVENTFLOW_ROUTES == {audit_api.ROUTE, audit_api.LINEAGE_ROUTE, projects_api.ROUTE,
                                                       runs_api.ROUTE, runs_api.READ_ROUTE}


def test_users_and_grants_are_events_the_audit_can_read(url):
    owner, reader = new_user(url), new_user(url)
    experiment_id = new_experiment(url, owner)
    assert grant(url, experiment_id, reader[0], "READ", auth=owner).status_code == 200
    events = all_events(url)
    created = [e for e in events if e["type"] == "user.created" and e["payload"]["username"] == reader[0]]
    assert [(e["actor"], e["payload"]["is_admin"]) for e in created] == [(ADMIN[0], False)]
    granted = [e for e in events if e["type"] == "permission.set" and e["payload"]["username"] == reader[0]]
    assert [(e["actor"], e["payload"]["resource_id"], e["payload"]["permission"]) for e in granted] == [(owner[0], experiment_id, "READ")]
    first_admin = [e for e in events if e["type"] == "user.created" and e["payload"]["username"] == ADMIN[0]]
    assert first_admin[0]["actor"].startswith("eventflow-server") and first_admin[0]["payload"]["is_admin"] is True


def test_access_events_cannot_be_appended_directly(url):
    """A user.admin_set sent to the event-append endpoint would make anyone an admin."""
    from eventflow.codec import encode
    from eventflow.codec.framing import CONTENT_TYPE, pack
    from eventflow.events import Event

    mallory = new_user(url)
    body = pack([encode(Event("user.admin_set", {"username": mallory[0], "is_admin": True}, actor=mallory[0]))])
    answer = api(url, "POST", "/api/2.0/eventflow/events", mallory, content=body, headers={"Content-Type": CONTENT_TYPE})
    assert answer.status_code == 400, answer.text
    assert api(url, "POST", "/api/2.0/mlflow/users/create", mallory, json={"username": "x" + uuid.uuid4().hex[:5], "password": "p"}).status_code == 403


# -- the CLI ----------------------------------------------------------------------------------


def cli(url: str, args: list[str], auth=ADMIN, input: str | None = None):
    from click.testing import CliRunner

    from eventflow.cli import main

    env = {"EVENTFLOW_TRACKING_URI": url, "EVENTFLOW_TRACKING_USERNAME": auth[0], "EVENTFLOW_TRACKING_PASSWORD": auth[1],
           "EVENTFLOW_TRACKING_TOKEN": "", "MLFLOW_TRACKING_TOKEN": ""}
    return CliRunner().invoke(main, args, env=env, input=input, catch_exceptions=False)


def test_the_cli_creates_a_user_issues_a_token_and_grants_a_permission(url):
    name = "cli-" + uuid.uuid4().hex[:8]
    created = cli(url, ["users", "create", name], input="pw-1\npw-1\n")
    assert created.exit_code == 0, created.output
    assert name in cli(url, ["users", "list"]).output
    experiment_id = new_experiment(url, ADMIN)
    granted = cli(url, ["permissions", "grant", name, "edit", "--experiment-id", experiment_id])
    assert granted.exit_code == 0, granted.output
    assert f"{name} has EDIT" in cli(url, ["permissions", "show", name, "--experiment-id", experiment_id]).output
    issued = cli(url, ["tokens", "create", "--scope", "write", "--expires-in-days", "7"], auth=(name, "pw-1"))
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip().splitlines()[0]
    assert api(url, "POST", "/api/2.0/mlflow/runs/create", token=token, json={"experiment_id": experiment_id}).status_code == 200


def test_the_cli_says_what_the_server_refused(url):
    nobody = cli(url, ["users", "list"], auth=("ghost", "nope"))
    assert nobody.exit_code == 1 and "UNAUTHENTICATED" in nobody.output
    both = cli(url, ["permissions", "show", "x", "--experiment-id", "1", "--model", "m"])
    assert both.exit_code == 2 and "exactly one of --experiment-id and --model" in both.output


def test_the_event_append_endpoint_refuses_a_forged_actor_and_stamps_the_callers(url):
    """The forged audit trail: an event claiming to be alice-the-admin, at time 0, from a
    made-up host, sent by another user."""
    from eventflow import commands
    from eventflow.codec import encode
    from eventflow.codec.framing import CONTENT_TYPE, pack
    from eventflow.events import Event

    olga = new_user(url)
    experiment_id = new_experiment(url, olga)
    made = commands.create_run(uuid.uuid4().hex, experiment_id, run_name="forged", user_id=olga[0], artifact_uri="mlflow-artifacts:/x")

    def send(actor: str) -> httpx.Response:
        event = Event(made.type, made.payload, event_id=str(uuid.uuid4()), time=0, actor=actor,
                      source={"host": "made-up-host", "process": "1", "sdk_version": "0"})
        return api(url, "POST", "/api/2.0/eventflow/events", olga, content=pack([encode(event)]), headers={"Content-Type": CONTENT_TYPE})

    forged = send("alice-the-admin")
    assert forged.status_code == 400 and "alice-the-admin" in forged.json()["message"], forged.text
    assert not [e for e in all_events(url) if e["payload"].get("run_id") == made.payload["run_id"]]
    assert send(olga[0]).status_code == 200
    [stored] = [e for e in all_events(url) if e["payload"].get("run_id") == made.payload["run_id"]]
    assert stored["actor"] == olga[0] and stored["time"] > 0
    assert stored["source"]["stamped_by"] == "server" and stored["source"]["authenticated"] is True
    assert stored["source"]["client_address"] == "127.0.0.1" and stored["source"]["client_time"] == 0
