"""Reads of the views, answered in MLflow's shapes (the REST API returns them as they are).

Pages use an opaque token holding the offset of the next row; every list is ordered
totally (ties broken by id) so paging never skips or repeats a row.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Boolean, Connection, Float, Text, cast, func, literal, literal_column, not_, null, or_, select, union_all
from sqlalchemy.sql import ColumnElement

from eventflow.search_filter import EXPERIMENT_ATTRIBUTES, LOGGED_MODEL_ATTRIBUTES, Clause, parse, parse_order_by
from eventflow.validation import InvalidInput
from eventflow.views.tables import (
    artifacts,
    datasets,
    experiment_tags,
    experiments,
    inputs,
    latest_metrics,
    logged_model_artifacts,
    logged_model_metrics,
    logged_model_params,
    logged_model_tags,
    logged_models,
    params,
    run_model_inputs,
    run_outputs,
    runs,
    tags,
)

VIEW_TYPES = {"ACTIVE_ONLY": ("active",), "DELETED_ONLY": ("deleted",), "ALL": ("active", "deleted")}


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
        if not isinstance(offset, int) or offset < 0:
            raise ValueError
        return offset
    except Exception:
        raise InvalidInput(f"Invalid page token, could not base64-decode or parse it: {token!r}") from None


def _stages(view_type: str | int | None) -> tuple[str, ...]:
    names = {1: "ACTIVE_ONLY", 2: "DELETED_ONLY", 3: "ALL"}
    key = names.get(view_type, view_type) if isinstance(view_type, int) else (view_type or "ACTIVE_ONLY")
    if key not in VIEW_TYPES:
        raise InvalidInput(f"Invalid view type {view_type!r}: use ACTIVE_ONLY, DELETED_ONLY or ALL")
    return VIEW_TYPES[str(key)]


# -- experiments -------------------------------------------------------------------------------


def _experiment_dicts(connection: Connection, rows: Sequence[Any]) -> list[dict[str, Any]]:
    ids = [row.experiment_id for row in rows]
    by_id: dict[str, list[dict[str, str]]] = {i: [] for i in ids}
    if ids:
        for tag in connection.execute(select(experiment_tags).where(experiment_tags.c.experiment_id.in_(ids)).order_by(experiment_tags.c.key)):
            by_id[tag.experiment_id].append({"key": tag.key, "value": tag.value})
    return [
        {
            "experiment_id": row.experiment_id,
            "name": row.name,
            "artifact_location": row.artifact_location,
            "lifecycle_stage": row.lifecycle_stage,
            "creation_time": row.creation_time,
            "last_update_time": row.last_update_time,
            "tags": by_id[row.experiment_id],
        }
        for row in rows
    ]


def get_experiment(connection: Connection, experiment_id: str) -> dict[str, Any] | None:
    rows = connection.execute(select(experiments).where(experiments.c.experiment_id == str(experiment_id))).all()
    return _experiment_dicts(connection, rows)[0] if rows else None


def get_experiment_by_name(connection: Connection, name: str) -> dict[str, Any] | None:
    rows = connection.execute(select(experiments).where(experiments.c.name == name)).all()
    return _experiment_dicts(connection, rows)[0] if rows else None


def _experiment_condition(clause: Clause) -> ColumnElement[bool]:
    if clause.entity == "attributes":
        return _compare(experiments.c[clause.key], clause)
    if clause.entity == "tags":
        inner = select(experiment_tags.c.experiment_id).where(experiment_tags.c.key == clause.key, _compare(experiment_tags.c.value, clause))
        return experiments.c.experiment_id.in_(inner)
    raise InvalidInput(f"Invalid experiment filter on {clause.entity}.{clause.key}: use attributes.name, attributes.creation_time, attributes.last_update_time or tags.<key>")


def search_experiments(
    connection: Connection,
    view_type: str | int | None = "ACTIVE_ONLY",
    max_results: int | None = 1000,
    page_token: str | None = None,
    filter_string: str | None = None,
    order_by: Sequence[str] = (),
    visible: ColumnElement[bool] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    query = select(experiments).where(experiments.c.lifecycle_stage.in_(_stages(view_type)))
    if visible is not None:  # what the caller may READ (eventflow.auth.context.visible)
        query = query.where(visible)
    for clause in parse(filter_string, EXPERIMENT_ATTRIBUTES):
        query = query.where(_experiment_condition(clause))
    ordering = []
    for text in order_by or ():
        order = parse_order_by(text, EXPERIMENT_ATTRIBUTES)
        if order.entity != "attributes":
            raise InvalidInput(f"Invalid order_by clause '{text}' for experiments: order by name, experiment_id, creation_time or last_update_time")
        column = experiments.c[order.key]
        ordering.append(column.asc() if order.ascending else column.desc())
    ordering = ordering or [experiments.c.creation_time.desc()]
    offset = decode_token(page_token)
    limit = max_results or 1000
    rows = connection.execute(query.order_by(*ordering, experiments.c.experiment_id).offset(offset).limit(limit + 1)).all()
    token = encode_token(offset + limit) if len(rows) > limit else None
    return _experiment_dicts(connection, rows[:limit]), token


# -- runs ----------------------------------------------------------------------------------------


def _run_data(chunk: list[str]) -> Any:
    """A run's params, tags, latest metrics, model outputs and the names of its inputs in
    ONE query (kind, run_id, key, text, number, step, timestamp, is_nan): reading a run is
    the commonest request, and each query is a round trip."""
    text, number, big, flag = (cast(null(), Text), cast(null(), Float(precision=53)), cast(null(), BigInteger), cast(null(), Boolean))

    def kind(letter: str) -> Any:
        return literal_column(f"'{letter}'").label("kind")

    return union_all(
        select(kind("p"), params.c.run_id, params.c.key, params.c.value, number, big, big, flag).where(params.c.run_id.in_(chunk)),
        select(kind("t"), tags.c.run_id, tags.c.key, tags.c.value, number, big, big, flag).where(tags.c.run_id.in_(chunk)),
        select(
            kind("m"), latest_metrics.c.run_id, latest_metrics.c.key, text, latest_metrics.c.value,
            latest_metrics.c.step, latest_metrics.c.timestamp, latest_metrics.c.is_nan,
        ).where(latest_metrics.c.run_id.in_(chunk)),
        select(kind("o"), run_outputs.c.run_id, run_outputs.c.model_id, text, number, run_outputs.c.step, big, flag).where(run_outputs.c.run_id.in_(chunk)),
        select(kind("i"), inputs.c.run_id, inputs.c.dataset_name, text, number, big, big, flag).where(inputs.c.run_id.in_(chunk)),
        select(kind("n"), run_model_inputs.c.run_id, run_model_inputs.c.model_id, text, number, big, big, flag).where(run_model_inputs.c.run_id.in_(chunk)),
    )


def _run_dicts(connection: Connection, rows: Sequence[Any]) -> list[dict[str, Any]]:
    ids = [row.run_id for row in rows]
    data: dict[str, dict[str, list[dict[str, Any]]]] = {i: {"metrics": [], "params": [], "tags": []} for i in ids}
    outputs: dict[str, list[dict[str, Any]]] = {}
    model_inputs: dict[str, list[dict[str, Any]]] = {}
    with_inputs: list[str] = []
    for start in range(0, len(ids), 500):
        for kind, run_id, key, value, number, step, timestamp, is_nan in connection.execute(_run_data(ids[start : start + 500])):
            if kind == "p":
                data[run_id]["params"].append({"key": key, "value": value})
            elif kind == "t":
                data[run_id]["tags"].append({"key": key, "value": value})
            elif kind == "m":
                data[run_id]["metrics"].append({"key": key, "value": float("nan") if is_nan else number, "timestamp": timestamp, "step": step})
            elif kind == "o":
                outputs.setdefault(run_id, []).append({"model_id": key, "step": step})
            elif kind == "n":
                model_inputs.setdefault(run_id, []).append({"model_id": key})
            elif run_id not in with_inputs:
                with_inputs.append(run_id)
    for lists in data.values():
        for entries in lists.values():
            entries.sort(key=lambda entry: entry["key"])
    for entries in outputs.values():
        entries.sort(key=lambda entry: (entry["step"], entry["model_id"]))
    dataset_inputs: dict[str, list[dict[str, Any]]] = {}
    for start in range(0, len(with_inputs), 500):
        used = (
            select(inputs, datasets)
            .join(datasets, (datasets.c.name == inputs.c.dataset_name) & (datasets.c.digest == inputs.c.dataset_digest))
            .join(runs, (runs.c.run_id == inputs.c.run_id) & (runs.c.experiment_id == datasets.c.experiment_id))
            .where(inputs.c.run_id.in_(with_inputs[start : start + 500]))
            .order_by(inputs.c.dataset_name, inputs.c.dataset_digest)
        )
        for row in connection.execute(used):
            dataset = {"name": row.name, "digest": row.digest, "source_type": row.source_type, "source": row.source}
            dataset.update({k: getattr(row, k) for k in ("schema", "profile") if getattr(row, k) is not None})
            dataset_inputs.setdefault(row.run_id, []).append({"tags": json.loads(row.tags), "dataset": dataset})
    return [
        {
            "info": _run_info(row),
            "data": data[row.run_id],
            "inputs": {
                **({"dataset_inputs": dataset_inputs[row.run_id]} if row.run_id in dataset_inputs else {}),
                **({"model_inputs": sorted(model_inputs[row.run_id], key=lambda m: m["model_id"])} if row.run_id in model_inputs else {}),
            },
            "outputs": {"model_outputs": outputs[row.run_id]} if row.run_id in outputs else {},
        }
        for row in rows
    ]


def _run_info(row: Any) -> dict[str, Any]:
    return {
        "run_id": row.run_id,
        "run_uuid": row.run_id,
        "experiment_id": row.experiment_id,
        "run_name": row.run_name,
        "user_id": row.user_id,
        "status": row.status,
        "start_time": row.start_time,
        **({"end_time": row.end_time} if row.end_time is not None else {}),
        "artifact_uri": row.artifact_uri,
        "lifecycle_stage": row.lifecycle_stage,
    }


def get_run(connection: Connection, run_id: str) -> dict[str, Any] | None:
    rows = connection.execute(select(runs).where(runs.c.run_id == run_id)).all()
    return _run_dicts(connection, rows)[0] if rows else None


def search_datasets(connection: Connection, experiment_ids: Sequence[str], limit: int = 1000) -> list[dict[str, Any]]:
    """MLflow's dataset summaries (its UI's dataset filter): each dataset the experiments'
    runs used, once per context it was used in (the ``mlflow.data.context`` input tag)."""
    used = (
        select(runs.c.experiment_id, inputs.c.dataset_name, inputs.c.dataset_digest, inputs.c.tags)
        .join(runs, runs.c.run_id == inputs.c.run_id)
        .where(runs.c.experiment_id.in_(list(experiment_ids)))
        .order_by(runs.c.experiment_id, inputs.c.dataset_name, inputs.c.dataset_digest)
    )
    seen: dict[tuple[str, str, str, str | None], None] = {}
    for row in connection.execute(used):
        context = next((t["value"] for t in json.loads(row.tags) if t["key"] == "mlflow.data.context"), None)
        seen.setdefault((row.experiment_id, row.dataset_name, row.dataset_digest, context), None)
        if len(seen) >= limit:
            break
    return [
        {"experiment_id": e, "name": n, "digest": d, **({"context": c} if c is not None else {})} for e, n, d, c in seen
    ]


def get_run_info(connection: Connection, run_id: str) -> dict[str, Any] | None:
    """A run's info alone: one query, for writes that only check the run exists and is active."""
    row = connection.execute(select(runs).where(runs.c.run_id == run_id)).first()
    return _run_info(row) if row is not None else None


