"""The environment a project runs in: built once per content, reused after.

Managers: ``local`` (this interpreter, as it is), ``uv`` and ``virtualenv`` (a
python_env.yaml built into a virtual environment: with ``uv`` where it is installed —
the ``eventflow[projects]`` extra brings it — else with ``venv`` + ``pip``), ``conda``
(only where a conda is on PATH) and ``docker`` (a ``docker_env`` image, only where a
Docker engine answers). A built environment lives under ``EVENTFLOW_ENVS_DIR``
(``~/.cache/eventflow/envs``) in a directory named by the digest of everything it
installs, so it is rebuilt only when that changes, and its exact resolved package list
(``pip freeze`` after the build) is kept beside it to be recorded with every run.

How eventflow gets into the environment: the child must ``import eventflow`` to log,
and it must be *this* eventflow (the one that records the run and reads its events), not
whatever PyPI has under the name. So the running eventflow's own files are copied into
the environment (with a dist-info, so ``pip freeze`` lists it) and its dependencies are
installed pinned to the versions running here; the copy's content digest is part of the
environment's key, so a changed eventflow gives a new environment. A ``dependencies``
line naming eventflow (as in a past run's ``pip freeze``) is replaced by this copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from eventflow import __version__
from eventflow import environment_variables as env_vars

MANAGERS = ("local", "virtualenv", "uv", "conda", "docker")
RECORD_FILE = "eventflow-env.json"  # written last: its presence means the build finished

Progress = Callable[[str], None]


class EnvironmentBuildError(RuntimeError):
    """An environment that cannot be built here, saying why and what to do."""


@dataclass(frozen=True)
class EnvironmentSpec:
    """What to build. ``dependencies`` are pip requirement lines (pinned ones, from a
    past run's ``pip freeze``, rebuild that run's packages exactly); relative ``-r`` lines
    are read from ``directory``."""

    manager: str = "local"
    python: str | None = None
    build_dependencies: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()
    directory: Path | None = None
    conda_file: Path | None = None
    docker_env: dict | None = None


@dataclass(frozen=True)
class BuiltEnvironment:
    """A ready environment: run ``python`` (or anything in ``bin_dir``) inside it."""

    manager: str
    python: Path
    digest: str
    packages: str  # ``pip freeze`` of the environment
    python_version: str
    bin_dir: Path | None = None  # put first on PATH (None: the local interpreter's PATH as is)
    prefix: Path | None = None  # VIRTUAL_ENV
    cached: bool = False
    docker_image: str | None = None
    docker_env: dict | None = field(default=None, repr=False)

    def environ(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` with this environment activated (as ``source bin/activate`` would)."""
        out = dict(base)
        if self.bin_dir is not None:
            out["PATH"] = os.pathsep.join([str(self.bin_dir), base.get("PATH", "")])
        if self.prefix is not None:
            out["VIRTUAL_ENV"] = str(self.prefix)
            out.pop("PYTHONHOME", None)
            out.pop("PYTHONPATH", None)
        return out


def envs_root() -> Path:
    return Path(env_vars.ENVS_DIR.get() or "~/.cache/eventflow/envs").expanduser()


def check_manager(manager: str) -> str:
    if manager not in MANAGERS:
        raise EnvironmentBuildError(f"unknown environment manager {manager!r}: use one of {', '.join(MANAGERS)}")
    return manager


def build(spec: EnvironmentSpec, progress: Progress | None = None) -> BuiltEnvironment:
    """The environment ``spec`` describes, built now or taken from the cache."""
    say = progress or (lambda line: None)
    manager = check_manager(spec.manager)
    if manager == "local":
        return _local()
    if manager == "conda":
        return _conda(spec)
    if manager == "docker":
        return _docker(spec)
    return _virtual(spec, manager, say)


# -- local -------------------------------------------------------------------------------


def _local() -> BuiltEnvironment:
    from eventflow.sdk.environment import installed_packages

    packages = installed_packages()
    digest = hashlib.sha256(f"{sys.executable}\n{packages}".encode()).hexdigest()
    # ``python`` in the command is this interpreter: its directory goes first on PATH.
    return BuiltEnvironment("local", Path(sys.executable), digest, packages, platform.python_version(), Path(sys.executable).parent)


# -- virtualenv / uv ---------------------------------------------------------------------


def uv_binary() -> str | None:
    """``uv`` from the installed package (the projects extra), else from PATH."""
    try:
        import uv  # type: ignore[import-not-found]

        return uv.find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


_EVENTFLOW_LINE = re.compile(r"^\s*(-e\s+)?\S*eventflow(\s*[=<>!~@\[;]|\s*$)", re.IGNORECASE)


def requirement_lines(spec: EnvironmentSpec) -> list[str]:
    """The spec's dependency lines, without any that name eventflow (ours goes in)."""
    return [line.strip() for line in spec.dependencies if line.strip() and not _EVENTFLOW_LINE.match(line.strip())]


