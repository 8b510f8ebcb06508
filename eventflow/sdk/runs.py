"""Runs as MLflow's fluent API hands them out: ``run.info.run_id``, ``run.data.metrics["acc"]``,
and ``search_runs``' DataFrame with MLflow's columns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

VIEW_TYPES = {1: "ACTIVE_ONLY", 2: "DELETED_ONLY", 3: "ALL"}  # MLflow's ViewType values


def view_type_name(view_type: str | int) -> str:
    from eventflow.validation import InvalidInput

    name = VIEW_TYPES.get(view_type, view_type) if isinstance(view_type, int) else view_type
    if name not in VIEW_TYPES.values():
        raise InvalidInput(f"Invalid run_view_type {view_type!r}: use ACTIVE_ONLY (1), DELETED_ONLY (2) or ALL (3)")
    return str(name)


@dataclass(frozen=True)
class RunData:
    metrics: dict[str, float] = field(default_factory=dict)  # each key's latest value
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    info: Any  # fluent.RunInfo
    data: RunData
    inputs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, found: dict[str, Any]) -> "Run":
        from eventflow.sdk.fluent import RunInfo

        info, data = found["info"], found.get("data", {})
        return cls(
            RunInfo(
                info["run_id"], info["experiment_id"], info.get("run_name", ""), info.get("artifact_uri", ""),
                info.get("start_time"), info.get("status", "RUNNING"), end_time=info.get("end_time"),
                lifecycle_stage=info.get("lifecycle_stage", "active"), user_id=info.get("user_id", ""),
            ),
            RunData(
                {m["key"]: m["value"] for m in data.get("metrics", [])},
                {p["key"]: p["value"] for p in data.get("params", [])},
                {t["key"]: t["value"] for t in data.get("tags", [])},
            ),
            found.get("inputs") or {},
        )


def frame(runs: Sequence[Run]) -> Any:
    """MLflow's ``search_runs`` DataFrame: run_id, experiment_id, status, artifact_uri,
    start_time, end_time (UTC datetimes), then ``metrics.*``, ``params.*``, ``tags.*``; a run
    without a key has NaN (metrics) or None there."""
    import numpy as np
    import pandas as pd

    columns: dict[str, list[Any]] = {
        "run_id": [r.info.run_id for r in runs],
        "experiment_id": [r.info.experiment_id for r in runs],
        "status": [r.info.status for r in runs],
        "artifact_uri": [r.info.artifact_uri for r in runs],
        "start_time": [pd.to_datetime(r.info.start_time, unit="ms", utc=True) for r in runs],
        "end_time": [pd.to_datetime(r.info.end_time, unit="ms", utc=True) for r in runs],
    }
    for prefix, missing in (("metrics", np.nan), ("params", None), ("tags", None)):
        keys = sorted({key for r in runs for key in getattr(r.data, prefix)})
        for key in keys:
            columns[f"{prefix}.{key}"] = [getattr(r.data, prefix).get(key, missing) for r in runs]
    return pd.DataFrame(columns)
