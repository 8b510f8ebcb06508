"""Folds of the past are cached and continued: a later moment continues a copy of the
latest earlier fold of the same events. Whatever order the moments are asked in, each
answer equals a fold from zero (and the state the events say), and a cached fold is
never changed by a later one."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from eventflow.audit import asof
from eventflow.consumers.base import ConsumerLoop
from eventflow.consumers.projector import Projector
from eventflow.events import now_ms
from eventflow.log import open_log
from eventflow.log.event_log import EventLog
from eventflow.registry import api, commands as rc
from eventflow.views.db import open_views

HOUR = 3_600_000


@pytest.fixture
def backend(tmp_path):
    """A model whose production alias moved to version k at base + 10·k ms, an hour ago
    (old enough for its folds to be cached), with another model's events between."""
    base = now_ms() - HOUR
    events = [rc.create_registered_model("m"), rc.create_registered_model("other")]
    events += [rc.create_model_version("m", str(v), f"models:/x-{v}") for v in range(1, 7)]
    stamped = [dataclasses.replace(e, time=base + i % 2) for i, e in enumerate(events)]
    for k in range(1, 7):
        stamped.append(dataclasses.replace(rc.set_alias("m", "production", str(k)), time=base + 10 * k))
        stamped.append(dataclasses.replace(rc.set_registered_model_tag("other", "k", k), time=base + 10 * k + 1))
        stamped.append(dataclasses.replace(rc.set_registered_model_tag("m", "moved", k), time=base + 10 * k + 2))
    log = open_log(str(tmp_path / "log"))
    EventLog(log).append_many(stamped)
    engine = open_views(f"sqlite:///{tmp_path / 'views.db'}")
    ConsumerLoop(log, Projector(engine), join_group=False).catch_up(timeout=120)
    asof._CACHE.clear()
    yield SimpleNamespace(log=log, engine=engine, artifacts=tmp_path / "artifacts", base=base)
    asof._CACHE.clear()
    log.close()
    engine.dispose()


def _at(backend, moment: int) -> tuple[str, str]:
    alias = api.get_version_by_alias(backend, {"name": "m", "alias": "production", "as_of": moment})["model_version"]["version"]
    tags = {t["key"]: t["value"] for t in api.get_registered_model(backend, {"name": "m", "as_of": moment})["registered_model"]["tags"]}
    return str(alias), tags.get("moved", "")


def test_continued_folds_answer_as_folds_from_zero(backend, monkeypatch):
    continued = []
    fold = asof.fold
    monkeypatch.setattr(asof, "fold", lambda located, onto=None: continued.append(onto is not None) or fold(located, onto))
    moments = [35, 15, 25, 65, 45, 15, 55, 5 + 60]  # (base + ms) in no order
    answers = {m: _at(backend, backend.base + m) for m in moments}
    for m in moments:
        k = min(m // 10, 6)
        assert answers[m][0] == str(k), (m, answers[m])
        assert answers[m][1] == (str(k) if m % 10 >= 2 else str(k - 1) if k > 1 else ""), (m, answers[m])
    assert any(continued), "no fold was continued from an earlier one"

    for m in moments:  # each, again, from zero
        asof._CACHE.clear()
        assert _at(backend, backend.base + m) == answers[m], m