def get_params(connection: Connection, run_id: str, keys: Sequence[str]) -> dict[str, str]:
    """The values already logged for some of a run's params."""
    found: dict[str, str] = {}
    wanted = sorted(set(keys))
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = connection.execute(select(params.c.key, params.c.value).where(params.c.run_id == run_id, params.c.key.in_(chunk)))
        found.update((key, value) for key, value in rows)
    return found


def artifact_digest(connection: Connection, run_id: str, path: str) -> str | None:
    """The sha256 the log recorded for a run's artifact, if it recorded one."""
    row = connection.execute(select(artifacts.c.sha256).where(artifacts.c.run_id == run_id, artifacts.c.path == path)).first()
    return row[0] if row else None


def artifact_digests(connection: Connection, run_id: str, prefix: str = "") -> list[dict[str, Any]]:
    """Every file the log recorded for a run under ``prefix`` (a directory or one file), with
    its size and sha256: what a model loader may trust, and nothing else."""
    return _digests(connection, artifacts, artifacts.c.run_id == run_id, prefix)


def logged_model_digests(connection: Connection, model_id: str, prefix: str = "") -> list[dict[str, Any]]:
    """The same for a logged model's files (MLflow 3's ``models:/m-...``)."""
    return _digests(connection, logged_model_artifacts, logged_model_artifacts.c.model_id == model_id, prefix)