def _virtual(spec: EnvironmentSpec, manager: str, say: Progress) -> BuiltEnvironment:
    tool = uv_binary()
    if manager == "uv" and tool is None:
        raise EnvironmentBuildError("--env-manager uv needs uv: pip install 'eventflow[projects]' (or uv), or use --env-manager virtualenv")
    python = spec.python or platform.python_version()
    ours = _eventflow_files()
    deps = requirement_lines(spec)
    named = {_name(line) for line in deps}
    pins = [pin for pin in _eventflow_pins() if _name(pin) not in named]
    key = {
        "python": python, "build": list(spec.build_dependencies), "dependencies": deps, "eventflow_pins": pins,
        "eventflow": ours.digest, "requirements_files": _requirements_files(spec, deps),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    where = envs_root() / digest[:20]
    where.parent.mkdir(parents=True, exist_ok=True)
    with _locked(where.with_name(where.name + ".lock")):
        record = where / RECORD_FILE
        if record.is_file():
            facts = json.loads(record.read_text())
            return _built(manager, where, digest, facts, cached=True)
        if where.exists():
            shutil.rmtree(where)  # a build that died half-way
        started = time.monotonic()
        say(f"building the {manager} environment {digest[:12]} (python {python}) in {where}")
        try:
            interpreter = _create(where, python, tool, say)
            if spec.build_dependencies:
                say("installing build dependencies: " + " ".join(spec.build_dependencies))
                _install(interpreter, list(spec.build_dependencies), tool, spec.directory)
            ours.install_into(interpreter)
            if pins or deps:
                say(f"installing {len(deps)} dependencies (and eventflow's {len(pins)})")
                _install(interpreter, pins + deps, tool, spec.directory)
            packages = _freeze(interpreter, tool)
            version = _run([str(interpreter), "-c", "import platform; print(platform.python_version())"]).strip()
        except BaseException:
            shutil.rmtree(where, ignore_errors=True)
            raise
        facts = {"python": str(interpreter), "packages": packages, "python_version": version, "key": key}
        record.write_text(json.dumps(facts, indent=1))
        say(f"environment ready in {time.monotonic() - started:.1f} s")
        return _built(manager, where, digest, facts, cached=False)


def _built(manager: str, where: Path, digest: str, facts: dict, cached: bool) -> BuiltEnvironment:
    python = Path(facts["python"])
    return BuiltEnvironment(manager, python, digest, facts["packages"], facts["python_version"], python.parent, where, cached)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder per environment, across processes; the others wait and reuse it."""
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise EnvironmentBuildError(f"{Path(command[0]).name} {' '.join(command[1:4])} … failed (exit {done.returncode}):\n{tail}")
    return done.stdout


def _uv_env() -> dict[str, str]:
    # Use the system's certificates (a registry mirror may sign with a local CA) and never
    # download an interpreter: the Python a project asks for must be on this machine.
    return {"UV_NATIVE_TLS": os.environ.get("UV_NATIVE_TLS", "1"), "UV_PYTHON_DOWNLOADS": "never"}


def _create(where: Path, python: str, tool: str | None, say: Progress) -> Path:
    if tool is not None:
        _run([tool, "venv", "--quiet", "--python", python, str(where)], env=_uv_env())
        return where / "bin" / "python"
    interpreter = _find_python(python)
    _run([interpreter, "-m", "venv", str(where)])
    return where / "bin" / "python"


def _find_python(version: str) -> str:
    """An interpreter of ``version`` (3.11 or 3.11.7) on this machine, for venv."""
    if platform.python_version().startswith(version) or version == ".".join(platform.python_version_tuple()[:2]):
        return sys.executable
    short = ".".join(version.split(".")[:2])
    found = shutil.which(f"python{short}")
    if found is None:
        raise EnvironmentBuildError(
            f"the project asks for Python {version}, and there is no python{short} on PATH "
            f"(this is {platform.python_version()}); install it, or pip install uv to let uv find it"
        )
    return found


def _install(interpreter: Path, lines: list[str], tool: str | None, directory: Path | None) -> None:
    args: list[str] = []
    for line in lines:
        args += line.split(None, 1) if line.startswith(("-r ", "-c ", "-e ")) else [line]
    if tool is not None:
        _run([tool, "pip", "install", "--quiet", "--python", str(interpreter), *args], cwd=directory, env=_uv_env())
    else:
        _run([str(interpreter), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args], cwd=directory)


def _freeze(interpreter: Path, tool: str | None) -> str:
    if tool is not None:
        return _run([tool, "pip", "freeze", "--python", str(interpreter)], env=_uv_env())
    return _run([str(interpreter), "-m", "pip", "freeze", "--all"])


def _name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else requirement


def _requirements_files(spec: EnvironmentSpec, deps: list[str]) -> dict[str, str]:
    """Digests of the ``-r`` files the dependencies read: their content is in the key too."""
    out = {}
    for line in deps:
        if line.startswith("-r "):
            path = (spec.directory or Path.cwd()) / line[3:].strip()
            out[line] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
    return out


def _eventflow_pins() -> list[str]:
    """eventflow's dependencies at the versions running here (extras kept)."""
    pins = []
    for requirement in metadata.requires("eventflow") or []:
        if ";" in requirement:
            continue  # an extra's
        match = re.match(r"([A-Za-z0-9._-]+)(\[[^\]]*\])?", requirement)
        if not match:
            continue
        try:
            version = metadata.version(match.group(1))
        except metadata.PackageNotFoundError:
            pins.append(requirement)
            continue
        pins.append(f"{match.group(1)}{match.group(2) or ''}=={version}")
    return pins


@dataclass(frozen=True)
class _OurFiles:
    """The running eventflow's package files (schemas and consumers in place)."""

    trees: tuple[tuple[str, Path], ...]  # (path inside site-packages, source directory)
    digest: str

    def install_into(self, interpreter: Path) -> None:
        site = Path(_run([str(interpreter), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
        for inside, source in self.trees:
            shutil.copytree(source, site / inside, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True)
        info = site / f"eventflow-{__version__}.dist-info"
        info.mkdir(exist_ok=True)
        requires = "".join(f"Requires-Dist: {r}\n" for r in metadata.requires("eventflow") or [] if ";" not in r)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: eventflow\nVersion: {__version__}\n{requires}")
        (info / "INSTALLER").write_text("eventflow\n")
        (info / "RECORD").write_text("")


def _eventflow_files() -> _OurFiles:
    import eventflow
    import eventflow.consumers
    import eventflow.schemas

    trees = (
        ("eventflow", Path(eventflow.__file__).parent),
        ("eventflow/schemas", Path(next(iter(eventflow.schemas.__path__)))),
        ("eventflow/consumers", Path(next(iter(eventflow.consumers.__path__)))),
    )
    digest = hashlib.sha256()
    for inside, source in trees:
        for file in sorted(source.rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts and file.suffix != ".pyc" and "egg-info" not in str(file):
                digest.update(f"{inside}/{file.relative_to(source).as_posix()}\0".encode())
                digest.update(file.read_bytes())
    return _OurFiles(trees, digest.hexdigest())


# -- conda, docker -----------------------------------------------------------------------


def _conda(spec: EnvironmentSpec) -> BuiltEnvironment:
    conda = shutil.which("conda") or shutil.which("mamba")
    if conda is None:
        raise EnvironmentBuildError(
            "--env-manager conda needs conda on PATH, and there is none here: install Miniconda or Miniforge, "
            "or run the project with --env-manager virtualenv (or uv) if it has a python_env.yaml"
        )
    if spec.conda_file is None:
        raise EnvironmentBuildError("--env-manager conda needs the project's conda.yaml (conda_env in its MLproject)")
    digest = hashlib.sha256(spec.conda_file.read_bytes()).hexdigest()
    where = envs_root() / f"conda-{digest[:20]}"
    with _locked(where.with_name(where.name + ".lock")):
        if not (where / RECORD_FILE).is_file():
            shutil.rmtree(where, ignore_errors=True)
            _run([conda, "env", "create", "--quiet", "--prefix", str(where), "--file", str(spec.conda_file)])
            interpreter = where / "bin" / "python"
            packages = _run([str(interpreter), "-m", "pip", "freeze", "--all"])
            version = _run([str(interpreter), "-c", "import platform; print(platform.python_version())"]).strip()
            (where / RECORD_FILE).write_text(json.dumps({"python": str(interpreter), "packages": packages, "python_version": version}))
        facts = json.loads((where / RECORD_FILE).read_text())
    return _built("conda", where, digest, facts, cached=True)


def docker_engine_answers() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    done = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=20, check=False)
    return done.returncode == 0 and bool(done.stdout.strip())


def _docker(spec: EnvironmentSpec) -> BuiltEnvironment:
    if not spec.docker_env or not spec.docker_env.get("image"):
        raise EnvironmentBuildError("--env-manager docker needs a docker_env with an image in the project's MLproject")
    if not docker_engine_answers():
        raise EnvironmentBuildError(
            "this project runs in Docker (docker_env), and no Docker engine answers here "
            f"(`docker info` fails{'' if shutil.which('docker') else ': docker is not even installed'}): "
            "start the Docker daemon, or point DOCKER_HOST at one"
        )
    image = str(spec.docker_env["image"])
    done = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", image], capture_output=True, text=True, check=False)
    digest = done.stdout.strip() or hashlib.sha256(image.encode()).hexdigest()
    return BuiltEnvironment("docker", Path("python"), digest, "", "", None, None, True, image, spec.docker_env)
