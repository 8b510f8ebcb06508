"""A model's signature: the columns (or tensor) it takes and gives, in MLflow's JSON form.

The signature is enforced on every prediction, so a caller who sends a missing column or
a string where a number belongs is told so by name, instead of getting whatever the model
does with it. Safe conversions are allowed (an int32 for a long, an integer for a double, a whole
``1.0`` for an integer: JSON writers do not agree on ``1`` and ``1.0``); anything lossy
is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from eventflow.models.frames import loaded_pandas, numpy, pandas

COLUMN_TYPES = ("boolean", "integer", "long", "float", "double", "string", "binary", "datetime")
# What each column type accepts, as numpy dtype kinds (b bool, i int, u uint, f float, O object, M datetime).
_ACCEPTS = {
    "boolean": "b",
    "integer": "iu",
    "long": "iu",
    "float": "iuf",
    "double": "iuf",
    "string": "OUT",
    "binary": "OS",
    "datetime": "M",
}
_NUMPY_TYPE = {"boolean": "bool", "integer": "int32", "long": "int64", "float": "float32", "double": "float64"}


class SignatureMismatch(ValueError):
    """The input does not match the model's signature; the message names the column."""


@dataclass(frozen=True)
class ColSpec:
    type: str
    name: str | None = None
    required: bool = True

    def __post_init__(self) -> None:
        if self.type not in COLUMN_TYPES:
            raise ValueError(f"unknown column type {self.type!r}: use one of {', '.join(COLUMN_TYPES)}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.name is not None:
            out["name"] = self.name
        out["required"] = self.required
        return out


@dataclass(frozen=True)
class TensorSpec:
    dtype: str
    shape: tuple[int, ...]
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "tensor", "tensor-spec": {"dtype": self.dtype, "shape": list(self.shape)}}
        if self.name is not None:
            out["name"] = self.name
        return out


Spec = ColSpec | TensorSpec


@dataclass(frozen=True)
class Schema:
    specs: tuple[Spec, ...]

    @property
    def is_tensor(self) -> bool:
        return any(isinstance(spec, TensorSpec) for spec in self.specs)

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self.specs if spec.name is not None]

    def to_json(self) -> str:
        return json.dumps([spec.to_dict() for spec in self.specs])

    @classmethod
    def from_json(cls, text: str | list[dict[str, Any]]) -> "Schema":
        items = json.loads(text) if isinstance(text, str) else text
        specs: list[Spec] = []
        for item in items:
            if item.get("type") == "tensor":
                tensor = item["tensor-spec"]
                specs.append(TensorSpec(tensor["dtype"], tuple(tensor["shape"]), item.get("name")))
            else:
                specs.append(ColSpec(item["type"], item.get("name"), item.get("required", True)))
        return cls(tuple(specs))

    def enforce(self, data: Any) -> Any:
        """The input as the model should see it, or SignatureMismatch saying what is wrong."""
        if self.is_tensor:
            return _enforce_tensor(self.specs[0], data)  # type: ignore[arg-type]
        return _enforce_columns(self, as_frame(data, self.names))


@dataclass(frozen=True)
class ModelSignature:
    inputs: Schema | None = None
    outputs: Schema | None = None
    params: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs.to_json() if self.inputs else None,
            "outputs": self.outputs.to_json() if self.outputs else None,
            "params": json.dumps(self.params) if self.params else None,
        }

    @classmethod
    def from_dict(cls, found: dict[str, Any]) -> "ModelSignature":
        params = found.get("params")
        return cls(
            Schema.from_json(found["inputs"]) if found.get("inputs") else None,
            Schema.from_json(found["outputs"]) if found.get("outputs") else None,
            json.loads(params) if isinstance(params, str) else params,
        )


# -- inferring ----------------------------------------------------------------------


