"""What an audit is about: a TARGET as people write it, parsed into (entity type, entity).

``<run id>``, ``experiments:/<id or name>``, ``models:/<name>``, ``models:/<name>/<version>``,
``models:/<name>@<alias>``, a deployment target (``<name>@<alias>:<port>``), a webhook
subscription id. Over REST the same as ``entity_type`` and ``entity`` (a version as
``name/version``, an alias as ``name@alias``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from eventflow.audit import index
from eventflow.validation import InvalidInput

VERSION, ALIAS = "model_version", "alias"
KINDS = (index.RUN, index.EXPERIMENT, index.MODEL, VERSION, ALIAS, index.DEPLOYMENT, index.WEBHOOK, index.LOGGED_MODEL)


@dataclass(frozen=True)
class Target:
    kind: str  # one of KINDS
    entity: str  # the run id, experiment id, model name, deployment target, subscription id
    version: int | None = None
    alias: str | None = None

    def describe(self) -> str:
        if self.kind == VERSION:
            return f"models:/{self.entity}/{self.version}"
        if self.kind == ALIAS:
            return f"models:/{self.entity}@{self.alias}"
        if self.kind == index.MODEL:
            return f"models:/{self.entity}"
        if self.kind == index.EXPERIMENT:
            return f"experiments:/{self.entity}"
        return f"{self.kind} {self.entity}"

    @property
    def model(self) -> str | None:
        """The registered model the target belongs to, if any (whose READ it needs)."""
        if self.kind in (index.MODEL, VERSION, ALIAS):
            return self.entity
        if self.kind == index.DEPLOYMENT:
            return self.entity.partition("@")[0] or None
        return None


def _model_part(rest: str, given: str) -> Target:
    if not rest:
        raise InvalidInput(f"Invalid audit target {given!r}: models:/ needs a model name (models:/NAME, models:/NAME/VERSION or models:/NAME@ALIAS)")
    if "@" in rest:
        name, _, alias = rest.rpartition("@")
        if not name or not alias:
            raise InvalidInput(f"Invalid audit target {given!r}: write models:/NAME@ALIAS")
        return Target(ALIAS, name, alias=alias)
    name, slash, version = rest.rpartition("/")
    if slash and version.isdigit() and name:
        return Target(VERSION, name, version=int(version))
    return Target(index.MODEL, rest)


def parse(text: str) -> Target:
    """A CLI target; an experiment by name stays a name until ``resolve``."""
    given = text.strip()
    if not given:
        raise InvalidInput("Missing audit target: give a run id, experiments:/ID, models:/NAME[/VERSION|@ALIAS], a deployment target or a webhook id")
    if given.startswith("models:/"):
        return _model_part(given.removeprefix("models:/").strip("/"), given)
    if given.startswith("experiments:/"):
        rest = given.removeprefix("experiments:/").strip("/")
        if not rest:
            raise InvalidInput(f"Invalid audit target {given!r}: write experiments:/ID or experiments:/NAME")
        return Target(index.EXPERIMENT, rest)
    if "@" in given and ":" in given.rpartition("@")[2]:
        return Target(index.DEPLOYMENT, given)
    return Target("", given)  # a run, a webhook or a logged model: decided by what the index holds


def from_query(entity_type: str | None, entity: str | None, target: str | None = None) -> Target:
    """The REST form: ``entity_type`` and ``entity``, or a ``target`` as the CLI takes it."""
    if target:
        return parse(target)
    if not entity_type or not entity:
        raise InvalidInput("Missing value for required parameter 'entity_type' and 'entity' (or give 'target')")
    if entity_type not in KINDS:
        raise InvalidInput(f"Invalid value {entity_type!r} for parameter 'entity_type': it must be one of {', '.join(KINDS)}")
    if entity_type == VERSION:
        return _model_part(entity, entity) if "/" in entity else _fail(entity_type, entity, "NAME/VERSION")
    if entity_type == ALIAS:
        return _model_part(entity, entity) if "@" in entity else _fail(entity_type, entity, "NAME@ALIAS")
    return Target(entity_type, entity)


def _fail(entity_type: str, entity: str, form: str) -> Target:
    raise InvalidInput(f"Invalid value {entity!r} for parameter 'entity' of entity_type {entity_type}: write {form}")


def resolve(c: Connection, target: Target) -> Target:
    """Settle what a bare id is (run, webhook, logged model) and an experiment named by name."""
    from eventflow.views import queries
    from eventflow.views.tables import entity_events

    if target.kind == index.EXPERIMENT and queries.get_experiment(c, target.entity) is None:
        found = queries.get_experiment_by_name(c, target.entity)
        if found is not None:
            return Target(index.EXPERIMENT, found["experiment_id"])
    if target.kind:
        return target
    for kind in (index.RUN, index.WEBHOOK, index.LOGGED_MODEL, index.DEPLOYMENT):
        hit = c.execute(select(entity_events.c.offset).where(entity_events.c.entity_type == kind, entity_events.c.entity == target.entity).limit(1)).first()
        if hit is not None:
            return Target(kind, target.entity)
    raise InvalidInput(f"Nothing on the log is about {target.entity!r}: not a run id, webhook subscription id, logged model id "
                       "or deployment target (for models write models:/NAME, for experiments experiments:/ID)", "RESOURCE_DOES_NOT_EXIST")


def resources(c: Connection, data: dict[str, Any]) -> list[tuple[str, str]]:
    """What an audit request needs READ on (eventflow.auth.policy): the experiment of a
    run or experiment, the registered model of a model, version, alias or deployment."""
    try:
        target = resolve(c, from_query(data.get("entity_type"), data.get("entity"), data.get("target")))
    except InvalidInput:
        return []  # the handler answers with the error
    if target.model is not None:
        return [("registered_model", target.model)]
    if target.kind == index.EXPERIMENT:
        return [("experiment", target.entity)]
    if target.kind == index.RUN:
        from eventflow.auth.policy import run

        return run(c, {"run_id": target.entity})
    if target.kind == index.LOGGED_MODEL:
        from eventflow.auth.policy import logged_model

        return logged_model(c, {"model_id": target.entity})
    return []
