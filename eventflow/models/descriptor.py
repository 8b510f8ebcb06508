"""The ``MLmodel`` file: what a model directory holds and how to load it, in MLflow's format.

Keeping MLflow's keys means a model saved by eventflow loads with ``mlflow.pyfunc`` and a
model saved by MLflow loads with eventflow. Keys eventflow does not know are kept as they
are, so reading and writing a descriptor loses nothing.
"""

from __future__ import annotations

import datetime
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from eventflow import __version__
from eventflow.models.signature import ModelSignature

MLMODEL = "MLmodel"
PYFUNC = "python_function"


@dataclass
class Model:
    flavors: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_id: str | None = None
    artifact_path: str | None = None
    signature: ModelSignature | None = None
    saved_input_example_info: dict[str, Any] | None = None
    model_uuid: str = field(default_factory=lambda: uuid.uuid4().hex)
    utc_time_created: str = field(default_factory=lambda: str(datetime.datetime.now(datetime.UTC).replace(tzinfo=None)))
    model_size_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pyfunc(self) -> dict[str, Any]:
        if PYFUNC not in self.flavors:
            raise ValueError(f"this model has no {PYFUNC} flavor (it has {sorted(self.flavors)}), so it cannot be loaded for predict")
        return self.flavors[PYFUNC]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out.update(
            {
                "artifact_path": self.artifact_path,
                "flavors": self.flavors,
                "eventflow_version": __version__,
                "model_size_bytes": self.model_size_bytes,
                "model_uuid": self.model_uuid,
                "run_id": self.run_id,
                "utc_time_created": self.utc_time_created,
            }
        )
        if self.signature is not None:
            out["signature"] = self.signature.to_dict()
        if self.saved_input_example_info is not None:
            out["saved_input_example_info"] = self.saved_input_example_info
        return {key: value for key, value in out.items() if value is not None}

    def save(self, directory: Path) -> None:
        with open(directory / MLMODEL, "w", encoding="utf-8") as handle:
            yaml.safe_dump(self.to_dict(), handle, sort_keys=True, default_flow_style=False)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> "Model":
        path = Path(directory) / MLMODEL
        if not path.is_file():
            raise FileNotFoundError(f"{directory} is not a model directory: it has no {MLMODEL} file")
        found = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(found, dict) or not isinstance(found.get("flavors"), dict):
            raise ValueError(f"{path} is not a model descriptor: it needs a 'flavors' mapping")
        known = {"flavors", "run_id", "artifact_path", "signature", "saved_input_example_info", "model_uuid",
                 "utc_time_created", "model_size_bytes", "eventflow_version"}
        return cls(
            flavors=found["flavors"],
            run_id=found.get("run_id"),
            artifact_path=found.get("artifact_path"),
            signature=ModelSignature.from_dict(found["signature"]) if found.get("signature") else None,
            saved_input_example_info=found.get("saved_input_example_info"),
            model_uuid=found.get("model_uuid") or uuid.uuid4().hex,
            utc_time_created=str(found.get("utc_time_created", "")),
            model_size_bytes=found.get("model_size_bytes"),
            extra={key: value for key, value in found.items() if key not in known},
        )


def directory_size(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())
