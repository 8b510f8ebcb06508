"""A self-contained Docker build context that serves one model.

Everything the image needs is inside the context: the (verified) model directory, its
pinned requirements, eventflow's own source and dependency list — so the build needs
PyPI for third-party packages only, never an eventflow release, and the image serves
exactly the code that wrote the model.
"""

from __future__ import annotations

import importlib
import shutil
from importlib import metadata
from pathlib import Path

from eventflow.models import environment

PORT = 8080
MODEL_DIR = "/opt/ml/model"
LIB_DIR = "/opt/eventflow/lib"

DOCKERFILE = """\
# Serves one model with `eventflow models serve` (MLflow's scoring protocol) on port {port}.
# Written by `eventflow models build-docker`; build with: docker build -t my-model .
FROM {base_image}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies first: this layer is reused while only the model changes.
COPY requirements/ /opt/eventflow/requirements/
RUN pip install -r /opt/eventflow/requirements/eventflow.txt -r /opt/eventflow/requirements/model.txt

# eventflow itself, from the source that wrote the model.
COPY lib/ {lib_dir}/
ENV PYTHONPATH={lib_dir}

COPY model/ {model_dir}/

RUN useradd --system --uid 10001 scorer
USER scorer
EXPOSE {port}
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/ping')"
CMD ["python", "-m", "eventflow", "models", "serve", "-m", "{model_dir}", "--host", "0.0.0.0", "--port", "{port}"]
"""


def _package_dir(name: str) -> Path:
    return Path(importlib.import_module(name).__path__[0])


def _copy_eventflow(target: Path) -> None:
    """The eventflow package as installed (schemas and consumers inside it, as in a wheel)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(_package_dir("eventflow"), target / "eventflow", ignore=ignore)
    for inner in ("schemas", "consumers"):
        if not (target / "eventflow" / inner).exists():
            shutil.copytree(_package_dir(f"eventflow.{inner}"), target / "eventflow" / inner, ignore=ignore)


def eventflow_requirements() -> list[str]:
    """eventflow's runtime dependencies (no extras), as its metadata declares them."""
    return [r.split(";")[0].strip() for r in metadata.requires("eventflow") or [] if "extra ==" not in r]


def write_context(model_dir: Path, output: Path, base_image: str | None = None) -> Path:
    output.mkdir(parents=True, exist_ok=True)
    shutil.copytree(model_dir, output / "model")
    _copy_eventflow(output / "lib")
    requirements = output / "requirements"
    requirements.mkdir()
    (requirements / "eventflow.txt").write_text("\n".join(eventflow_requirements()) + "\n", encoding="utf-8")
    # The model's own list names eventflow, which the context carries as source instead.
    model_requirements = [r for r in environment.read_requirements(model_dir) if not r.lower().startswith("eventflow")]
    (requirements / "model.txt").write_text("\n".join(model_requirements) + "\n", encoding="utf-8")
    if base_image is None:
        major_minor = ".".join(environment.python_version(model_dir).split(".")[:2])
        base_image = f"python:{major_minor}-slim"
    dockerfile = DOCKERFILE.format(base_image=base_image, port=PORT, lib_dir=LIB_DIR, model_dir=MODEL_DIR)
    (output / "Dockerfile").write_text(dockerfile, encoding="utf-8")
    return output