def _column_type(series: Any) -> str:
    kind = series.dtype.kind
    if kind == "b":
        return "boolean"
    if kind in "iu":
        return "integer" if kind == "i" and series.dtype.itemsize <= 4 else "long"
    if kind == "f":
        return "float" if series.dtype.itemsize <= 4 else "double"
    if kind == "M":
        return "datetime"
    values = [v for v in series.tolist() if v is not None]
    if values and all(isinstance(v, bytes) for v in values):
        return "binary"
    if all(isinstance(v, str) for v in values):
        return "string"
    raise ValueError(f"cannot infer a column type for {series.name!r} (dtype {series.dtype}): give the signature yourself")


def _schema_of(data: Any) -> Schema:
    np = numpy()
    if isinstance(data, np.ndarray):  # a tensor: no pandas needed
        return Schema((TensorSpec(str(data.dtype), (-1, *data.shape[1:])),))
    pd = pandas()
    if isinstance(data, pd.Series):
        return Schema((ColSpec(_column_type(data), None if data.name is None else str(data.name)),))
    if isinstance(data, (list, tuple)) and data and not isinstance(data[0], dict):
        return _schema_of(np.asarray(data))
    frame = as_frame(data, [])
    return Schema(tuple(ColSpec(_column_type(frame[name]), str(name)) for name in frame.columns))


def infer_signature(model_input: Any = None, model_output: Any = None, params: Any = None) -> ModelSignature:
    """A signature from an example input (a DataFrame, dict of columns, list of records or
    array) and, optionally, the model's output on it."""
    return ModelSignature(
        _schema_of(model_input) if model_input is not None else None,
        _schema_of(model_output) if model_output is not None else None,
        params,
    )


# -- enforcing ----------------------------------------------------------------------


def as_frame(data: Any, names: list[str]) -> Any:
    """Tabular input as a DataFrame: a DataFrame, a dict of columns (or of one row's
    values), a list of records, or rows of values in the order of ``names``."""
    pd, np = pandas(), numpy()
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pd.Series):
        return data.to_frame()
    if isinstance(data, dict):
        if data and all(np.ndim(value) == 0 for value in data.values()):
            return pd.DataFrame([data])
        return pd.DataFrame(data)
    if isinstance(data, (list, tuple)) and data and all(isinstance(row, dict) for row in data):
        return pd.DataFrame.from_records(list(data))
    array = np.asarray(data, dtype=object) if isinstance(data, (list, tuple)) else data
    if isinstance(array, np.ndarray):
        if array.ndim == 1 and names and len(names) > 1 and array.shape[0] == len(names):
            array = array.reshape(1, -1)  # one row of values
        if array.ndim == 1:
            array = array.reshape(-1, 1)
        if array.ndim != 2:
            raise SignatureMismatch(f"tabular input needs rows of values, and this has {array.ndim} dimensions")
        if names and array.shape[1] != len(names):
            raise SignatureMismatch(
                f"each row needs {len(names)} values (columns {names}), and the input has {array.shape[1]}"
            )
        frame = pd.DataFrame(array, columns=names or None)
        return frame.infer_objects()
    raise SignatureMismatch(f"cannot read input of type {type(data).__name__} as a table")


