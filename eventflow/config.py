"""Where things live: the eventflow home and what a tracking URI points at."""

from __future__ import annotations

import os
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


def tracking_uri_from_env() -> str | None:
    return os.environ.get("EVENTFLOW_TRACKING_URI") or None
