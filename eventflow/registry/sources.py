"""Where a model version's files may be: only inside the artifact store.

MLflow read arbitrary files of its server through a version's ``source`` (CVE-2023-1177,
CVE-2026-2614): a source of ``file:///etc`` or ``../../`` made the server serve them. Here
a source is one of

- ``runs:/<run_id>/<path>``         a run's artifacts,
- ``models:/m-<id>[/<path>]``      a logged model (MLflow 3),
- ``mlflow-artifacts:/<path>``      the proxied store,
- a local path or ``file://`` URI  that resolves (symlinks followed) inside the store,

and everything else (other schemes, ``..`` segments, paths outside the store) is refused
with INVALID_PARAMETER_VALUE before anything reaches the log.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from eventflow.validation import InvalidInput

_LOGGED_MODEL_ID = re.compile(r"^m-[0-9a-f]{32}$")
_RUN_ID = re.compile(r"^[a-zA-Z0-9][\w\-]{0,255}$")


@dataclass(frozen=True)
class Source:
    uri: str  # as given (and recorded on the log)
    kind: str  # runs | models | store
    target: str = ""  # the run id or logged model id, for runs and models
    path: str = ""  # inside the run's artifacts or the logged model


def _refuse(source: str, why: str) -> InvalidInput:
    return InvalidInput(f"Invalid model version source {source!r}: {why}. A source must point inside the artifact store "
                        "(runs:/<run_id>/<path>, models:/m-<id>, mlflow-artifacts:/<path> or a path in the store).")


def _relative(source: str, path: str) -> str:
    """A path inside something, refused if any segment (decoded) climbs out of it."""
    for text in (path, unquote(path), unquote(unquote(path))):
        if "\\" in text or any(part in ("..", ".") for part in text.split("/")):
            raise _refuse(source, "it must not hold '..' or '.' segments")
    return path.strip("/")


def check_source(source: object, store: Path) -> Source:
    if not isinstance(source, str) or not source.strip():
        raise InvalidInput("Missing value for required parameter 'source'.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in source):
        raise _refuse(source, "it holds control characters")
    parts = urlsplit(source)
    scheme = parts.scheme.lower()
    if scheme == "runs":
        inner = _relative(source, source[len("runs:"):])
        run_id, _, path = inner.partition("/")
        if not _RUN_ID.match(run_id) or not source[len("runs:"):].startswith("/"):
            raise _refuse(source, "a runs URI is runs:/<run_id>/<path>")
        return Source(source, "runs", run_id, path)
    if scheme == "models":
        inner = _relative(source, source[len("models:"):])
        model_id, _, path = inner.partition("/")
        if not _LOGGED_MODEL_ID.match(model_id):
            raise _refuse(source, "only logged models (models:/m-<32 hex digits>) can be registered")
        return Source(source, "models", model_id, path)
    if scheme == "mlflow-artifacts":
        if parts.netloc:
            raise _refuse(source, "the store is this server's: write mlflow-artifacts:/<path>, with no host")
        _relative(source, parts.path)
        return Source(source, "store", path=parts.path.strip("/"))
    if scheme == "file" or (scheme == "" and source.startswith("/")):
        if scheme == "file" and parts.netloc not in ("", "localhost"):
            raise _refuse(source, "a file URI must name a local path")
        local = url2pathname(parts.path) if scheme == "file" else source
        _relative(source, local)
        root = store.resolve()
        target = Path(os.path.realpath(local))
        if target != root and root not in target.parents:
            raise _refuse(source, "the path is outside the artifact store")
        return Source(source, "store", path=str(target.relative_to(root)))
    if scheme == "":
        raise _refuse(source, "a relative path is ambiguous")
    raise _refuse(source, f"the scheme {parts.scheme!r} is not allowed")
