"""What a run was started from: code version, command, interpreter, machine, packages.

MLflow's tag names are used where MLflow has one (``mlflow.source.*``, ``mlflow.user``)
so MLflow tools read them; the rest live under ``eventflow.``.
"""

from __future__ import annotations

import getpass
import os
import platform
import shlex
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path


def _git(directory: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def entry_point() -> Path | None:
    """The script that is running (None in a notebook or an interactive shell)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return Path(path).resolve() if path else None


def user() -> str:
    try:
        return os.environ.get("EVENTFLOW_USER") or getpass.getuser()
    except Exception:
        return "unknown"


def capture() -> dict[str, str]:
    """Tags describing the environment of this process, taken at run start."""
    script = entry_point()
    tags = {
        "mlflow.user": user(),
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": str(script) if script else (sys.argv[0] or "<interactive>"),
        "eventflow.command": shlex.join(sys.argv) if sys.argv and sys.argv[0] else "<interactive>",
        "eventflow.python": platform.python_version(),
        "eventflow.platform": platform.platform(),
        "eventflow.host": socket.gethostname(),
    }
    directory = script.parent if script else Path.cwd()
    commit = _git(directory, "rev-parse", "HEAD")
    if commit:
        tags["mlflow.source.git.commit"] = commit
        branch = _git(directory, "rev-parse", "--abbrev-ref", "HEAD")
        if branch:
            tags["mlflow.source.git.branch"] = branch
        remote = _git(directory, "config", "--get", "remote.origin.url")
        if remote:
            tags["mlflow.source.git.repoURL"] = remote
        status = _git(directory, "status", "--porcelain", "--untracked-files=no")
        tags["eventflow.git.dirty"] = "true" if status else "false"
    return tags


def installed_packages() -> str:
    """``name==version`` lines of the installed distributions, like ``pip freeze``."""
    seen = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    return "\n".join(sorted(seen.values(), key=str.lower)) + "\n"
