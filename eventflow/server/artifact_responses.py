"""How an artifact path is judged and a file is answered, as MLflow's server does it.

- **Invalid path**: MLflow refuses a path that, once percent-decoded, holds a ``..``
  segment or a ``#``, or is absolute (a file URI included), with 400
  ``INVALID_PARAMETER_VALUE`` "Invalid path" — its wording, which its tests match exactly.
  The store's own finer rules (no ``.`` or empty segments) come after, in
  :meth:`Runtime.artifact_file`.
- **Content types** are the server's choice from the file's name, never the uploader's
  or the client's: MLflow's text files (``.txt``, ``.json``, ``.yaml``, ``MLmodel``,
  ``MLproject``…) are ``text/plain``, others what :mod:`mimetypes` says, else
  ``application/octet-stream``; sent without a charset, as MLflow sends them.
- **Never rendered as this site's page**: every file is an attachment with
  ``X-Content-Type-Options: nosniff`` (MLflow's headers), and, unlike MLflow, HTML is
  served as ``text/plain`` and every file with ``Content-Security-Policy: sandbox``: an
  artifact is anyone's upload, and rendered on the server's origin it could act as the
  signed-in user.
"""

from __future__ import annotations

import mimetypes
import os
import unicodedata
from pathlib import Path, PurePosixPath, PureWindowsPath
from urllib.parse import quote, unquote

from starlette.responses import FileResponse

from eventflow.server.errors import ApiError

# The file extensions (and extension-less names) MLflow serves as text/plain.
TEXT_EXTENSIONS = frozenset({
    "txt", "log", "err", "cfg", "conf", "cnf", "cf", "ini", "properties", "prop", "hocon", "toml", "yaml", "yml",
    "xml", "json", "js", "py", "py3", "csv", "tsv", "md", "rst", "ipynb", "MLmodel", "MLproject",
})
# Types a browser would run as a page of this origin: served as text instead.
ACTIVE_TYPES = frozenset({"text/html", "application/xhtml+xml"})
ARTIFACT_CSP = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def invalid_path() -> ApiError:
    return ApiError("Invalid path", "INVALID_PARAMETER_VALUE")


def safe_path(path: str) -> str:
    """``path`` unchanged, unless MLflow's rule refuses it (see the module's docstring)."""
    decoded = path
    for _ in range(10):  # "%252e%252e" is ".." twice encoded
        once = unquote(decoded)
        if once == decoded:
            break
        decoded = once
    else:
        raise invalid_path()
    if (
        "#" in decoded
        or ".." in decoded.replace("\\", "/").split("/")
        or decoded.lower().startswith("file:")
        or PurePosixPath(decoded).is_absolute()
        or PureWindowsPath(decoded).is_absolute()
    ):
        raise invalid_path()
    return path


def media_type(name: str) -> str:
    """The Content-Type of a file called ``name`` (MLflow's rule, HTML excepted)."""
    extension = os.path.splitext(name)[1].removeprefix(".") or name
    if extension in TEXT_EXTENSIONS:
        return "text/plain"
    guessed = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return "text/plain" if guessed in ACTIVE_TYPES else guessed


def content_disposition(name: str) -> str:
    """``attachment; filename=…`` as MLflow writes it: a token bare, else quoted; a
    non-ASCII name with an ASCII fallback and its RFC 5987 ``filename*``."""
    if name.isascii() and name.isprintable():
        return f"attachment; filename={_quoted(name)}"
    fallback = "".join(ch for ch in unicodedata.normalize("NFKD", name) if ch.isascii() and ch.isprintable()) or "download"
    return f"attachment; filename={_quoted(fallback)}; filename*=UTF-8''{quote(name, safe='!#$&+-.^_`|~')}"


def _quoted(value: str) -> str:
    if value and set(value) <= _TOKEN:
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def file_response(target: Path, name: str | None = None) -> FileResponse:
    """The file at ``target``, answered as an artifact named ``name`` (its own name by default)."""
    name = name or target.name
    return FileResponse(target, headers={
        "content-type": media_type(name),
        "content-disposition": content_disposition(name),
        "x-content-type-options": "nosniff",
        "content-security-policy": ARTIFACT_CSP,
    })
