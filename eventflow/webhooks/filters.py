"""Which events a subscription receives: type patterns, experiment, model, condition.

Patterns are shell-style (``run.*``, ``model_version.*``, ``*``) against the dotted
event type. A condition is a small expression on the payload, ``AND``-ed comparisons::

    metrics.accuracy > 0.9
    status = 'FAILED' AND tags.team = 'vision'
    alias = 'production'

``metrics.KEY``, ``params.KEY`` and ``tags.KEY`` look inside the lists of points,
params and tags an event carries (true when any of them compares true); any other name
is a dotted path into the payload. An event that does not carry the name never matches.
"""

from __future__ import annotations

import fnmatch
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eventflow.events import FAMILIES, metric_points

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "==": operator.eq, "!=": operator.ne,
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}
_CLAUSE = re.compile(
    r"""\s*(?P<path>[A-Za-z_][\w\-]*(?:\.(?:[\w\-/]+|"[^"]+"|`[^`]+`))*)\s*
        (?P<op>==|!=|>=|<=|=|>|<)\s*
        (?P<value>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|true|false)\s*$""",
    re.VERBOSE | re.IGNORECASE,
)
_LISTS = {"metrics", "params", "tags"}


class InvalidFilter(ValueError):
    """A pattern or condition that cannot be understood; the message says why."""


@dataclass(frozen=True)
class Clause:
    path: tuple[str, ...]
    op: str
    value: Any

    def holds(self, payload: dict[str, Any]) -> bool:
        compare = _OPS[self.op]
        for found in _values(payload, self.path):
            if isinstance(self.value, (int, float)) and not isinstance(self.value, bool):
                try:
                    found = float(found)
                except (TypeError, ValueError):
                    continue
                if math.isnan(found):
                    continue
            elif isinstance(self.value, str):
                found = str(found)
            try:
                if compare(found, self.value):
                    return True
            except TypeError:
                continue
        return False


def _values(payload: dict[str, Any], path: tuple[str, ...]) -> list[Any]:
    head, rest = path[0], path[1:]
    if head in _LISTS and len(rest) == 1:
        if head == "metrics":
            return [p.value for p in metric_points(payload) if p.key == rest[0]] if ("points" in payload or "columns" in payload) else []
        items = payload.get(head)
        if isinstance(items, list):
            return [i.get("value") for i in items if isinstance(i, dict) and i.get("key") == rest[0]]
    node: Any = payload
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return []
        node = node[part]
    return [node] if node is not None and not isinstance(node, (dict, list)) else []


def parse_condition(text: str | None) -> tuple[Clause, ...]:
    """``"metrics.accuracy > 0.9 AND status = 'FAILED'"`` → clauses, or InvalidFilter."""
    if text is None or not text.strip():
        return ()
    if len(text) > 1000:
        raise InvalidFilter("a condition may have at most 1000 characters")
    clauses = []
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        match = _CLAUSE.match(part)
        if match is None:
            raise InvalidFilter(
                f"cannot read the condition part {part!r}: write NAME OP VALUE joined by AND, "
                "e.g. metrics.accuracy > 0.9 AND status = 'FAILED' (OP is one of = != > >= < <=)"
            )
        raw = match["value"]
        value: Any
        if raw[0] in "'\"":
            value = re.sub(r"\\(.)", r"\1", raw[1:-1])
        elif raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            value = float(raw)
        path = tuple(p.strip('"`') for p in re.findall(r'"[^"]+"|`[^`]+`|[^.]+', match["path"]))
        clauses.append(Clause(path, match["op"], value))
    return tuple(clauses)


def check_patterns(patterns: Sequence[str]) -> list[str]:
    """Event type patterns: each ``*`` or ``family.*``/``family.verb`` of a known family."""
    if not isinstance(patterns, (list, tuple)) or not patterns:
        raise InvalidFilter("give at least one event type, e.g. run.failed, 'model_version.*' or '*'")
    checked = []
    for pattern in patterns:
        if not isinstance(pattern, str) or not re.fullmatch(r"[\w.*?\[\]!-]{1,200}", pattern):
            raise InvalidFilter(f"{pattern!r} is not an event type pattern (e.g. run.failed, run.*, *)")
        family = pattern.partition(".")[0]
        if pattern != "*" and not any(fnmatch.fnmatchcase(name, family) for name in FAMILIES):
            known = ", ".join(sorted(FAMILIES))
            raise InvalidFilter(f"{pattern!r} matches no event family; the families are {known}")
        checked.append(pattern)
    return checked


# Events a wildcard does not match: the SDK's signs of life come every few seconds per run,
# and nobody subscribing to run.* wants them; name one to receive it.
ONLY_BY_NAME = frozenset({"run.alive"})


def type_matches(patterns: Sequence[str], event_type: str) -> bool:
    if event_type in ONLY_BY_NAME:
        return event_type in patterns
    return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in patterns)


def model_name_of(event_type: str, payload: dict[str, Any]) -> str | None:
    """The registered model an event is about, if it is about one."""
    if event_type.startswith(("registered_model.", "model_version.")):
        return payload.get("name")
    return payload.get("model_name") if isinstance(payload.get("model_name"), str) else None


@dataclass(frozen=True)
class EventFilter:
    """Which events one subscriber wants: type patterns, then experiment, model and condition
    (a webhook subscription; a job's event trigger)."""

    patterns: tuple[str, ...]
    experiment_id: str | None = None
    model_name: str | None = None
    condition: tuple[Clause, ...] = ()

    def matches(self, event_type: str, payload: dict[str, Any], experiment_id: str | None = None) -> bool:
        if not type_matches(self.patterns, event_type):
            return False
        if self.experiment_id is not None and experiment_id != self.experiment_id:
            return False
        if self.model_name is not None and model_name_of(event_type, payload) != self.model_name:
            return False
        return all(clause.holds(payload) for clause in self.condition)
