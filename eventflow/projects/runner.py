"""Start a command in a checkout, inside a built environment, as a new tracked run.

``execute`` is the common ground of ``eventflow run`` (an MLproject entry point) and of a
rerun (any recorded command, MLproject or not): it creates the run with MLflow's project
tags and the project record on the log, stores the working tree's patch, and starts the
command as a child with ``EVENTFLOW_*`` and ``MLFLOW_*`` variables naming the run, so
eventflow code and MLflow code both log into it.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import tempfile
import weakref
from pathlib import Path
from typing import IO, Any, Callable

from eventflow import commands
from eventflow import validation as v
from eventflow.projects import tether
from eventflow.projects.environments import BuiltEnvironment
from eventflow.projects.loopback import LoopbackServer
from eventflow.projects.records import PATCH_ARTIFACT, ProjectRecord
from eventflow.projects.sources import Checkout
from eventflow.projects.submitted import OutputRelay, SubmittedRun
from eventflow.sdk import environment as sdk_environment
from eventflow.sdk.stores import Store, local_parts, open_store

DOCKER_WORKDIR = "/mlflow/projects/code"  # where MLflow mounts a project in its container


def resolve_tracking_uri(tracking_uri: str | None) -> str:
    """The target as the child must see it: an absolute home path for the embedded log,
    since the child runs in another directory."""
    from eventflow.config import Home, tracking_uri_from_env

    uri = tracking_uri or tracking_uri_from_env()
    if uri and uri.startswith(("http://", "https://", "kafka://")):
        return uri.rstrip("/")
    return str(Home.resolve(uri.removeprefix("file://") if uri else None).path)


def resolve_experiment(store: Store, experiment_id: str | None, experiment_name: str | None) -> str:
    """An experiment by id (it must exist) or by name (created if new); else the
    ``EVENTFLOW_EXPERIMENT_ID``/``MLFLOW_EXPERIMENT_ID`` one, else Default."""
    from eventflow.sdk.fluent import DEFAULT_EXPERIMENT_ID, DEFAULT_EXPERIMENT_NAME, _ensure_default_experiment

    if experiment_id is not None and experiment_name is not None:
        raise v.InvalidInput("give an experiment id or an experiment name, not both")
    experiment_id = experiment_id or (None if experiment_name else os.environ.get("EVENTFLOW_EXPERIMENT_ID") or os.environ.get("MLFLOW_EXPERIMENT_ID"))
    if experiment_id is not None:
        found = store.get_experiment(v.check_experiment_id(str(experiment_id)))
        if found is None:
            raise v.InvalidInput(f"No Experiment with id={experiment_id} exists", "RESOURCE_DOES_NOT_EXIST")
    elif experiment_name is not None and experiment_name != DEFAULT_EXPERIMENT_NAME:
        found = store.get_experiment_by_name(v.check_experiment_name(experiment_name))
        if found is None:
            new_id = commands.new_experiment_id()
            store.append([commands.create_experiment(new_id, experiment_name, store.experiment_artifact_location(new_id))])
            found = store.get_experiment_by_name(experiment_name)
    else:
        _ensure_default_experiment(store)
        found = store.get_experiment(DEFAULT_EXPERIMENT_ID)
    if found is None:
        raise RuntimeError("the experiment was created but is not visible: is the projector failing?")
    if found.get("lifecycle_stage") == "deleted":
        raise v.InvalidInput(f"experiment {found['name']!r} is deleted: restore it first, or choose another")
    return str(found["experiment_id"])


def project_tags(record: ProjectRecord, environment: BuiltEnvironment) -> dict[str, str]:
    """MLflow's tags for a project run, so MLflow's UI and clients see it as MLflow would."""
    tags = {
        "mlflow.user": sdk_environment.user(),
        "mlflow.source.type": "PROJECT",
        "mlflow.source.name": record.repo_url or record.uri if record.commit else record.uri,
        "mlflow.project.entryPoint": record.entry_point,
        "mlflow.project.env": environment.manager,
        "eventflow.command": record.command,
        "eventflow.python": environment.python_version,
        "eventflow.host": platform.node(),
    }
    if record.commit:
        tags["mlflow.source.git.commit"] = record.commit
        tags["eventflow.git.dirty"] = "true" if record.patch_sha256 else "false"
    if record.repo_url:
        tags["mlflow.source.git.repoURL"] = record.repo_url
    if record.version and record.commit and not record.commit.startswith(record.version):
        tags["mlflow.source.git.branch"] = record.version
    return tags


def execute(
    checkout: Checkout,
    command: str,
    environment: BuiltEnvironment,
    *,
    tracking_uri: str | None = None,
    experiment_id: str | None = None,
    experiment_name: str | None = None,
    run_name: str | None = None,
    tags: dict[str, Any] | None = None,
    project_record: ProjectRecord | None = None,
    echo: IO[str] | None = sys.stdout,
    tethered: bool = False,
) -> SubmittedRun:
    """Create a run for ``command`` and start it in ``checkout.directory``; returns at once.

    ``project_record`` is what goes on the log as the run's project (by default one made
    from the checkout and the command, entry point = the command); its parameters are
    logged as the run's params, as MLflow does."""
    record = project_record or ProjectRecord(
        uri=checkout.uri, entry_point=command, command=command, env_manager=environment.manager,
        subdirectory=checkout.subdirectory, commit=checkout.commit, repo_url=checkout.repo_url,
    )
    record = _with_environment(_with_patch(record, checkout), environment)
    target = resolve_tracking_uri(tracking_uri)
    run_id = commands.new_run_id()
    name = run_name or f"run-{run_id[:8]}"
    all_tags = {**project_tags(record, environment), "mlflow.runName": name, **{k: str(val) for k, val in (tags or {}).items()}}
    process: subprocess.Popen[bytes] | None = None
    output: OutputRelay | None = None
    written = False
    # MLflow's client speaks only HTTP: without a server, this home is served to it over loopback.
    loopback = None if target.startswith(("http://", "https://")) else LoopbackServer()
    known = experiment_id or (None if experiment_name else _experiment_from_env())
    if not target.startswith(("http://", "https://", "kafka://")) and (known or not experiment_name):
        # On the embedded log, opening the views costs seconds (imports, catching up): the
        # entry point starts now, and the SDK in it waits for the run written meanwhile
        # (as MLflow's client does: the loopback server answers once the run is written).
        process = _start(checkout, command, environment, target, run_id, str(known or DEFAULT_EXPERIMENT), loopback, tethered)
        output = OutputRelay(process, echo)  # seen on the terminal at once, stored once the run is
    store: Store | None = None
    try:
        store = open_store(target)
        experiment = resolve_experiment(store, experiment_id, experiment_name)
        if process is not None and experiment != str(known or DEFAULT_EXPERIMENT):
            raise RuntimeError(f"the run's experiment is {experiment}, not the {known or DEFAULT_EXPERIMENT} its entry point was told")
        # Served to MLflow's client, the run's files must go through the server (which records
        # each upload with its digest) rather than straight into the directory; the SDK's
        # LocalStore maps this form onto the same directory.
        artifact_uri = f"mlflow-artifacts:/{experiment}/{run_id}/artifacts" if loopback else store.artifact_root(experiment, run_id)
        events = [commands.create_run(run_id, experiment, run_name=name, user_id=all_tags["mlflow.user"],
                                      artifact_uri=artifact_uri, tags=all_tags)]
        if record.parameters:
            events.append(commands.log_params(run_id, record.parameters))
        events.append(commands.record_project(run_id, record.payload()))
        store.append(events)
        written = True
        if loopback is not None:
            loopback.start(*local_parts(target))
        if checkout.patch:
            _store_patch(store, run_id, artifact_uri, checkout.patch)
        if process is None:
            process = _start(checkout, command, environment, target, run_id, experiment, loopback, tethered)
            output = OutputRelay(process, echo)
    except BaseException as error:
        if process is not None:  # started early for a run that could not be written: stop it
            _stop(process)
        if output is not None:
            output.close()
        if loopback is not None:
            loopback.stop()
        if store is not None:
            interrupted = not isinstance(error, Exception)
            if written or (interrupted and _exists(store, run_id)):  # the run exists: it must not stay RUNNING
                store.append([commands.end_run(run_id, "KILLED" if interrupted else "FAILED",
                                               error_message=None if interrupted else f"{type(error).__name__}: {error}")])
            store.close()
        raise
    submitted = SubmittedRun(run_id, process, store, artifact_uri, output=output, on_end=_closer(store, loopback))
    if loopback is not None:
        loopback.before_end = submitted.store_output  # MLflow code ending the run freezes its files
    return submitted


