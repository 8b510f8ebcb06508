"""``eventflow rerun RUN_ID``: attached to the main CLI in eventflow/cli.py."""

from __future__ import annotations

import json

import click

from eventflow.cli_common import tracking_uri_option
from eventflow.projects.cli import RUN_MANAGERS


@click.command()
@click.argument("run_id")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Change a parameter for the rerun (repeatable); the report then names it as a difference.")
@click.option("--env-manager", type=click.Choice(RUN_MANAGERS), default=None,
              help="How to build the environment. Default: the original's (a plain SDK run: virtualenv, "
                   "from its exact package list). local reuses this interpreter and installs nothing.")
@click.option("-v", "--version", default=None, metavar="REF",
              help="Rerun the code at another commit, tag or branch, everything else as recorded "
                   "(the recorded patch of a dirty tree is then left out): does this change alter the results?")
@tracking_uri_option("Where the original run is, and where the rerun goes.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of text.")
def rerun(run_id: str, settings: tuple[str, ...], env_manager: str | None, version: str | None, tracking_uri: str | None,
          as_json: bool) -> None:
    """Run a past run again, exactly, and report what was reproduced.

    Everything that went into RUN_ID is read back from its events: the code (git
    repository and commit, plus the recorded patch if the tree was dirty), the entry
    point's command (a project run) or the script's command line (a plain SDK run that
    recorded its commit, command and packages), its parameters, its Python version and
    the exact package list. The rerun is a new run in the same experiment, tagged
    eventflow.rerun_of=RUN_ID; its tag event names the original's creation as its cause.

    When it ends, a reproducibility report says which inputs were identical (commit,
    parameters, Python, packages, datasets' digests) and which differed; for each
    metric, the final values and the largest difference over the curve; for each
    artifact, whether its sha256 is the same. It is printed here, logged as
    reproducibility.json on the new run, and shown on the run's dashboard page.

    A run that lacks something a rerun needs (no commit, no command, a dirty tree with
    no patch, no package list) is refused, naming what is missing.

    Exits 0 when the rerun finished, 1 when it failed or could not start.

    \b
    Examples:
      eventflow rerun 0a1b2c3d4e5f...
      eventflow rerun 0a1b2c3d4e5f... --set lr=0.2 --env-manager local
      eventflow rerun 0a1b2c3d4e5f... --version main     # today's code, same inputs
      eventflow rerun 0a1b2c3d4e5f... --tracking-uri http://127.0.0.1:5000 --json
    """
    from eventflow.projects.environments import EnvironmentBuildError
    from eventflow.projects.reruns import rerun as do_rerun
    from eventflow.projects.sources import SourceError
    from eventflow.projects.spec import ProjectError
    from eventflow.validation import InvalidInput

    try:
        result = do_rerun(run_id, set=list(settings), env_manager=env_manager, tracking_uri=tracking_uri, version=version)
    except (InvalidInput, SourceError, ProjectError, EnvironmentBuildError) as error:  # RecipeIncomplete among them
        raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(json.dumps({"run_id": result.run_id, "status": result.status, "report": result.report}, indent=2))
    else:
        click.echo(f"Rerun of {run_id}: run {result.run_id} {result.status}\n")
        click.echo(result.text, nl=False)
    if result.status != "FINISHED":
        raise SystemExit(1)
