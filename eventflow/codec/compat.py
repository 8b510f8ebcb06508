"""Backward compatibility of event schemas: can a new schema read what an old one wrote?

Two complementary checks, both following Avro's schema resolution rules:

* a static walk of the writer (old) and reader (new) schemas, which catches what random
  data can miss: a reader field without default that the writer lacks, a removed enum
  symbol, a union branch the reader cannot take, a type change, a renamed record;
* a real round trip: sample records are generated from the old schema (fastavro's
  generator, plus deterministic records with every optional null, every optional set,
  and every enum symbol), written with the old schema and read with the new one by
  fastavro's resolving reader.
"""

from __future__ import annotations

import random
from io import BytesIO
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.utils import generate_many

from eventflow.codec.registry import SchemaRegistry, strip_logical_types

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_COMPLEX = frozenset({"record", "error", "enum", "fixed", "array", "map"})
_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}


def check_backward(old: dict, new: dict, samples: int = 40) -> list[str]:
    """Problems that stop ``new`` (as reader) from reading data written with ``old``.

    ``old`` and ``new`` are schemas as JSON (dicts, e.g. loaded from .avsc files).
    An empty list means every record written with ``old`` can be read with ``new``.
    """
    try:
        old_wire = parse_schema(strip_logical_types(old))
        new_wire = parse_schema(strip_logical_types(new))
    except Exception as exc:
        return [f"invalid schema: {type(exc).__name__}: {exc}"]
    problems = _static_problems(old_wire, new_wire)
    problems += _round_trip_problems(old_wire, new_wire, samples)
    # the same problem is often found by several records: keep the first of each
    return list(dict.fromkeys(problems))


def check_registry(reg: SchemaRegistry) -> dict[tuple[str, int, int], list[str]]:
    """For every event type, check the current schema against every earlier version.

    Returns {(event_type, old_version, current_version): problems} for every pair
    (an empty list where compatible)."""
    out: dict[tuple[str, int, int], list[str]] = {}
    for event_type in reg.event_types():
        current = reg.current(event_type)
        for old in reg.versions(event_type)[:-1]:
            out[(event_type, old.version, current.version)] = check_backward(old.raw, current.raw)
    return out


# ------------------------------------------------------------------ static resolution


def _named(schema: Any) -> dict:
    return schema.get("__named_schemas", {}) if isinstance(schema, dict) else {}


def _static_problems(old_wire: dict, new_wire: dict) -> list[str]:
    out: list[str] = []
    _resolve(old_wire, new_wire, "", _named(old_wire), _named(new_wire), set(), out)
    return out


def _deref(schema: Any, named: dict) -> Any:
    """Follow a reference to a named type; reduce ``{"type": "long"}`` to ``"long"``."""
    while True:
        if isinstance(schema, str):
            return named.get(schema, schema) if schema not in PRIMITIVES else schema
        if isinstance(schema, dict) and not isinstance(schema.get("type"), str):
            schema = schema["type"]  # {"type": {...}} or {"type": [...]}
            continue
        if isinstance(schema, dict) and schema["type"] not in _COMPLEX:
            schema = schema["type"]  # a primitive or a named type, in the dict form
            continue
        return schema


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, str):
        return schema
    return schema["type"]


def _names_match(w: dict, r: dict) -> bool:
    w_full, r_full = w["name"], r["name"]
    aliases = r.get("aliases", [])
    return w_full.split(".")[-1] == r_full.split(".")[-1] or w_full in aliases or w_full.split(".")[-1] in aliases


def _describe(schema: Any) -> str:
    if isinstance(schema, list):
        return "[" + ", ".join(_describe(s) for s in schema) + "]"
    if isinstance(schema, str):
        return schema
    if schema["type"] in ("record", "enum", "fixed"):
        return f"{schema['type']} {schema['name']}"
    return schema["type"]


def _matches(w: Any, r: Any, wn: dict, rn: dict) -> bool:
    """Whether a (non-union) writer type selects reader branch ``r`` (Avro's rule)."""
    w, r = _deref(w, wn), _deref(r, rn)
    wk, rk = _kind(w), _kind(r)
    if wk in ("record", "enum", "fixed") and wk == rk:
        return _names_match(w, r)
    if wk == rk:
        return True
    return rk in _PROMOTIONS.get(wk, ())


