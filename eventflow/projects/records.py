"""What a project run ran, as recorded on the log (``run.project_recorded``), read back.

``project_of(run_id)`` works wherever the SDK does: embedded (the views this process
keeps current) or over HTTP (``GET /api/2.0/eventflow/runs/project``), through the same
store as ``eventflow.Client``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from eventflow.sdk.stores import open_store

PATCH_ARTIFACT = "project/patch.diff"
STDOUT_ARTIFACT = "project/stdout.txt"


@dataclass(frozen=True)
class ProjectRecord:
    """Everything needed to run a project run again: the code (``repo_url`` at ``commit``,
    plus the patch at ``patch_path`` if the tree was dirty), ``command`` in ``subdirectory``,
    the environment (``env_manager``, ``python_version``, ``packages`` as pip froze them)."""

    uri: str
    entry_point: str
    command: str
    env_manager: str
    name: str | None = None
    subdirectory: str = ""
    version: str | None = None
    commit: str | None = None
    repo_url: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    env_digest: str | None = None
    python_version: str | None = None
    packages: str = ""
    patch_path: str | None = None
    patch_sha256: str | None = None
    run_id: str | None = None
    recorded_time: int | None = None

    def payload(self) -> dict[str, Any]:
        """The fields as ``commands.record_project`` takes them."""
        out = asdict(self)
        out.pop("recorded_time")
        out.pop("run_id")
        return out

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "ProjectRecord":
        parameters = row.get("parameters") or []
        if isinstance(parameters, list):
            parameters = {p["key"]: p["value"] for p in parameters}
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{**{k: v for k, v in row.items() if k in known}, "parameters": dict(parameters)})


def project_of(run_id: str, tracking_uri: str | None = None) -> ProjectRecord | None:
    """The project record of a run; None for a run that was not started by ``eventflow run``.

    Raises ``eventflow.validation.InvalidInput`` (RESOURCE_DOES_NOT_EXIST) for no such run."""
    from eventflow.config import tracking_uri_from_env

    store = open_store(tracking_uri or tracking_uri_from_env())
    try:
        found = store.run_project(run_id)
    finally:
        store.close()
    return None if found is None else ProjectRecord.from_row(found)
