"""The log alone rebuilds the registry: ``eventflow views rebuild`` reproduces it row for row,
and events keyed by a model's new name that a replay reads before the rename still land."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid

import httpx
from sqlalchemy import create_engine, select

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "views"))
from projector_contract import dump  # noqa: E402
from serving import running_server  # noqa: E402

from eventflow import commands  # noqa: E402
from eventflow.consumers.base import Delivery  # noqa: E402
from eventflow.consumers.projector import Projector  # noqa: E402
from eventflow.codec import decode  # noqa: E402
from eventflow.log import open_log  # noqa: E402
from eventflow.log.embedded import partition_for  # noqa: E402
from eventflow.log.event_log import to_message  # noqa: E402
from eventflow.registry import commands as rc  # noqa: E402
from eventflow.views.db import open_views  # noqa: E402
from eventflow.views.tables import model_versions, registered_model_aliases, registered_models, registry_parked  # noqa: E402

REGISTRY_TABLES = (
    "registered_models", "registered_model_tags", "model_versions", "model_version_tags", "model_version_files", "registered_model_aliases",
    "registry_names", "registry_parked",
)


def test_rebuild_reproduces_the_registry(tmp_path):
    home = tmp_path / "home"
    with running_server(home) as url:
        api = url + "/api/2.0/mlflow/"
        run = httpx.post(api + "runs/create", json={"experiment_id": "0"}).json()["run"]["info"]
        run_id = run["run_id"]
        for path in ("model/MLmodel", "model/model.pkl"):  # files the versions pin
            stored = httpx.put(f"{url}/api/2.0/mlflow-artifacts/artifacts/{run['artifact_uri'].removeprefix('mlflow-artifacts:/')}/{path}", content=path.encode())
            assert stored.status_code == 200, stored.text

        def call(method: str, path: str, **body) -> dict:
            answer = httpx.request(method, api + path, json=body)
            assert answer.status_code == 200, answer.text
            return answer.json()

        call("POST", "registered-models/create", name="kept", description="d", tags=[{"key": "t", "value": "1"}])
        for _ in range(3):
            call("POST", "model-versions/create", name="kept", source=f"runs:/{run_id}/model", run_id=run_id, tags=[{"key": "k", "value": "v"}])
        call("POST", "registered-models/rename", name="kept", new_name="kept-renamed")
        call("POST", "model-versions/create", name="kept-renamed", source=f"runs:/{run_id}/model")
        call("POST", "registered-models/alias", name="kept-renamed", alias="prod", version="4")
        call("POST", "model-versions/transition-stage", name="kept-renamed", version="2", stage="Production", archive_existing_versions=False)
        call("POST", "model-versions/transition-stage", name="kept-renamed", version="3", stage="Production", archive_existing_versions=True)
        call("DELETE", "model-versions/delete", name="kept-renamed", version="1")
        call("PATCH", "model-versions/update", name="kept-renamed", version="4", description="four")
        call("DELETE", "model-versions/delete-tag", name="kept-renamed", version="2", key="k")
        call("POST", "registered-models/create", name="gone")
        call("POST", "model-versions/create", name="gone", source=f"runs:/{run_id}/model")
        call("DELETE", "registered-models/delete", name="gone")
        call("POST", "registered-models/rename", name="kept-renamed", new_name="gone")  # a used name
        events = httpx.get(url + "/api/2.0/eventflow/events", params={"type": "registered_model.*", "max_results": 1000}).json()["events"]
        [deleted] = [e["event"] for e in events if e["event"]["type"] == "registered_model.deleted"]
        [renamed] = [e["event"] for e in events if e["event"]["type"] == "registered_model.renamed" and e["event"]["payload"]["new_name"] == "gone"]
        assert deleted["payload"] == {"name": "gone"} and renamed["causation_id"] == deleted["event_id"], "it follows the deletion"
    views = f"sqlite:///{home / 'views.db'}"
    before = dump(create_engine(views), "projector")
    assert [row[0] for row in before["registered_models"]] == ["gone"]
    assert len(before["model_versions"]) == 4 and before["registry_parked"] == []
    assert len(before["model_version_files"]) == 8, "each version pinned the run's two files"
    engine = create_engine(views)
    with engine.begin() as connection:
        for table in REGISTRY_TABLES:
            connection.exec_driver_sql(f"DELETE FROM {table}")
    engine.dispose()
    done = subprocess.run([sys.executable, "-m", "eventflow", "views", "rebuild", "--home", str(home)],
                          capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    after = dump(create_engine(views), "projector")
    assert {t: after[t] for t in REGISTRY_TABLES} == {t: before[t] for t in REGISTRY_TABLES}
    assert after == before


def _append_keyed_by_name(log, events) -> None:
    """Append as eventflow did before registry events shared one key: each keyed by its
    model's name, so a model's events and a rename's sit in different partitions. A
    replay of such a log must still come out as the live views did (parking)."""
    log.append_batch([dataclasses.replace(to_message(e), key=e.payload["name"].encode()) for e in events])


def _names_in_two_partitions(partitions: int = 3) -> tuple[str, str]:
    old = "old-" + uuid.uuid4().hex[:8]
    while True:
        new = "new-" + uuid.uuid4().hex[:8]
        if partition_for(new.encode(), partitions) != partition_for(old.encode(), partitions):
            return old, new


def _project_partition_by_partition(log_dir, url: str, topic: str, order: list[int]):
    """Feed the projector one whole partition after another, in the given order."""
    engine = open_views(url)
    projector = Projector(engine, "ordered")
    with open_log(str(log_dir)) as log:
        consumer = log.consumer([topic])
        records = []
        while batch := consumer.poll(timeout=0.5, max_records=1000):
            records += batch
        consumer.close()
    for partition in order:
        mine = [r for r in records if r.partition == partition]
        if mine:
            deliveries = [Delivery(decode(r.value), r) for r in mine]
            assert projector.apply(deliveries, {mine[0].tp: (mine[0].offset, mine[-1].offset + 1)}) == []
    return engine


def _registry(engine) -> dict:
    views = dump(engine)
    return {t: views[t] for t in REGISTRY_TABLES}


def test_events_after_a_rename_wait_for_it_when_a_replay_reads_them_first(tmp_path):
    old, new = _names_in_two_partitions()
    log_dir = tmp_path / "log"
    run_id = commands.new_run_id()
    with open_log(str(log_dir)) as log:
        _append_keyed_by_name(log, [
            rc.create_registered_model(old, "a model", [("team", "ml")]),
            rc.create_model_version(old, "1", f"runs:/{run_id}/model", run_id=run_id),
            rc.set_alias(old, "prod", "1"),
            rc.rename_registered_model(old, new),
            rc.create_model_version(new, "2", f"runs:/{run_id}/model", run_id=run_id),
            rc.set_alias(new, "prod", "2"),
            rc.transition_stage(new, "1", "Archived"),
            rc.set_registered_model_tag(new, "renamed", "yes"),
        ])
    topic = "eventflow.models"
    first, second = partition_for(old.encode(), 3), partition_for(new.encode(), 3)
    in_order = _project_partition_by_partition(log_dir, f"sqlite:///{tmp_path / 'a.db'}", topic, [first, second])
    halfway = _project_partition_by_partition(log_dir, f"sqlite:///{tmp_path / 'c.db'}", topic, [second])
    with halfway.connect() as connection:
        assert len(connection.execute(select(registry_parked)).all()) == 4, "the new name's events wait for the rename"
    new_first = _project_partition_by_partition(log_dir, f"sqlite:///{tmp_path / 'b.db'}", topic, [second, first])
    assert _registry(new_first) == _registry(in_order)
    with in_order.connect() as connection:
        assert connection.execute(select(registered_models.c.name)).scalars().all() == [new]
        versions = connection.execute(select(model_versions.c.version, model_versions.c.current_stage).order_by(model_versions.c.version)).all()
        assert [tuple(v) for v in versions] == [(1, "Archived"), (2, "None")]
        assert connection.execute(select(registered_model_aliases.c.alias, registered_model_aliases.c.version)).all() == [("prod", 2)]
        assert connection.execute(select(registry_parked)).all() == []


def test_a_rename_onto_a_used_name_waits_for_that_names_history_on_a_replay(tmp_path):
    old, new = _names_in_two_partitions()
    log_dir = tmp_path / "log"
    run_id = commands.new_run_id()
    source = f"runs:/{run_id}/model"
    earlier = [  # a first model called `new`, with two versions, deleted
        rc.create_registered_model(new, "the first of that name"),
        rc.create_model_version(new, "1", source),
        rc.create_model_version(new, "2", source),
        rc.set_alias(new, "prod", "2"),
        rc.delete_registered_model(new),
    ]
    with open_log(str(log_dir)) as log:
        _append_keyed_by_name(log, [
            *earlier,
            rc.create_registered_model(old, "the second"),
            rc.create_model_version(old, "1", source),
            rc.rename_registered_model(old, new, after=earlier[-1].event_id),  # as the server writes it
            rc.create_model_version(new, "2", source),
            rc.set_alias(new, "prod", "1"),
        ])
    topic = "eventflow.models"
    first, second = partition_for(old.encode(), 3), partition_for(new.encode(), 3)
    views = {}
    for label, order in (("old first", [first, second]), ("new first", [second, first])):
        views[label] = _project_partition_by_partition(log_dir, f"sqlite:///{tmp_path / label.replace(' ', '-')}.db", topic, order)
    halfway = _project_partition_by_partition(log_dir, f"sqlite:///{tmp_path / 'halfway.db'}", topic, [first])
    with halfway.connect() as connection:
        assert [row.name for row in connection.execute(select(registry_parked))] == [new], "the rename waits for the deletion"
    assert _registry(views["new first"]) == _registry(views["old first"])
    with views["old first"].connect() as connection:
        assert [tuple(r) for r in connection.execute(select(registered_models.c.name, registered_models.c.description))] == [(new, "the second")]
        assert [r.version for r in connection.execute(select(model_versions).order_by(model_versions.c.version))] == [1, 2]
        assert [tuple(r) for r in connection.execute(select(registered_model_aliases.c.alias, registered_model_aliases.c.version))] == [("prod", 1)]
        assert connection.execute(select(registry_parked)).all() == []