def _resolve(w: Any, r: Any, path: str, wn: dict, rn: dict, seen: set, out: list[str]) -> None:
    where = path or "(record)"
    w, r = _deref(w, wn), _deref(r, rn)
    wk, rk = _kind(w), _kind(r)
    if wk == "union":
        for branch in w:
            if rk != "union" and not _matches(branch, r, wn, rn):
                out.append(
                    f"{where}: the writer's union {_describe(w)} has a {_describe(_deref(branch, wn))} branch "
                    f"that the reader's {_describe(r)} cannot read"
                )
                continue
            _resolve(branch, r, path, wn, rn, seen, out)
        return
    if rk == "union":
        for branch in r:  # the first matching branch is the one used
            if _matches(w, branch, wn, rn):
                _resolve(w, branch, path, wn, rn, seen, out)
                return
        out.append(f"{where}: the writer's {_describe(w)} matches no branch of the reader's union {_describe(r)}")
        return
    if wk in ("record", "enum", "fixed") or rk in ("record", "enum", "fixed"):
        if wk != rk:
            out.append(f"{where}: type changed from {_describe(w)} to {_describe(r)}")
            return
        if not _names_match(w, r):
            out.append(
                f"{where}: {wk} name changed from {w['name']} to {r['name']} without an alias "
                f"{w['name']!r} on the reader"
            )
            return
        if wk == "fixed":
            if w["size"] != r["size"]:
                out.append(f"{where}: fixed {r['name']} size changed from {w['size']} to {r['size']}")
            return
        if wk == "enum":
            removed = [s for s in w["symbols"] if s not in r["symbols"]]
            if removed and "default" not in r:
                out.append(
                    f"{where}: enum {r['name']} lost symbol(s) {', '.join(removed)} and has no default symbol"
                )
            return
        key = (w["name"], r["name"])
        if key in seen:  # recursive type: already being checked
            return
        seen = seen | {key}
        w_fields = {f["name"]: f for f in w["fields"]}
        for rf in r["fields"]:
            sub = f"{path}.{rf['name']}" if path else rf["name"]
            wf = w_fields.get(rf["name"])
            if wf is None:
                for alias in rf.get("aliases", []):
                    wf = w_fields.get(alias)
                    if wf is not None:
                        break
            if wf is None:
                if "default" not in rf:
                    out.append(
                        f"{sub}: field added to {r['name']} without a default, and the writer {w['name']} "
                        f"does not have it"
                    )
                continue
            _resolve(wf["type"], rf["type"], sub, wn, rn, seen, out)
        return
    if wk == "array" and rk == "array":
        _resolve(w["items"], r["items"], f"{path}[]", wn, rn, seen, out)
        return
    if wk == "map" and rk == "map":
        _resolve(w["values"], r["values"], f"{path}{{}}", wn, rn, seen, out)
        return
    if wk == rk or rk in _PROMOTIONS.get(wk, ()):
        return
    out.append(f"{where}: type changed from {_describe(w)} to {_describe(r)}, which Avro cannot resolve")


# ------------------------------------------------------------------ real round trips


def _round_trip_problems(old_wire: dict, new_wire: dict, samples: int) -> list[str]:
    named = _named(old_wire)
    records = [_sample(old_wire, named, "null", 0), _sample(old_wire, named, "full", 0)]
    for i in range(1, _max_symbols(old_wire, named, set())):
        records.append(_sample(old_wire, named, "full", i))
    state = random.getstate()  # deterministic samples, without disturbing other users
    try:
        random.seed(20240601)
        records += list(generate_many(old_wire, samples))
    finally:
        random.setstate(state)
    problems = []
    for rec in records:
        buf = BytesIO()
        try:
            schemaless_writer(buf, old_wire, rec)
        except Exception as exc:  # a bug in the sample generator, not in the schemas
            problems.append(f"could not write a sample record with the old schema: {_short(exc)}")
            continue
        try:
            schemaless_reader(BytesIO(buf.getvalue()), old_wire, new_wire, return_record_name=False)
        except Exception as exc:
            problems.append(
                f"{new_wire.get('name')} cannot read a record written with {old_wire.get('name')}: {_short(exc)}"
            )
    return problems


def _short(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line (fastavro's resolution errors embed whole schemas)."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}"


def _max_symbols(schema: Any, named: dict, seen: set) -> int:
    schema = _deref(schema, named)
    if isinstance(schema, list):
        return max((_max_symbols(s, named, seen) for s in schema), default=1)
    if isinstance(schema, str):
        return 1
    t = schema["type"]
    if t == "enum":
        return len(schema["symbols"])
    if t == "record":
        if schema["name"] in seen:
            return 1
        seen = seen | {schema["name"]}
        return max((_max_symbols(f["type"], named, seen) for f in schema["fields"]), default=1)
    if t == "array":
        return _max_symbols(schema["items"], named, seen)
    if t == "map":
        return _max_symbols(schema["values"], named, seen)
    return 1


def _sample(schema: Any, named: dict, mode: str, i: int, depth: int = 0) -> Any:
    """A deterministic record: ``mode`` "null" takes the null branch of every union,
    "full" the last non-null one; ``i`` picks the enum symbols and union branches."""
    schema = _deref(schema, named)
    if isinstance(schema, list):
        non_null = [s for s in schema if s != "null"]
        if mode == "null" and "null" in schema or not non_null:
            return None
        if depth > 8 and "null" in schema:
            return None
        return _sample(non_null[(len(non_null) - 1 + i) % len(non_null)], named, mode, i, depth + 1)
    if isinstance(schema, str):
        return {
            "null": None,
            "boolean": bool(i % 2),
            "int": 7 + i,
            "long": 1_700_000_000_000 + i,
            "float": 0.5,
            "double": 0.25 + i,
            "bytes": b"\x00\xff",
            "string": f"s{i}",
        }[schema]
    t = schema["type"]
    if t == "record":
        return {f["name"]: _sample(f["type"], named, mode, i, depth + 1) for f in schema["fields"]}
    if t == "enum":
        return schema["symbols"][i % len(schema["symbols"])]
    if t == "array":
        return [_sample(schema["items"], named, mode, i + k, depth + 1) for k in range(2 if depth < 8 else 0)]
    if t == "map":
        return {f"k{k}": _sample(schema["values"], named, mode, i + k, depth + 1) for k in range(2 if depth < 8 else 0)}
    if t == "fixed":
        return bytes(schema["size"])
    raise ValueError(f"unsupported schema {schema!r}")
