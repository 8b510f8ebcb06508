"""Where things live: the eventflow home and what a tracking URI points at."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = "~/.eventflow"


@dataclass(frozen=True)
class Home:
    """The embedded default's files: the log, the SQLite views and the artifacts."""

    path: Path

    @classmethod
    def resolve(cls, path: str | os.PathLike[str] | None = None) -> "Home":
        chosen = path or os.environ.get("EVENTFLOW_HOME") or DEFAULT_HOME
        home = Path(chosen).expanduser().resolve()
        home.mkdir(parents=True, exist_ok=True)
        return cls(home)

    @property
    def log_dir(self) -> Path:
        return self.path / "log"

    @property
    def views_url(self) -> str:
        return f"sqlite:///{self.path / 'views.db'}"

    @property
    def artifacts_dir(self) -> Path:
        return self.path / "artifacts"


ACCEPTED_FORMS = "http://HOST:PORT or https://… (a server), kafka://HOST:PORT (a broker), or a directory path"
_SCHEMES = ("http://", "https://", "kafka://", "file://")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_HOST_PORT = re.compile(r"^(?P<host>[\w.-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})(?P<rest>/.*)?$")
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


class InvalidTrackingUri(ValueError):
    """A tracking URI that is neither a server, a broker nor clearly a directory."""


def check_tracking_uri(uri: str) -> str:
    """``uri`` itself, or an InvalidTrackingUri naming the accepted forms.

    Anything else used to be taken for a directory: ``htp://h:5000`` made ``./htp:/h:5000``
    with a fresh log in it, and the runs went where nobody would look.
    """
    if uri.startswith(_SCHEMES) or _DRIVE.match(uri):
        return uri
    host_port = _HOST_PORT.match(uri)
    if host_port:
        raise InvalidTrackingUri(f"tracking URI {uri!r} has no scheme: did you mean http://{uri}? Write {ACCEPTED_FORMS}")
    if _SCHEME.match(uri):
        scheme = uri.split(":", 1)[0]
        raise InvalidTrackingUri(f"tracking URI {uri!r}: unknown scheme {scheme!r}. Write {ACCEPTED_FORMS}")
    return uri


def tracking_uri_from_env() -> str | None:
    """``EVENTFLOW_TRACKING_URI``, checked (a wrong one fails the first call that needs it)."""
    uri = os.environ.get("EVENTFLOW_TRACKING_URI") or None
    return None if uri is None else check_tracking_uri(uri)