def _enforce_columns(schema: Schema, frame: Any) -> Any:
    specs = [spec for spec in schema.specs if isinstance(spec, ColSpec)]
    if specs and specs[0].name is None:  # unnamed columns: by position
        if frame.shape[1] != len(specs):
            raise SignatureMismatch(f"the model takes {len(specs)} columns, and the input has {frame.shape[1]}")
        frame = frame.set_axis(range(len(specs)), axis=1)
        named = list(zip(range(len(specs)), specs))
    else:
        columns = [str(c) for c in frame.columns]
        if columns != list(frame.columns):
            frame = frame.set_axis(columns, axis=1)
        missing = [spec.name for spec in specs if spec.required and spec.name not in columns]
        if missing:
            extra = [c for c in columns if c not in schema.names]
            hint = f"; the input has columns {columns}" + (f" (not in the signature: {extra})" if extra else "")
            raise SignatureMismatch(f"the model needs input column(s) {missing}, missing from the input{hint}")
        named = [(spec.name, spec) for spec in specs if spec.name in columns]
        wanted = [name for name, _ in named]
        if wanted != columns:
            frame = frame[wanted]
    # The hot path of scoring: look at dtypes once, cast what only needs widening in one
    # astype, and look at values only where a dtype cannot tell (strings, narrowing ints).
    dtypes = frame.dtypes
    casts: dict[Any, str] = {}
    converted: dict[Any, Any] = {}
    for name, spec in named:
        dtype = dtypes.iloc[frame.columns.get_loc(name)] if isinstance(name, str) else dtypes.iloc[name]
        target = _NUMPY_TYPE.get(spec.type)
        if target is not None and dtype == target:
            continue
        if target is not None and dtype.kind in _ACCEPTS[spec.type] and spec.type not in ("integer", "long"):
            casts[name] = target
        else:
            converted[name] = _convert(frame[name], spec, name)
    if casts:
        targets = set(casts.values())
        # One dtype for the whole frame is one block cast; a per-column mapping is much slower.
        frame = frame.astype(targets.pop() if len(targets) == 1 and len(casts) == frame.shape[1] else casts)
    if converted:
        frame = frame.copy()
        for name, values in converted.items():
            frame[name] = values
    return frame


def _convert(series: Any, spec: ColSpec, name: Any) -> Any:
    pd = pandas()
    kind = series.dtype.kind
    if kind == "O" and spec.type not in ("string", "binary"):
        series = series.infer_objects()  # rows of mixed values arrive as objects
        kind = series.dtype.kind
    if kind == "f" and spec.type in ("integer", "long"):
        np = numpy()
        values = series.to_numpy()
        if np.isfinite(values).all() and (values == np.round(values)).all():
            series, kind = series.astype("int64"), "i"  # 1.0 from a JSON writer is the integer 1
    if kind not in _ACCEPTS[spec.type]:
        if spec.type == "datetime" and kind in "OUT":
            try:
                return pd.to_datetime(series)
            except (ValueError, TypeError) as exc:
                raise SignatureMismatch(f"column {name!r} must be a datetime: {exc}") from None
        raise SignatureMismatch(
            f"incompatible input type for column {name!r}: cannot safely convert {series.dtype} to {spec.type}"
        )
    if spec.type == "string":
        bad = [v for v in series.tolist() if not (isinstance(v, str) or v is None)]
        if bad:
            raise SignatureMismatch(f"column {name!r} must hold strings, and it holds {bad[0]!r} ({type(bad[0]).__name__})")
        return series
    target = _NUMPY_TYPE.get(spec.type)
    if target is not None and series.dtype != target:
        numeric = series.astype(target)
        if kind in "iu" and spec.type in ("integer", "long") and not (numeric.astype(series.dtype) == series).all():
            raise SignatureMismatch(f"column {name!r} holds values out of range for {spec.type}")
        return numeric
    return series


def _enforce_tensor(spec: TensorSpec, data: Any) -> Any:
    pd, np = loaded_pandas(), numpy()
    if pd is not None and isinstance(data, (pd.DataFrame, pd.Series)):
        data = data.to_numpy()
    array = np.asarray(data)
    target = np.dtype(spec.dtype)
    if array.dtype != target:
        if not np.can_cast(array.dtype, target, casting="same_kind") or array.dtype.kind not in "biuf":
            raise SignatureMismatch(f"the model takes a tensor of {target}, and the input is {array.dtype}")
        array = array.astype(target)
    if array.ndim != len(spec.shape) or any(want not in (-1, got) for want, got in zip(spec.shape, array.shape)):
        raise SignatureMismatch(f"the model takes a tensor of shape {list(spec.shape)}, and the input has shape {list(array.shape)}")
    return array
