"""``eventflow.projects.run``: MLflow's ``mlflow.projects.run``, on eventflow's log.

fetch the code → read its MLproject → expand the entry point's command → build (or
reuse) the environment → start it as a tracked run. Every bad argument is refused
before a run exists, so nothing of a request that cannot run reaches the log.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from eventflow.projects import environments, sources, spec
from eventflow.projects.environments import EnvironmentSpec
from eventflow.projects.records import ProjectRecord
from eventflow.projects.runner import execute
from eventflow.projects.submitted import SubmittedRun


def default_manager(project: spec.Project) -> str:
    """MLflow's default: the project's own kind of environment (uv for a python_env where
    uv is installed, else virtualenv), local when it declares none."""
    if project.env_type == "docker_env":
        return "docker"
    if project.env_type == "conda_env":
        return "conda"
    if project.env_file is None:
        return "local"
    return "uv" if environments.uv_binary() else "virtualenv"


def environment_spec(project: spec.Project, manager: str) -> EnvironmentSpec:
    """What to build for ``project`` with ``manager`` (conda.yaml's pip list for a
    virtualenv, as MLflow does when asked to run a conda project without conda)."""
    if manager == "docker" and project.env_type != "docker_env":
        raise spec.ProjectError("--env-manager docker needs a docker_env in the project's MLproject")
    if manager != "docker" and project.env_type == "docker_env":
        raise spec.ProjectError(f"the project runs in Docker (docker_env); --env-manager {manager} cannot run it")
    if manager in ("local", "docker"):
        return EnvironmentSpec(manager, directory=project.directory, docker_env=project.docker_env)
    if manager == "conda":
        return EnvironmentSpec(manager, directory=project.directory, conda_file=project.env_file)
    if project.env_file is None:
        return EnvironmentSpec(manager, directory=project.directory)
    if project.env_type == "conda_env":
        python_env = _python_env_of_conda(project.env_file)
    else:
        python_env = spec.load_python_env(project.env_file)
    return EnvironmentSpec(manager, python_env.python, python_env.build_dependencies, python_env.dependencies, project.directory)


def _python_env_of_conda(path: Any) -> spec.PythonEnv:
    import yaml

    document = yaml.safe_load(path.read_text()) or {}
    python, pip = None, []
    for item in document.get("dependencies") or []:
        if isinstance(item, str) and item.split("=")[0].strip() == "python" and "=" in item:
            python = item.split("=", 1)[1].lstrip("=")
        elif isinstance(item, dict) and "pip" in item:
            pip = list(item["pip"])
    return spec.PythonEnv(python, (), tuple(pip))


def run(
    uri: str,
    entry_point: str = "main",
    parameters: dict[str, Any] | None = None,
    version: str | None = None,
    env_manager: str | None = None,
    experiment_name: str | None = None,
    experiment_id: str | None = None,
    run_name: str | None = None,
    synchronous: bool = True,
    tracking_uri: str | None = None,
    build_only: bool = False,
    tags: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    tethered: bool = False,
) -> SubmittedRun | environments.BuiltEnvironment:
    """Run a project's entry point as a tracked run; with ``synchronous`` wait for its end.
    ``tethered``: the run ends if this process dies (kill -9 included), for a caller that
    owns its runs (a job agent); otherwise an asynchronous run outlives it, as MLflow's does.

    A synchronous run that ends other than FINISHED raises ``ExecutionError`` (as MLflow
    raises ExecutionException); SIGTERM or Ctrl-C while waiting cancel it (KILLED).
    ``build_only`` builds the environment and returns it, starting nothing."""
    say = progress or _stderr
    with sigterm_raises(synchronous):
        return _run(uri, entry_point, parameters, version, env_manager, experiment_name, experiment_id, run_name,
                    synchronous, tracking_uri, build_only, tags, say, tethered)


def _run(uri: str, entry_point: str, parameters: dict[str, Any] | None, version: str | None, env_manager: str | None,
         experiment_name: str | None, experiment_id: str | None, run_name: str | None, synchronous: bool,
         tracking_uri: str | None, build_only: bool, tags: dict[str, Any] | None,
         say: Callable[[str], None], tethered: bool = False) -> SubmittedRun | environments.BuiltEnvironment:
    if env_manager is not None:
        environments.check_manager(env_manager)
    if experiment_id is not None and experiment_name is not None:
        raise spec.ProjectError("give an experiment id or an experiment name, not both")
    checkout = sources.fetch(uri, version)
    try:
        project = spec.load_project(checkout.directory)
        point = project.entry_point(entry_point)
        declared, extra = point.resolve(parameters)
        command = point.command_for(parameters)
        manager = env_manager or default_manager(project)
        built = environments.build(environment_spec(project, manager), progress=say)
        if build_only:
            checkout.cleanup()
            return built
        record = ProjectRecord(
            uri=str(uri), entry_point=entry_point, command=command, env_manager=manager, name=project.name,
            subdirectory=checkout.subdirectory, version=version, commit=checkout.commit, repo_url=checkout.repo_url,
            parameters={**declared, **extra},
        )
        submitted = execute(checkout, command, built, tracking_uri=tracking_uri, experiment_id=experiment_id,
                            experiment_name=experiment_name, run_name=run_name, tags=tags, project_record=record,
                            tethered=tethered)
    except Terminated:
        checkout.cleanup()
        raise SystemExit(128 + signal.SIGTERM) from None
    except BaseException:
        checkout.cleanup()
        raise
    try:
        cleanup_after(submitted, checkout)
        say(f"run {submitted.run_id} started: {command}")
        if synchronous:
            wait_cancelling_on_signals(submitted)
    except Terminated:
        submitted.cancel()
        raise SystemExit(128 + signal.SIGTERM) from None
    if synchronous and submitted.get_status() != "FINISHED":
        raise ExecutionError(f"run {submitted.run_id} {submitted.get_status()}: {submitted.error or 'cancelled'}", submitted)
    return submitted


class ExecutionError(RuntimeError):
    """A synchronous project run that did not finish; ``submitted`` is the run."""

    def __init__(self, message: str, submitted: SubmittedRun):
        super().__init__(message)
        self.submitted = submitted


def cleanup_after(submitted: SubmittedRun, checkout: sources.Checkout) -> None:
    if checkout.temporary:
        threading.Thread(target=lambda: (submitted.wait(), checkout.cleanup()), daemon=True).start()


@contextlib.contextmanager
def sigterm_raises(active: bool = True) -> Iterator[None]:
    """While a synchronous run is set up and waited for, SIGTERM raises ``Terminated``
    (as Ctrl-C raises KeyboardInterrupt), so that the entry point is stopped and the run
    ended KILLED instead of the launcher vanishing and leaving the run RUNNING."""
    if not active or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        raise Terminated

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def wait_cancelling_on_signals(submitted: SubmittedRun) -> None:
    """Wait for the run; SIGTERM or Ctrl-C cancel it (the child's group is terminated and
    the run ends KILLED), then the process ends by the signal as the caller expects."""
    with sigterm_raises():
        try:
            while True:
                try:
                    submitted.wait(0.5)
                    return
                except TimeoutError:
                    continue
        except (KeyboardInterrupt, Terminated) as stop:
            _stderr(f"stopping run {submitted.run_id}: terminating its entry point")
            submitted.cancel()
            if isinstance(stop, KeyboardInterrupt):
                raise
            raise SystemExit(128 + signal.SIGTERM) from None


class Terminated(BaseException):
    """SIGTERM, raised where the launcher can still stop the entry point and end the run."""


def _stderr(line: str) -> None:
    print(f"eventflow: {line}", file=sys.stderr, flush=True)
