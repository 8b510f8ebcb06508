"""Datasets a run used: name, digest, source and schema, as MLflow's ``mlflow.data`` has them.

    import eventflow, eventflow.data
    dataset = eventflow.data.from_pandas(frame, source="s3://bucket/train.parquet", name="train")
    with eventflow.start_run():
        eventflow.log_input(dataset, context="training")

``log_input`` also takes MLflow's own datasets (``mlflow.data.from_pandas`` ...). Either way
the run gets a ``run.inputs_logged`` event, which the audit lineage reads.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from eventflow.validation import InvalidInput

# Rows hashed from each end of a large dataset: its digest stays cheap whatever its size.
DIGEST_ROWS = 5000
DIGEST_LENGTH = 8  # MLflow's digests are 8 hex characters


@dataclass(frozen=True)
class Dataset:
    """What the log keeps of a dataset (MLflow's Dataset entity)."""

    name: str
    digest: str
    source_type: str
    source: str  # JSON, as MLflow writes a dataset's source
    schema: str | None = None
    profile: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "digest": self.digest, "source_type": self.source_type,
            "source": self.source, "schema": self.schema, "profile": self.profile,
        }


def _source(source: str | None) -> tuple[str, str]:
    """(source type, source JSON): a URI or path the data came from, or the code that made it."""
    if source is None:
        return "code", json.dumps({"tags": {"mlflow.source.name": sys.argv[0] if sys.argv else ""}})
    if not isinstance(source, str) or not source:
        raise InvalidInput(f"a dataset's source is a URI or a path, not {source!r}")
    scheme = urlparse(source).scheme
    kind = "local" if scheme in ("", "file") or len(scheme) == 1 else scheme  # "C:" is a drive
    return ("http" if kind == "https" else kind), json.dumps({"uri": source})


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()[:DIGEST_LENGTH]


def from_pandas(df: Any, source: str | None = None, targets: str | None = None, name: str | None = None,
                digest: str | None = None) -> Dataset:
    """A dataset from a pandas DataFrame: its digest hashes its columns and rows (the first
    and last ``DIGEST_ROWS`` of a large one), its schema lists the columns' types."""
    import pandas as pd

    from eventflow.models.signature import infer_signature

    if not isinstance(df, pd.DataFrame):
        raise InvalidInput(f"from_pandas takes a pandas DataFrame, not {type(df).__name__}")
    if targets is not None and targets not in df.columns:
        raise InvalidInput(f"targets {targets!r} is not a column of the DataFrame (columns: {list(df.columns)})")
    sample = df if len(df) <= 2 * DIGEST_ROWS else pd.concat([df.head(DIGEST_ROWS), df.tail(DIGEST_ROWS)])
    computed = _digest(json.dumps([str(c) for c in df.columns]).encode(), str(df.shape).encode(),
                       pd.util.hash_pandas_object(sample, index=False).values.tobytes())
    schema = infer_signature(df).inputs
    profile = {"num_rows": len(df), "num_elements": int(df.size)}
    source_type, source_json = _source(source)
    return Dataset(name or "dataset", digest or computed, source_type, source_json,
                   json.dumps({"mlflow_colspec": json.loads(schema.to_json())}) if schema else None, json.dumps(profile))


def from_numpy(features: Any, source: str | None = None, targets: Any = None, name: str | None = None,
               digest: str | None = None) -> Dataset:
    """A dataset from numpy arrays (features, and optionally targets)."""
    import numpy as np

    from eventflow.models.signature import infer_signature

    arrays = {"features": np.asarray(features)}
    if targets is not None:
        arrays["targets"] = np.asarray(targets)
        if len(arrays["targets"]) != len(arrays["features"]):
            raise InvalidInput(f"targets has {len(arrays['targets'])} rows and features {len(arrays['features'])}")
    hashed: list[bytes] = []
    for key, array in arrays.items():
        flat = array.reshape(len(array), -1) if array.ndim else array.reshape(1, 1)
        sample = flat if len(flat) <= 2 * DIGEST_ROWS else np.concatenate([flat[:DIGEST_ROWS], flat[-DIGEST_ROWS:]])
        hashed += [key.encode(), str(array.shape).encode(), str(array.dtype).encode(), np.ascontiguousarray(sample).tobytes()]
    schema = {key: infer_signature(array).inputs.to_json() for key, array in arrays.items()}
    profile = {key: {"shape": list(array.shape)} for key, array in arrays.items()}
    source_type, source_json = _source(source)
    return Dataset(name or "dataset", digest or _digest(*hashed), source_type, source_json,
                   json.dumps({"mlflow_tensorspec": schema}), json.dumps(profile))


def as_dataset(dataset: Any) -> Dataset:
    """An eventflow Dataset from one of ours or one of MLflow's ``mlflow.data`` datasets."""
    if isinstance(dataset, Dataset):
        return dataset
    to_entity = getattr(dataset, "_to_mlflow_entity", None)  # mlflow.data.dataset.Dataset
    if callable(to_entity) and type(dataset).__module__.startswith("mlflow."):
        entity = to_entity()
        return Dataset(entity.name, entity.digest, entity.source_type, entity.source, entity.schema or None, entity.profile or None)
    raise InvalidInput(
        f"log_input takes a dataset from eventflow.data (from_pandas, from_numpy) or mlflow.data, "
        f"not {type(dataset).__module__}.{type(dataset).__name__}"
    )
