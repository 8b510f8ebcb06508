"""Environments built from PyPI with uv (or venv + pip), cached by what they install."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from eventflow.projects import environments
from eventflow.projects.environments import EnvironmentBuildError, EnvironmentSpec, build

SMALL = EnvironmentSpec("uv", None, ("pip",), ("six==1.16.0",))


@pytest.fixture(scope="module")
def built():
    return build(SMALL)


def test_an_environment_is_built_with_its_dependencies_and_this_eventflow(built):
    assert "six==1.16.0" in built.packages.splitlines()
    assert "eventflow==" in built.packages  # listed, as pip freeze lists it
    done = subprocess.run(
        [str(built.python), "-c", "import eventflow, six, sys; print(eventflow.__file__, six.__version__, sys.prefix)"],
        capture_output=True, text=True, check=True, env=built.environ(dict(os.environ)), cwd=built.prefix,
    )
    path, six_version, prefix = done.stdout.split()
    assert six_version == "1.16.0"
    assert path.startswith(prefix)  # eventflow is the environment's own copy, not this tree's
    assert built.python.is_relative_to(environments.envs_root())


def test_the_same_content_is_taken_from_the_cache_and_a_change_rebuilds(built):
    before = built.python.lstat().st_mtime_ns
    again = build(SMALL)
    assert again.cached and again.digest == built.digest and again.python == built.python
    assert built.python.lstat().st_mtime_ns == before  # nothing rebuilt (how fast: benchmarks/projects_bench.py)
    other = build(EnvironmentSpec("uv", None, ("pip",), ("six==1.15.0",)))
    assert other.digest != built.digest
    assert "six==1.15.0" in other.packages.splitlines()


def test_a_past_run_s_frozen_list_rebuilds_it_with_this_eventflow(built):
    """What rerun does: the exact list pip froze, an eventflow line included."""
    frozen = tuple(line for line in built.packages.splitlines() if line)
    assert any(line.startswith("eventflow==") for line in frozen)
    rebuilt = build(EnvironmentSpec("uv", built.python_version, (), frozen + ("eventflow @ file:///nowhere",)))
    assert sorted(rebuilt.packages.splitlines()) == sorted(built.packages.splitlines())


def test_managers_that_cannot_work_here_say_why():
    with pytest.raises(EnvironmentBuildError, match="unknown environment manager 'pipenv'"):
        build(EnvironmentSpec("pipenv"))
    if shutil.which("conda") is None:
        with pytest.raises(EnvironmentBuildError, match="needs conda on PATH"):
            build(EnvironmentSpec("conda"))
    if not environments.docker_engine_answers():
        with pytest.raises(EnvironmentBuildError, match="no Docker engine answers"):
            build(EnvironmentSpec("docker", docker_env={"image": "python:3.11"}))


def test_an_unknown_package_fails_the_build_and_leaves_nothing_behind():
    spec = EnvironmentSpec("uv", None, (), ("eventflow-no-such-package-xyz==1.0",))
    root = environments.envs_root()
    root.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in root.iterdir() if p.is_dir()}
    with pytest.raises(EnvironmentBuildError, match="failed"):
        build(spec)
    assert {p.name for p in root.iterdir() if p.is_dir()} == before  # the half-built directory is gone


def test_local_is_this_interpreter():
    import sys

    local = build(EnvironmentSpec("local"))
    assert local.python == environments.Path(sys.executable)
    assert local.manager == "local" and "eventflow==" in local.packages


def test_without_uv_a_virtualenv_is_built_with_venv_and_pip(monkeypatch, tmp_path):
    """The fallback a machine without uv takes: the standard library's venv, then pip from
    PyPI, the same packages recorded as with uv."""
    monkeypatch.setattr(environments, "uv_binary", lambda: None)  # as on a machine without uv
    monkeypatch.setenv("EVENTFLOW_ENVS_DIR", str(tmp_path / "envs"))  # built here, not taken from the cache
    with pytest.raises(EnvironmentBuildError, match="--env-manager uv needs uv"):
        build(SMALL)
    built = build(EnvironmentSpec("virtualenv", None, ("pip",), ("six==1.16.0",)))
    assert not built.cached and built.python.is_relative_to(tmp_path / "envs")
    assert (built.prefix / "pyvenv.cfg").read_text().count("uv =") == 0  # venv made it, not uv
    assert "six==1.16.0" in built.packages.splitlines() and "eventflow==" in built.packages
    done = subprocess.run([str(built.python), "-m", "pip", "--version"], capture_output=True, text=True, check=True)
    assert str(built.prefix) in done.stdout  # the environment's own pip