def _closer(store: Store, loopback: LoopbackServer | None) -> Callable[[], None]:
    def close() -> None:
        if loopback is not None:
            loopback.stop()
        store.close()

    return close


DEFAULT_EXPERIMENT = "0"


def _exists(store: Store, run_id: str) -> bool:
    """Whether the run was written (a signal may have come in the middle of writing it)."""
    try:
        return store.get_run(run_id) is not None
    except Exception:
        return False


def _experiment_from_env() -> str | None:
    return os.environ.get("EVENTFLOW_EXPERIMENT_ID") or os.environ.get("MLFLOW_EXPERIMENT_ID") or None


def _stop(process: subprocess.Popen[bytes]) -> None:
    import signal

    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _with_patch(record: ProjectRecord, checkout: Checkout) -> ProjectRecord:
    if not checkout.patch:
        return record
    from dataclasses import replace

    return replace(record, patch_path=PATCH_ARTIFACT, patch_sha256=checkout.patch_sha256)


def _with_environment(record: ProjectRecord, environment: BuiltEnvironment) -> ProjectRecord:
    from dataclasses import replace

    return replace(record, env_manager=environment.manager, env_digest=environment.digest,
                   python_version=environment.python_version or record.python_version, packages=environment.packages)


def _store_patch(store: Store, run_id: str, artifact_uri: str, patch: bytes) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "patch.diff"
        path.write_bytes(patch)
        size, sha256 = store.upload_artifact(artifact_uri, path, PATCH_ARTIFACT)
        if not store.records_uploads:
            store.append([commands.log_artifact(run_id, PATCH_ARTIFACT, size, sha256)])


