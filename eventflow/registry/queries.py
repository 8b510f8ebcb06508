"""Reads of the registry views, answered in MLflow's shapes (``RegisteredModel``, ``ModelVersion``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, select

from eventflow.registry.commands import STAGES
from eventflow.search_filter import MODEL_VERSION_ATTRIBUTES, REGISTERED_MODEL_ATTRIBUTES, Clause, parse, parse_order_by
from eventflow.validation import InvalidInput
from eventflow.views.queries import _compare as compare
from eventflow.views.queries import decode_token, encode_token
from eventflow.views.tables import model_version_files, model_version_tags, model_versions, registered_model_aliases, registered_model_tags, registered_models, registry_names, runs

_TIMES = {"creation_timestamp": "creation_time", "last_updated_timestamp": "last_updated_time", "timestamp": "last_updated_time"}
_VERSION_COLUMNS = {**_TIMES, "version_number": "version", "source_path": "source"}


def _version_dicts(connection: Connection, rows: Sequence[Any]) -> list[dict[str, Any]]:
    names = sorted({row.name for row in rows})
    tags: dict[tuple[str, int], list[dict[str, str]]] = {}
    aliases: dict[tuple[str, int], list[str]] = {}
    for start in range(0, len(names), 500):
        chunk = names[start : start + 500]
        for tag in connection.execute(select(model_version_tags).where(model_version_tags.c.name.in_(chunk)).order_by(model_version_tags.c.key)):
            tags.setdefault((tag.name, tag.version), []).append({"key": tag.key, "value": tag.value})
        query = select(registered_model_aliases).where(registered_model_aliases.c.name.in_(chunk)).order_by(registered_model_aliases.c.alias)
        for alias in connection.execute(query):
            aliases.setdefault((alias.name, alias.version), []).append(alias.alias)
    out = []
    for row in rows:
        version: dict[str, Any] = {
            "name": row.name,
            "version": str(row.version),
            "creation_timestamp": row.creation_time,
            "last_updated_timestamp": row.last_updated_time,
            "current_stage": row.current_stage,
            "source": row.source,
            "status": "READY",  # the files are in the store already: nothing to copy
            "tags": tags.get((row.name, row.version), []),
            "aliases": aliases.get((row.name, row.version), []),
        }
        for optional in ("user_id", "description", "run_id", "run_link", "model_id"):
            if getattr(row, optional):
                version[optional] = getattr(row, optional)
        out.append(version)
    return out


def _active(name: str) -> Any:
    return (model_versions.c.name == name) & (model_versions.c.lifecycle_stage == "active")


def get_model_version(connection: Connection, name: str, version: str) -> dict[str, Any] | None:
    rows = connection.execute(select(model_versions).where(_active(name), model_versions.c.version == int(version))).all()
    return _version_dicts(connection, rows)[0] if rows else None


def version_files(connection: Connection, name: str, version: str) -> list[dict[str, Any]]:
    """The files a version pinned at its creation, by path."""
    table = model_version_files
    rows = connection.execute(
        select(table.c.path, table.c.size, table.c.sha256).where(table.c.name == name, table.c.version == int(version)).order_by(table.c.path)
    )
    return [{"path": row.path, "size": row.size, "sha256": row.sha256} for row in rows]


def version_event_id(connection: Connection, name: str, version: str) -> str | None:
    """The event that created a version (deleted or not): who won the number."""
    row = connection.execute(select(model_versions.c.event_id).where(model_versions.c.name == name, model_versions.c.version == int(version))).first()
    return row[0] if row else None


def next_version(connection: Connection, name: str) -> str:
    """One past the highest number ever given in this model (deleted versions keep theirs)."""
    highest = connection.execute(select(func.max(model_versions.c.version)).where(model_versions.c.name == name)).scalar()
    return str((highest or 0) + 1)


def _latest(connection: Connection, names: Sequence[str], stages: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The highest version in each stage of each model named (every stage when none is)."""
    newest = (
        select(model_versions.c.name, model_versions.c.current_stage, func.max(model_versions.c.version).label("version"))
        .where(model_versions.c.name.in_(names), model_versions.c.lifecycle_stage == "active", model_versions.c.current_stage.in_(list(stages) or STAGES))
        .group_by(model_versions.c.name, model_versions.c.current_stage)
        .subquery()
    )
    rows = connection.execute(
        select(model_versions)
        .join(newest, (model_versions.c.name == newest.c.name) & (model_versions.c.version == newest.c.version))
        .order_by(model_versions.c.name, model_versions.c.version)
    ).all()
    return _version_dicts(connection, rows)


