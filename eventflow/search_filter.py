"""MLflow's search grammar: ``metrics.acc > 0.9 AND params.lr = '0.01' AND tags."team" LIKE 'ml%'``.

Parsed here into ``Clause`` values that the views turn into SQL, and that the dashboard's
filter box and the REST API share. Errors name the offending part of the filter, in
MLflow's words where MLflow has them.

A filter (and an order_by clause) may have at most ``MAX_LENGTH`` characters — room for an
``IN`` list of a thousand run ids —, and is tokenized in one pass: its cost grows with its
length, never with the square of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from eventflow.validation import InvalidInput

ENTITY_ALIASES = {
    "metric": "metrics", "metrics": "metrics",
    "param": "params", "params": "params", "parameter": "params", "parameters": "params",
    "tag": "tags", "tags": "tags",
    "attribute": "attributes", "attributes": "attributes", "attr": "attributes", "run": "attributes",
}
STRING_ATTRIBUTES = {"run_id", "run_name", "status", "artifact_uri", "user_id", "lifecycle_stage"}
NUMERIC_ATTRIBUTES = {"start_time", "end_time", "created"}
RUN_ATTRIBUTES = {**{k: "string" for k in STRING_ATTRIBUTES}, **{k: "numeric" for k in NUMERIC_ATTRIBUTES}}
LOGGED_MODEL_ATTRIBUTES = {
    "name": "string", "model_id": "string", "source_run_id": "string", "status": "string", "model_type": "string",
    "creation_time": "numeric", "creation_timestamp": "numeric", "last_updated_timestamp": "numeric",
}
REGISTERED_MODEL_ATTRIBUTES = {
    "name": "string", "creation_timestamp": "numeric", "last_updated_timestamp": "numeric", "timestamp": "numeric",
}
MODEL_VERSION_ATTRIBUTES = {
    "name": "string", "run_id": "string", "source_path": "string", "version_number": "numeric", "current_stage": "string",
    "creation_timestamp": "numeric", "last_updated_timestamp": "numeric", "timestamp": "numeric",
}
EXPERIMENT_ATTRIBUTES = {"name": "string", "experiment_id": "string", "creation_time": "numeric", "last_update_time": "numeric"}
MAX_LENGTH = 50_000
NUMERIC_COMPARATORS = {"=", "!=", ">", ">=", "<", "<="}
STRING_COMPARATORS = {"=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"}

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<backtick>`[^`]*`)
      | (?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<op>!=|>=|<=|=|>|<)
      | (?P<paren>[(),])
      | (?P<word>[A-Za-z_][\w\-]*)
      | (?P<dot>\.)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Clause:
    entity: str  # metrics | params | tags | attributes
    key: str
    comparator: str  # = != > >= < <= LIKE ILIKE IN NOT IN
    value: Any  # float for numbers, str, or a tuple of str for IN


_SPACE = re.compile(r"\s*")


def _tokens(text: str) -> list[tuple[str, str]]:
    if len(text) > MAX_LENGTH:
        raise InvalidInput(f"Invalid filter {text[:40]!r}…: it has {len(text)} characters, and a filter may have at most {MAX_LENGTH}")
    out, at = [], 0
    while True:
        at = _SPACE.match(text, at).end()  # type: ignore[union-attr]  (\s* always matches)
        if at >= len(text):
            break
        match = _TOKEN.match(text, at)
        if not match or match.end() == at:
            raise InvalidInput(f"Invalid filter '{text}': cannot parse it at {text[at:at + 20]!r}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        at = match.end()
    return out


def _unquote(token: str) -> str:
    return re.sub(r"\\(.)", r"\1", token[1:-1])


class _Parser:
    def __init__(self, text: str, attributes: dict[str, str] = RUN_ATTRIBUTES):
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0
        self.attributes = attributes

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise InvalidInput(f"Invalid filter '{self.text}': it ends too early")
        self.at += 1
        return token

    def clauses(self) -> list[Clause]:
        out = [self.clause()]
        while self.peek() is not None:
            kind, word = self.take()
            if kind != "word" or word.upper() != "AND":
                raise InvalidInput(f"Invalid filter '{self.text}': expected AND between clauses, got {word!r} (OR is not supported)")
            out.append(self.clause())
        return out

    def identifier(self) -> tuple[str, str]:
        kind, word = self.take()
        if kind == "backtick":
            word = word[1:-1]
            entity, _, key = word.partition(".")
        elif kind == "word":
            entity = word
            if self.peek() != ("dot", ".") and word in self.attributes:
                return "attributes", word  # a bare attribute name: "name LIKE 'a%'"
            if self.peek() != ("dot", "."):
                raise InvalidInput(
                    f"Invalid identifier '{word}' in filter '{self.text}': it must be <entity>.<key> "
                    "where entity is one of metrics, params, tags, attributes"
                )
            self.take()
            kind, key = self.take()
            if kind in ("string", "backtick"):
                key = key[1:-1]
            elif kind == "word":
                # keys may hold dots and dashes when unquoted: metrics.val.loss
                while self.peek() == ("dot", "."):
                    self.take()
                    key += "." + self.take()[1]
            else:
                raise InvalidInput(f"Invalid identifier in filter '{self.text}': a key must follow '{entity}.'")
        else:
            raise InvalidInput(f"Invalid filter '{self.text}': expected an identifier like metrics.acc, got {word!r}")
        normal = ENTITY_ALIASES.get(entity.lower())
        if normal is None:
            raise InvalidInput(f"Invalid entity type '{entity}'. Valid values are ['metric', 'parameter', 'tag', 'attribute']")
        if normal == "attributes" and key not in self.attributes:
            valid = sorted(self.attributes)
            raise InvalidInput(f"Invalid attribute key '{key}' specified. Valid keys are '{valid}'")
        return normal, key

    def comparator(self) -> str:
        kind, word = self.take()
        if kind == "op":
            return word
        if kind == "word" and word.upper() in ("LIKE", "ILIKE", "IN"):
            return word.upper()
        if kind == "word" and word.upper() == "NOT":
            kind2, word2 = self.take()
            if word2.upper() == "IN":
                return "NOT IN"
        raise InvalidInput(f"Invalid comparator '{word}' in filter '{self.text}'")

    def clause(self) -> Clause:
        entity, key = self.identifier()
        comparator = self.comparator()
        numeric = entity == "metrics" or (entity == "attributes" and self.attributes.get(key) == "numeric")
        allowed = NUMERIC_COMPARATORS if numeric else STRING_COMPARATORS
        if comparator not in allowed:
            raise InvalidInput(
                f"Invalid comparator '{comparator}' not one of '{sorted(allowed)}' for {entity[:-1] if entity != 'attributes' else 'attribute'} '{key}'"
            )
        if comparator in ("IN", "NOT IN"):
            if self.take() != ("paren", "("):
                raise InvalidInput(f"Invalid filter '{self.text}': IN takes a list in parentheses, e.g. IN ('a', 'b')")
            values = []
            while True:
                kind, word = self.take()
                if kind != "string":
                    raise InvalidInput(f"Invalid filter '{self.text}': IN lists hold quoted strings, got {word!r}")
                values.append(_unquote(word))
                kind, word = self.take()
                if word == ")":
                    break
                if word != ",":
                    raise InvalidInput(f"Invalid filter '{self.text}': expected ',' or ')' in an IN list")
            return Clause(entity, key, comparator, tuple(values))
        kind, word = self.take()
        if numeric:
            if kind != "number":
                raise InvalidInput(f"Expected numeric value type for metric or numeric attribute '{key}'. Found {word}")
            return Clause(entity, key, comparator, float(word))
        if kind != "string":
            raise InvalidInput(
                f"Value must be enclosed in quotes for {entity[:-1] if entity != 'attributes' else 'attribute'} '{key}': {word}"
            )
        return Clause(entity, key, comparator, _unquote(word))


def parse(text: str | None, attributes: dict[str, str] = RUN_ATTRIBUTES) -> list[Clause]:
    """The clauses of a filter (empty for none); ``InvalidInput`` naming what is wrong.

    ``attributes`` names the entity's attributes and their kind (runs by default,
    ``EXPERIMENT_ATTRIBUTES`` for experiments); they may be written bare.
    """
    if text is None or not text.strip():
        return []
    return _Parser(text, attributes).clauses()


@dataclass(frozen=True)
class OrderBy:
    entity: str
    key: str
    ascending: bool


def parse_order_by(text: str, attributes: dict[str, str] = RUN_ATTRIBUTES) -> OrderBy:
    """``metrics.acc DESC``, ``attributes.start_time``, ``params.`lr` ASC``, ``start_time``."""
    stripped = text.strip()
    ascending = True
    upper = stripped.upper()
    if upper.endswith(" DESC"):
        ascending, stripped = False, stripped[:-5].rstrip()
    elif upper.endswith(" ASC"):
        stripped = stripped[:-4].rstrip()
    try:
        parser = _Parser(stripped, attributes)
        entity, key = parser.identifier()
    except InvalidInput:
        raise InvalidInput(f"Invalid order_by clause '{text}'") from None
    if parser.peek() is not None:
        raise InvalidInput(f"Invalid order_by clause '{text}'")
    return OrderBy(entity, key, ascending)