def child_environment(environment: BuiltEnvironment, target: str, run_id: str, experiment_id: str,
                      loopback: LoopbackServer | None = None) -> dict[str, str]:
    """The child's variables: the environment activated, and the run named for both SDKs."""
    env = environment.environ(dict(os.environ))
    env.update(
        EVENTFLOW_TRACKING_URI=target, EVENTFLOW_RUN_ID=run_id, EVENTFLOW_EXPERIMENT_ID=experiment_id,
        MLFLOW_RUN_ID=run_id, MLFLOW_EXPERIMENT_ID=experiment_id, PYTHONUNBUFFERED="1",
    )
    if target.startswith(("http://", "https://")):
        env["MLFLOW_TRACKING_URI"] = target
    elif loopback is not None:
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):  # they would win over the token
            env.pop(name, None)
        env.update(loopback.child_variables())
    else:
        env.pop("MLFLOW_TRACKING_URI", None)  # told nothing rather than something wrong
    return env


def _start(checkout: Checkout, command: str, environment: BuiltEnvironment, target: str, run_id: str, experiment_id: str,
           loopback: LoopbackServer | None = None, tethered: bool = False) -> subprocess.Popen[bytes]:
    env = child_environment(environment, target, run_id, experiment_id, loopback)
    if environment.manager == "docker":
        argv = docker_argv(checkout, command, environment, env)
    else:
        argv = ["bash", "-c", command]
    if not tethered:
        return subprocess.Popen(
            argv, cwd=checkout.directory, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,  # its own process group: cancel() ends all of it
        )
    argv, read, write = tether.tethered(argv)  # this process dying ends the run too
    try:
        process = subprocess.Popen(
            argv, cwd=checkout.directory, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(read,),
        )
    except BaseException:
        os.close(write)
        raise
    finally:
        os.close(read)
    weakref.finalize(process, os.close, write)  # the run's tie: held as long as it is watched
    return process


def docker_argv(checkout: Checkout, command: str, environment: BuiltEnvironment, env: dict[str, str]) -> list[str]:
    """``docker run`` as MLflow does it: the project mounted at /mlflow/projects/code, the
    run's variables passed, docker_env's volumes and environment added."""
    spec = environment.docker_env or {}
    argv = ["docker", "run", "--rm", "--network", "host", "-v", f"{checkout.directory}:{DOCKER_WORKDIR}", "-w", DOCKER_WORKDIR]
    for name in ("EVENTFLOW_TRACKING_URI", "EVENTFLOW_RUN_ID", "EVENTFLOW_EXPERIMENT_ID", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        if name in env:
            argv += ["-e", f"{name}={env[name]}"]
    for volume in spec.get("volumes") or []:
        argv += ["-v", volume]
    for item in spec.get("environment") or []:
        argv += ["-e", f"{item[0]}={item[1]}" if isinstance(item, list) else item]
    return [*argv, str(environment.docker_image), "bash", "-c", command]


def quote_command(argv: list[str]) -> str:
    return shlex.join(argv)