def latest_versions(connection: Connection, name: str, stages: Sequence[str] = ()) -> list[dict[str, Any]]:
    return _latest(connection, [name], stages)


def version_by_alias(connection: Connection, name: str, alias: str) -> dict[str, Any] | None:
    row = connection.execute(
        select(registered_model_aliases.c.version).where(registered_model_aliases.c.name == name, registered_model_aliases.c.alias == alias)
    ).first()
    return None if row is None else get_model_version(connection, name, str(row.version))


def run_artifact_uri(connection: Connection, run_id: str) -> str | None:
    """A run's artifact URI, or None if there is no such run (a cheap existence check)."""
    row = connection.execute(select(runs.c.artifact_uri).where(runs.c.run_id == run_id)).first()
    return row[0] if row else None


def last_event_about(connection: Connection, name: str) -> str | None:
    """The last registry event applied about a name, even once no model has it."""
    row = connection.execute(select(registry_names.c.event_id).where(registry_names.c.name == name)).first()
    return row[0] if row else None


def model_event_id(connection: Connection, name: str) -> str | None:
    """The event that gave the model its name (its creation, or the rename to it)."""
    row = connection.execute(select(registered_models.c.event_id).where(registered_models.c.name == name)).first()
    return row[0] if row else None


def _model_dicts(connection: Connection, rows: Sequence[Any]) -> list[dict[str, Any]]:
    names = [row.name for row in rows]
    tags: dict[str, list[dict[str, str]]] = {name: [] for name in names}
    aliases: dict[str, list[dict[str, str]]] = {name: [] for name in names}
    latest: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for start in range(0, len(names), 500):
        chunk = names[start : start + 500]
        for tag in connection.execute(select(registered_model_tags).where(registered_model_tags.c.name.in_(chunk)).order_by(registered_model_tags.c.key)):
            tags[tag.name].append({"key": tag.key, "value": tag.value})
        query = select(registered_model_aliases).where(registered_model_aliases.c.name.in_(chunk)).order_by(registered_model_aliases.c.alias)
        for alias in connection.execute(query):
            aliases[alias.name].append({"alias": alias.alias, "version": str(alias.version)})
        for version in _latest(connection, chunk):
            latest[version["name"]].append(version)
    out = []
    for row in rows:
        model: dict[str, Any] = {
            "name": row.name,
            "creation_timestamp": row.creation_time,
            "last_updated_timestamp": row.last_updated_time,
            "latest_versions": latest[row.name],
            "tags": tags[row.name],
            "aliases": aliases[row.name],
        }
        for optional in ("user_id", "description"):
            if getattr(row, optional):
                model[optional] = getattr(row, optional)
        out.append(model)
    return out


def get_registered_model(connection: Connection, name: str) -> dict[str, Any] | None:
    rows = connection.execute(select(registered_models).where(registered_models.c.name == name)).all()
    return _model_dicts(connection, rows)[0] if rows else None


def _ordering(order_by: Sequence[str], attributes: dict[str, str], columns: dict[str, str], table: Any) -> list[Any]:
    ordering = []
    for text in order_by or ():
        order = parse_order_by(text, attributes)
        if order.entity != "attributes":
            raise InvalidInput(f"Invalid order_by clause '{text}': order by one of {', '.join(sorted(attributes))}")
        column = table.c[columns.get(order.key, order.key)]
        ordering.append(column.asc() if order.ascending else column.desc())
    return ordering


