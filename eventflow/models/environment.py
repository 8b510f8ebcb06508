"""The Python environment a model needs: ``python_env.yaml`` and ``requirements.txt``.

Same files and layout as MLflow's, so ``mlflow models serve`` and eventflow's Docker
context can rebuild the environment. Versions are the ones installed when the model was
saved: the model was pickled against exactly those.
"""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

import yaml

PYTHON_ENV = "python_env.yaml"
REQUIREMENTS = "requirements.txt"


def pinned(*distributions: str) -> list[str]:
    """``name==version`` for each installed distribution; absent ones are left out."""
    out = []
    for name in distributions:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return out


def write(directory: Path, requirements: list[str]) -> None:
    """Write the environment files; ``requirements`` come first, duplicates by name dropped."""
    seen: set[str] = set()
    lines = []
    for line in requirements:
        name = line.split("==")[0].split(">")[0].split("<")[0].strip().lower()
        if name and name not in seen:
            seen.add(name)
            lines.append(line.strip())
    (directory / REQUIREMENTS).write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {
        "python": platform.python_version(),
        "build_dependencies": pinned("pip", "setuptools") + ["wheel"],
        "dependencies": [f"-r {REQUIREMENTS}"],
    }
    (directory / PYTHON_ENV).write_text(yaml.safe_dump(env, sort_keys=False), encoding="utf-8")


def read_requirements(directory: Path) -> list[str]:
    path = directory / REQUIREMENTS
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")]


def python_version(directory: Path) -> str:
    """The model's Python version (``3.11.7``), or this interpreter's if it does not say."""
    path = directory / PYTHON_ENV
    if path.is_file():
        found = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if found.get("python"):
            return str(found["python"])
    return platform.python_version()
