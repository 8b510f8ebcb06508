"""How soon a project's entry point starts on a cached environment: ``eventflow run``
beside ``mlflow run`` on the same project.

    python benchmarks/projects_bench.py [--repeat 5]

One project (an MLproject with a python_env.yaml that pins a small package) is run by
both tools with a virtual environment built from PyPI: the first run of each builds its
environment (timed, not compared); then each is run ``--repeat`` times on its cached
environment, timing from the command's start to the entry point's first line of output
(read from the pipe). MLflow runs with ``--env-manager virtualenv`` (which needs pyenv
and the virtualenv package), else ``uv``; the output says which. Each tool logs to its
local default kind of store: eventflow's embedded log, MLflow's SQLite store.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MARKER = "entry point: first line"

MLPROJECT = """\
name: bench
python_env: python_env.yaml
entry_points:
  main:
    parameters:
      alpha: {type: float, default: 0.5}
    command: "python main.py {alpha}"
"""
PYTHON_ENV = f"""\
python: "{platform.python_version()}"
build_dependencies:
  - pip
dependencies:
  - six==1.16.0
"""
MAIN = f"""\
print("{MARKER}", flush=True)
import sys
"""


def first_line_after(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(seconds to the entry point's first line, seconds to the command's exit)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first = None
    assert process.stdout is not None
    for line in process.stdout:
        if first is None and MARKER in line:
            first = time.perf_counter() - started
    code = process.wait()
    total = time.perf_counter() - started
    if code != 0 or first is None:
        raise SystemExit(f"{argv[:3]} failed (exit {code}) or printed no first line")
    return first, total


def mlflow_manager(env: dict[str, str]) -> str:
    has_virtualenv = subprocess.run([sys.executable, "-c", "import virtualenv"], capture_output=True).returncode == 0
    if shutil.which("pyenv", path=env["PATH"]) and has_virtualenv:
        return "virtualenv"
    return "uv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="projects-bench-"))
    project = scratch / "project"
    project.mkdir()
    (project / "MLproject").write_text(MLPROJECT)
    (project / "python_env.yaml").write_text(PYTHON_ENV)
    (project / "main.py").write_text(MAIN)
    bin_dir = str(Path(sys.executable).parent)
    base = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    for name in ("EVENTFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI", "EVENTFLOW_RUN_ID", "MLFLOW_RUN_ID"):
        base.pop(name, None)
    ours_env = {**base, "EVENTFLOW_HOME": str(scratch / "eventflow-home"), "EVENTFLOW_ENVS_DIR": str(scratch / "eventflow-envs")}
    theirs_env = {**base, "MLFLOW_TRACKING_URI": f"sqlite:///{scratch / 'mlflow.db'}", "MLFLOW_ENV_ROOT": str(scratch / "mlflow-envs")}
    manager = mlflow_manager(theirs_env)
    ours = [sys.executable, "-m", "eventflow", "run", str(project), "--env-manager", "uv" if _has_uv() else "virtualenv"]
    theirs = [sys.executable, "-m", "mlflow", "run", str(project), "--env-manager", manager]
    print(f"machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}", flush=True)
    print(f"eventflow: {' '.join(ours[1:])}", flush=True)
    print(f"mlflow:    {' '.join(theirs[1:])}  (MLflow's {manager} manager)", flush=True)
    for name, argv, env in (("eventflow run", ours, ours_env), ("mlflow run", theirs, theirs_env)):
        first, total = first_line_after(argv, env, scratch)
        print(f"{name:14s} first run, building its environment: first line after {first:.2f} s, done after {total:.2f} s", flush=True)
    results: dict[str, list[float]] = {}
    for i in range(args.repeat):
        for name, argv, env in (("eventflow run", ours, ours_env), ("mlflow run", theirs, theirs_env)):
            first, total = first_line_after(argv, env, scratch)
            results.setdefault(name, []).append(first)
            print(f"{name:14s} cached environment, run {i + 1}: first line after {first:.3f} s (done after {total:.2f} s)", flush=True)
    medians = {name: statistics.median(values) for name, values in results.items()}
    for name, value in medians.items():
        print(f"{name:14s} median time to the entry point's first line: {value:.3f} s", flush=True)
    print(f"ratio: mlflow run / eventflow run = {medians['mlflow run'] / medians['eventflow run']:.1f}x", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)


def _has_uv() -> bool:
    from eventflow.projects.environments import uv_binary

    return uv_binary() is not None


if __name__ == "__main__":
    main()