def logged_model_artifact_digest(connection: Connection, model_id: str, path: str) -> str | None:
    table = logged_model_artifacts
    row = connection.execute(select(table.c.sha256).where(table.c.model_id == model_id, table.c.path == path)).first()
    return row[0] if row else None


def _digests(connection: Connection, table: Any, owner: ColumnElement[bool], prefix: str) -> list[dict[str, Any]]:
    prefix = prefix.strip("/")
    rows = connection.execute(select(table.c.path, table.c.size, table.c.sha256).where(owner).order_by(table.c.path)).all()
    return [
        {"path": row.path, "size": row.size, "sha256": row.sha256}
        for row in rows
        if not prefix or row.path == prefix or row.path.startswith(prefix + "/")
    ]


def _compare(column: Any, clause: Clause) -> ColumnElement[bool]:
    value = clause.value
    match clause.comparator:
        case "=":
            return column == value
        case "!=":
            return column != value
        case ">":
            return column > value
        case ">=":
            return column >= value
        case "<":
            return column < value
        case "<=":
            return column <= value
        case "LIKE":
            return column.like(value)
        case "ILIKE":
            return func.lower(column).like(func.lower(literal(value)))
        case "IN":
            return column.in_(value)
        case "NOT IN":
            return not_(column.in_(value))
    raise InvalidInput(f"Invalid comparator {clause.comparator!r}")


