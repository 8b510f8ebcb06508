"""``eventflow run``: run a project's entry point as a tracked run (MLflow's ``mlflow run``)."""

from __future__ import annotations

import sys

import click

from eventflow.cli_common import tracking_uri_option

RUN_MANAGERS = ("local", "virtualenv", "uv", "conda", "docker")


def _parameters(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE (e.g. -P alpha=0.5)", param_hint="-P/--param-list")
        if name in out:
            raise click.BadParameter(f"{name!r} is given twice", param_hint="-P/--param-list")
        out[name] = value
    return out


@click.command("run")
@click.argument("uri")
@click.option("-e", "--entry-point", default="main", show_default=True,
              help="The entry point to run: a name from the MLproject, or a .py / .sh file of the project.")
@click.option("-P", "--param-list", "params", multiple=True, metavar="NAME=VALUE",
              help="A parameter of the entry point (repeat for several). Undeclared ones are passed as --NAME VALUE.")
@click.option("-v", "--version", default=None, help="For a git URI (or a local repository): the commit, tag or branch to run.")
@click.option("--env-manager", type=click.Choice(RUN_MANAGERS), default=None,
              help="How to build the environment. Default: the project's own (uv/virtualenv for a python_env, conda, "
                   "docker), local without one.")
@click.option("--experiment-name", default=None, help="Log the run into this experiment (created if new).")
@click.option("--experiment-id", default=None, help="Log the run into the experiment with this id.")
@click.option("--run-name", default=None, help="A name for the new run.")
@click.option("--build-only", is_flag=True, help="Build (or check) the environment and stop: no run is created.")
@click.option("--detach", is_flag=True, help="Start the run and return at once, printing its id; the run goes on "
                                              "in a background process that ends it.")
@tracking_uri_option("Where to log the run.")
def run_command(uri: str, entry_point: str, params: tuple[str, ...], version: str | None, env_manager: str | None,
                experiment_name: str | None, experiment_id: str | None, run_name: str | None, build_only: bool,
                detach: bool, tracking_uri: str | None) -> None:
    """Run a project: a directory or a git URL with an MLproject file (MLflow's format,
    unchanged), or a plain .py/.sh script of it.

    \b
    Write an MLproject beside your code:
        name: churn
        python_env: python_env.yaml
        entry_points:
          main:
            parameters:
              alpha: {type: float, default: 0.5}
              data: path
            command: "python train.py --alpha {alpha} --data {data}"

    \b
    Then run it:
        eventflow run . -P data=train.csv -P alpha=0.3
        eventflow run https://github.com/me/churn.git#model -v v1.2 --env-manager uv
        eventflow run . -e evaluate.py --experiment-name churn --detach

    The code is pinned to its exact commit (a dirty working tree is stored as a patch,
    project/patch.diff), the environment is built once per content under
    ~/.cache/eventflow/envs and reused, and the entry point logs with eventflow or
    mlflow into the new run (EVENTFLOW_RUN_ID / MLFLOW_RUN_ID are set for it). Its output
    is shown here and kept as project/stdout.txt. Exit 0 ends the run FINISHED, any other
    code FAILED; Ctrl-C or SIGTERM terminate it and end it KILLED.
    """
    from eventflow.projects import EnvironmentBuildError, ExecutionError, ProjectError, SourceError
    from eventflow.projects import launch
    from eventflow.validation import InvalidInput

    if experiment_name is not None and experiment_id is not None:
        raise click.UsageError("give --experiment-name or --experiment-id, not both")
    if detach and build_only:
        raise click.UsageError("--detach starts a run and --build-only starts none: give one of them")
    parameters = _parameters(params)
    try:
        if detach:
            run_id = _detach(uri, entry_point, parameters, version, env_manager, experiment_name, experiment_id,
                             run_name, tracking_uri)
            click.echo(run_id)
            return
        outcome = launch.run(uri, entry_point, parameters, version=version, env_manager=env_manager,
                             experiment_name=experiment_name, experiment_id=experiment_id, run_name=run_name,
                             synchronous=True, tracking_uri=tracking_uri, build_only=build_only)
    except ExecutionError as failed:
        click.echo(f"eventflow: {failed}", err=True)
        sys.exit(1)
    except (ProjectError, SourceError, EnvironmentBuildError, InvalidInput) as refused:
        raise click.ClickException(str(refused)) from None
    if build_only:
        click.echo(f"environment {outcome.digest[:12]} ({outcome.manager}, python {outcome.python_version}): {outcome.python}")
    else:
        click.echo(f"eventflow: run {outcome.run_id} FINISHED", err=True)


def _detach(uri: str, entry_point: str, parameters: dict[str, str], version: str | None, env_manager: str | None,
            experiment_name: str | None, experiment_id: str | None, run_name: str | None, tracking_uri: str | None) -> str:
    """Start the launcher as a background process and return once its run exists.

    Only the child's parent can read its exit status, so the launcher itself goes to the
    background (``eventflow.projects.detached``, in its own session, so the terminal's
    Ctrl-C does not reach it): it creates the run, says its id on a pipe, and stays to end
    the run when the entry point exits. SIGTERM to it cancels the run (KILLED)."""
    import json
    import os
    import subprocess

    read, write = os.pipe()
    argv = [sys.executable, "-m", "eventflow.projects.detached", str(write), uri, entry_point]
    env = dict(os.environ)

    env["EVENTFLOW_DETACHED_REQUEST"] = json.dumps({
        "parameters": parameters, "version": version, "env_manager": env_manager, "experiment_name": experiment_name,
        "experiment_id": experiment_id, "run_name": run_name, "tracking_uri": tracking_uri,
    })
    process = subprocess.Popen(argv, pass_fds=(write,), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    os.close(write)
    with os.fdopen(read) as answers:
        answer = answers.readline().strip()
    if not answer.startswith("run "):
        process.wait()
        raise click.ClickException(answer.removeprefix("error ") or f"the background launcher exited with code {process.returncode}")
    click.echo(f"eventflow: the run goes on in the background (launcher pid {process.pid}; `kill {process.pid}` cancels it); "
               "its output is kept as project/stdout.txt", err=True)
    return answer.removeprefix("run ")