def _positive(clause: Clause) -> tuple[Clause, bool]:
    """A tag's ``!=`` / ``NOT IN`` as the negation of ``=`` / ``IN``: an entity without the
    tag matches (MLflow 3's client adds ``tag.`mlflow.prompt.is_prompt` != 'true'`` to
    every search, meaning "not a prompt")."""
    negations = {"!=": "=", "NOT IN": "IN"}
    if clause.comparator in negations:
        return Clause(clause.entity, clause.key, negations[clause.comparator], clause.value), True
    return clause, False


def search_registered_models(
    connection: Connection,
    filter_string: str | None = None,
    max_results: int = 100,
    order_by: Sequence[str] = (),
    page_token: str | None = None,
    visible: Any = None,
) -> tuple[list[dict[str, Any]], str | None]:
    query = select(registered_models)
    if visible is not None:  # what the caller may READ (eventflow.auth.context.visible)
        query = query.where(visible)
    for clause in parse(filter_string, REGISTERED_MODEL_ATTRIBUTES):
        if clause.entity == "attributes":
            query = query.where(compare(registered_models.c[_TIMES.get(clause.key, clause.key)], clause))
        elif clause.entity == "tags":
            positive, negated = _positive(clause)
            inner = select(registered_model_tags.c.name).where(registered_model_tags.c.key == clause.key, compare(registered_model_tags.c.value, positive))
            query = query.where(registered_models.c.name.not_in(inner) if negated else registered_models.c.name.in_(inner))
        else:
            raise InvalidInput(f"Invalid filter on {clause.entity}.{clause.key}: registered models are searched by name and tags.<key>")
    ordering = _ordering(order_by, REGISTERED_MODEL_ATTRIBUTES, _TIMES, registered_models)
    offset = decode_token(page_token)
    rows = connection.execute(query.order_by(*ordering, registered_models.c.name).offset(offset).limit(max_results + 1)).all()
    token = encode_token(offset + max_results) if len(rows) > max_results else None
    return _model_dicts(connection, rows[:max_results]), token


def search_model_versions(
    connection: Connection,
    filter_string: str | None = None,
    max_results: int = 10000,
    order_by: Sequence[str] = (),
    page_token: str | None = None,
    visible: Any = None,
) -> tuple[list[dict[str, Any]], str | None]:
    query = select(model_versions).where(model_versions.c.lifecycle_stage == "active")
    if visible is not None:  # what the caller may READ (eventflow.auth.context.visible)
        query = query.where(visible)
    for clause in parse(filter_string, MODEL_VERSION_ATTRIBUTES):
        if clause.entity == "attributes":
            column = model_versions.c[_VERSION_COLUMNS.get(clause.key, clause.key)]
            query = query.where(compare(column, clause))
        elif clause.entity == "tags":
            positive, negated = _positive(clause)
            tagged = select(1).where(
                model_version_tags.c.name == model_versions.c.name, model_version_tags.c.version == model_versions.c.version,
                model_version_tags.c.key == clause.key, compare(model_version_tags.c.value, positive),
            )
            query = query.where(~tagged.exists() if negated else tagged.exists())
        else:
            raise InvalidInput(
                f"Invalid filter on {clause.entity}.{clause.key}: model versions are searched by name, run_id, source_path, "
                "version_number and tags.<key>"
            )
    ordering = _ordering(order_by, MODEL_VERSION_ATTRIBUTES, _VERSION_COLUMNS, model_versions)
    offset = decode_token(page_token)
    query = query.order_by(*ordering, model_versions.c.name, model_versions.c.version.desc())
    rows = connection.execute(query.offset(offset).limit(max_results + 1)).all()
    token = encode_token(offset + max_results) if len(rows) > max_results else None
    return _version_dicts(connection, rows[:max_results]), token