def _run_condition(clause: Clause) -> ColumnElement[bool]:
    if clause.entity == "attributes":
        key = {"created": "start_time"}.get(clause.key, clause.key)
        return _compare(runs.c[key], clause)
    if clause.entity == "metrics":
        inner = select(latest_metrics.c.run_id).where(
            latest_metrics.c.key == clause.key, latest_metrics.c.is_nan.is_(False), _compare(latest_metrics.c.value, clause)
        )
    else:
        table = params if clause.entity == "params" else tags
        inner = select(table.c.run_id).where(table.c.key == clause.key, _compare(table.c.value, clause))
    return runs.c.run_id.in_(inner)


def _order_column(text: str) -> Any:
    order = parse_order_by(text)
    if order.entity == "attributes":
        column: Any = runs.c[{"created": "start_time"}.get(order.key, order.key)]
    else:
        table = {"metrics": latest_metrics, "params": params, "tags": tags}[order.entity]
        column = (
            select(table.c.value).where(table.c.run_id == runs.c.run_id, table.c.key == order.key).scalar_subquery()
        )
    # NULLs (runs without that metric/param/tag) last either way, as MLflow does.
    return [column.is_(None), column.asc() if order.ascending else column.desc()]


def search_runs(
    connection: Connection,
    experiment_ids: Sequence[str],
    run_view_type: str | int | None = "ACTIVE_ONLY",
    max_results: int | None = 1000,
    order_by: Sequence[str] = (),
    page_token: str | None = None,
    filter_string: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    query = select(runs).where(runs.c.experiment_id.in_([str(e) for e in experiment_ids]), runs.c.lifecycle_stage.in_(_stages(run_view_type)))
    for clause in parse(filter_string):
        query = query.where(_run_condition(clause))
    ordering: list[Any] = []
    for text in order_by or ():
        ordering += _order_column(text)
    ordering += [runs.c.start_time.desc(), runs.c.run_id]
    offset = decode_token(page_token)
    limit = max_results or 1000
    rows = connection.execute(query.order_by(*ordering).offset(offset).limit(limit + 1)).all()
    token = encode_token(offset + limit) if len(rows) > limit else None
    return _run_dicts(connection, rows[:limit]), token


def metric_history(
    connection: Connection,
    run_id: str,
    key: str,
    max_results: int | None = None,
    page_token: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Every point of one metric, by step then timestamp (then logging order).

    Histories are the largest reads (charts pull tens of thousands of points), so this
    one runs on the driver's cursor and skips SQLAlchemy's row objects.
    """
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    sql = f"SELECT value, is_nan, timestamp, step FROM metrics WHERE run_id = {mark} AND key = {mark} ORDER BY step, timestamp, id"
    offset = decode_token(page_token)
    params: tuple[Any, ...] = (run_id, key)
    if max_results is not None:
        sql += f" LIMIT {mark} OFFSET {mark}"
        params += (max_results + 1, offset)
    elif offset:
        sql += f" LIMIT -1 OFFSET {mark}" if mark == "?" else f" OFFSET {mark}"
        params += (offset,)
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    nan = float("nan")
    points = [{"key": key, "value": nan if is_nan else value, "timestamp": ts, "step": step} for value, is_nan, ts, step in rows]
    if max_results is not None and len(points) > max_results:
        return points[:max_results], encode_token(offset + max_results)
    return points, None


def sample_points(points: list[dict[str, Any]], max_results: int) -> list[dict[str, Any]]:
    """At most ``max_results`` of a history's points, as MLflow 3.17 samples them: the
    points (by step, timestamp, value) cut into ``max_results`` buckets of near-equal size
    (SQL's NTILE: the first ones one larger), the first point of each, with the last
    point in the last place. By point, not by step: a history logged at one step
    still comes back sampled, and charts drawn by MLflow's UI look the same here."""
    if len(points) <= max_results:
        return points
    size, larger = divmod(len(points), max_results)
    sample, at = [], 0
    for bucket in range(max_results):
        sample.append(points[at])
        at += size + (1 if bucket < larger else 0)
    sample[-1] = points[-1]
    return sample


def _point_order(point: dict[str, Any]) -> tuple[Any, ...]:
    nan = point["value"] != point["value"]
    return (point["step"], point["timestamp"], 0.0 if nan else point["value"], nan)


def metric_history_interval(
    connection: Connection,
    run_ids: Sequence[str],
    key: str,
    start_step: int | None,
    end_step: int | None,
    max_results: int,
) -> list[dict[str, Any]]:
    """MLflow's get-history-bulk-interval: each run's points of ``key`` in a step range,
    sampled down to ``max_results`` points per run."""
    out: list[dict[str, Any]] = []
    for run_id in run_ids:
        points, _ = metric_history(connection, run_id, key)
        within = [p for p in points if (start_step is None or p["step"] >= start_step) and (end_step is None or p["step"] <= end_step)]
        out += [{**p, "run_id": run_id} for p in sample_points(sorted(within, key=_point_order), max_results)]
    return out


def metric_history_bulk(connection: Connection, run_ids: Sequence[str], key: str, max_results: int) -> list[dict[str, Any]]:
    """MLflow's get-history-bulk (its UI's charts): the runs in id order, each run's points
    by timestamp, step and value, at most ``max_results`` in all."""
    out: list[dict[str, Any]] = []
    for run_id in sorted(set(run_ids)):
        points, _ = metric_history(connection, run_id, key, max_results=max_results)
        out += [{**p, "run_id": run_id} for p in sorted(points, key=lambda p: (p["timestamp"], p["step"], p["value"]))]
    return out[:max_results]


# -- logged models (MLflow 3) ----------------------------------------------------------------


def _model_metrics(connection: Connection, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Every point logged about each model, as MLflow 3's SqlAlchemyStore returns them: all
    of them (not the latest per key), each a Metric proto with its run and, when set, its
    dataset. Ordered by key, step, timestamp and run so that answers are stable (MLflow's
    order is the database's). NaN comes back as NaN, where MLflow's store answers 0."""
    table = logged_model_metrics
    out: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    query = select(table).where(table.c.model_id.in_(ids)).order_by(table.c.model_id, table.c.key, table.c.step, table.c.timestamp, table.c.run_id)
    for row in connection.execute(query):
        metric = {
            "key": row.key, "value": float("nan") if row.is_nan else row.value, "timestamp": row.timestamp, "step": row.step,
            "run_id": row.run_id, "model_id": row.model_id,
        }
        if row.dataset_name is not None:
            metric.update(dataset_name=row.dataset_name, dataset_digest=row.dataset_digest)
        out[row.model_id].append(metric)
    return out


def existing_logged_models(connection: Connection, model_ids: Sequence[str]) -> set[str]:
    """Which of these logged models exist (deleted ones too: MLflow still takes their metrics)."""
    return set(connection.execute(select(logged_models.c.model_id).where(logged_models.c.model_id.in_(list(model_ids)))).scalars())


def _logged_model_dicts(connection: Connection, rows: Sequence[Any]) -> list[dict[str, Any]]:
    ids = [row.model_id for row in rows]
    model_tags: dict[str, list[dict[str, str]]] = {i: [] for i in ids}
    model_params: dict[str, list[dict[str, str]]] = {i: [] for i in ids}
    model_metrics: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    if ids:
        for tag in connection.execute(select(logged_model_tags).where(logged_model_tags.c.model_id.in_(ids)).order_by(logged_model_tags.c.key)):
            model_tags[tag.model_id].append({"key": tag.key, "value": tag.value})
        for param in connection.execute(select(logged_model_params).where(logged_model_params.c.model_id.in_(ids)).order_by(logged_model_params.c.key)):
            model_params[param.model_id].append({"key": param.key, "value": param.value})
        model_metrics = _model_metrics(connection, ids)
    out = []
    for row in rows:
        info: dict[str, Any] = {
            "model_id": row.model_id,
            "experiment_id": row.experiment_id,
            "name": row.name,
            "artifact_uri": row.artifact_location,
            "status": row.status,
            "creation_timestamp_ms": row.creation_time,
            "last_updated_timestamp_ms": row.last_updated_time,
            "tags": model_tags[row.model_id],
        }
        for optional in ("status_message", "model_type", "source_run_id"):
            if getattr(row, optional) is not None:
                info[optional] = getattr(row, optional)
        out.append({"info": info, "data": {"params": model_params[row.model_id], "metrics": model_metrics[row.model_id]}})
    return out


def get_logged_model(connection: Connection, model_id: str) -> dict[str, Any] | None:
    rows = connection.execute(
        select(logged_models).where(logged_models.c.model_id == model_id, logged_models.c.lifecycle_stage == "active")
    ).all()
    return _logged_model_dicts(connection, rows)[0] if rows else None


def _on_datasets(datasets: Sequence[dict[str, Any]]) -> ColumnElement[bool] | None:
    """MLflow's ``datasets`` clause: a model metric on any of these datasets (a name, and
    a digest when given)."""
    table = logged_model_metrics
    choices = []
    for dataset in datasets:
        name, digest = dataset.get("dataset_name"), dataset.get("dataset_digest")
        if not name:
            raise InvalidInput("`dataset_name` in the `datasets` clause must be specified.")
        if not isinstance(name, str) or not isinstance(digest, (str, type(None))):
            raise InvalidInput(f"Invalid dataset {dataset!r} in the `datasets` clause: dataset_name and dataset_digest are strings")
        choice = table.c.dataset_name == name
        if digest:
            choice = choice & (table.c.dataset_digest == digest)
        choices.append(choice)
    return or_(*choices) if choices else None


def search_logged_models(
    connection: Connection,
    experiment_ids: Sequence[str],
    filter_string: str | None = None,
    max_results: int | None = 100,
    page_token: str | None = None,
    datasets: Sequence[dict[str, Any]] = (),
) -> tuple[list[dict[str, Any]], str | None]:
    """MLflow's search: attributes, tags, params and ``metrics.<key>`` filters. As in MLflow's
    SqlAlchemyStore, a metric filter holds when ANY point of that key logged about the
    model matches (not only the latest), counting only points on ``datasets`` when given;
    ``datasets`` without a metric filter keeps the models with any metric on them.
    (``order_by`` is not supported yet: newest first, as MLflow's default.)"""
    query = select(logged_models).where(logged_models.c.experiment_id.in_([str(e) for e in experiment_ids]), logged_models.c.lifecycle_stage == "active")
    names = {"creation_timestamp": "creation_time", "last_updated_timestamp": "last_updated_time"}
    on_datasets = _on_datasets(datasets)
    metric_filters = 0
    for clause in parse(filter_string, LOGGED_MODEL_ATTRIBUTES):
        if clause.entity == "attributes":
            query = query.where(_compare(logged_models.c[names.get(clause.key, clause.key)], clause))
        elif clause.entity == "tags":
            inner = select(logged_model_tags.c.model_id).where(logged_model_tags.c.key == clause.key, _compare(logged_model_tags.c.value, clause))
            query = query.where(logged_models.c.model_id.in_(inner))
        elif clause.entity == "params":
            inner = select(logged_model_params.c.model_id).where(logged_model_params.c.key == clause.key, _compare(logged_model_params.c.value, clause))
            query = query.where(logged_models.c.model_id.in_(inner))
        elif clause.entity == "metrics":
            metric_filters += 1
            table = logged_model_metrics
            inner = select(table.c.model_id).where(table.c.key == clause.key, table.c.is_nan.is_(False), _compare(table.c.value, clause))
            query = query.where(logged_models.c.model_id.in_(inner if on_datasets is None else inner.where(on_datasets)))
        else:
            raise InvalidInput(f"Invalid logged model filter on {clause.entity}.{clause.key}")
    if on_datasets is not None and not metric_filters:
        query = query.where(logged_models.c.model_id.in_(select(logged_model_metrics.c.model_id).where(on_datasets)))
    offset = decode_token(page_token)
    limit = max_results or 100
    rows = connection.execute(query.order_by(logged_models.c.creation_time.desc(), logged_models.c.model_id).offset(offset).limit(limit + 1)).all()
    token = encode_token(offset + limit) if len(rows) > limit else None
    return _logged_model_dicts(connection, rows[:limit]), token


def get_run_project(connection: Connection, run_id: str) -> dict[str, Any] | None:
    """What a project run ran (its ``run.project_recorded``), or None for another run."""
    from eventflow.views.tables import run_projects

    row = connection.execute(select(run_projects).where(run_projects.c.run_id == run_id)).first()
    if row is None:
        return None
    found = dict(row._mapping)
    found["parameters"] = json.loads(found["parameters"])
    return found


def get_stop_request(connection: Connection, run_id: str) -> dict[str, Any] | None:
    """The last stop asked for a run (``run.stop_requested``): when, by whom, why; or None."""
    from eventflow.views.tables import run_stop_requests

    row = connection.execute(select(run_stop_requests).where(run_stop_requests.c.run_id == run_id)).first()
    return None if row is None else dict(row._mapping)
