"""``eventflow registry ...``: register models, promote them with aliases, list what is there."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from eventflow.cli_common import tracking_uri_option
from eventflow.validation import InvalidInput


@contextmanager
def _client(ctx: click.Context) -> Iterator[Any]:
    from eventflow.sdk.client import Client

    client = Client(ctx.obj)
    try:
        yield client
    except InvalidInput as error:
        raise click.ClickException(f"{error.message} [{error.error_code}]") from None
    finally:
        client.close()


def _when(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M")


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    for row in [header, *rows]:
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def _pairs(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r}: write KEY=VALUE", param_hint="--tag")
        out[key] = text
    return out


@click.group("registry")
@tracking_uri_option()
@click.pass_context
def registry(ctx: click.Context, tracking_uri: str | None) -> None:
    """The model registry: registered models, their versions, aliases and stages.

    Every change is an event on the log (registered_model.*, model_version.*), with who
    made it; setting an alias is a promotion the deployer acts on.

    \b
    Examples:
      eventflow registry register runs:/<run_id>/model churn
      eventflow registry alias churn production 3
      eventflow registry versions churn
      eventflow registry models list --filter "name LIKE 'churn%'"
    """
    ctx.obj = tracking_uri


@registry.command()
@click.argument("source")
@click.argument("name")
@click.option("--description", default=None, help="A description of the new version.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A tag on the new version (repeatable).")
@click.pass_context
def register(ctx: click.Context, source: str, name: str, description: str | None, tags: tuple[str, ...]) -> None:
    """Register SOURCE as a new version of model NAME (created if new).

    SOURCE must be inside the artifact store: runs:/<run_id>/<path>, models:/m-<id>
    (a logged model), mlflow-artifacts:/<path>, or a path in the store.

    \b
    Examples:
      eventflow registry register runs:/4f1c.../model churn --tag validated=yes
      eventflow registry register models:/m-0a1b... churn --description "retrained on May data"
    """
    with _client(ctx) as client:
        version = client.register_model(source, name, tags=_pairs(tags), description=description)
    click.echo(f"registered {name} version {version['version']} from {version['source']}")


@registry.command()
@click.argument("name")
@click.argument("alias")
@click.argument("version", required=False)
@click.option("--delete", is_flag=True, help="Remove the alias instead.")
@click.pass_context
def alias(ctx: click.Context, name: str, alias: str, version: str | None, delete: bool) -> None:
    """Point ALIAS of model NAME at VERSION (a promotion), show it, or --delete it.

    \b
    Examples:
      eventflow registry alias churn production 3      # promote version 3
      eventflow registry alias churn production        # which version is it?
      eventflow registry alias churn production --delete
    """
    with _client(ctx) as client:
        if delete:
            client.delete_registered_model_alias(name, alias)
            click.echo(f"deleted alias {alias} of {name}")
        elif version is not None:
            client.set_registered_model_alias(name, alias, version)
            click.echo(f"{name}@{alias} -> version {version}")
        else:
            found = client.get_model_version_by_alias(name, alias)
            if found is None:
                raise click.ClickException(f"{name} has no alias {alias!r}: set one with `eventflow registry alias {name} {alias} VERSION`")
            click.echo(f"{name}@{alias} -> version {found['version']} ({found['source']})")


@registry.command()
@click.argument("name")
@click.argument("version")
@click.argument("stage", type=click.Choice(["None", "Staging", "Production", "Archived"], case_sensitive=False))
@click.option("--archive-existing", is_flag=True, help="Move the other versions in STAGE to Archived.")
@click.pass_context
def stage(ctx: click.Context, name: str, version: str, stage: str, archive_existing: bool) -> None:
    """Move VERSION of model NAME to STAGE (MLflow's legacy stages; prefer aliases).

    \b
    Example:
      eventflow registry stage churn 3 Production --archive-existing
    """
    with _client(ctx) as client:
        moved = client.transition_model_version_stage(name, version, stage, archive_existing)
    click.echo(f"{name} version {moved['version']} is in {moved['current_stage']}")


@registry.command()
@click.argument("name")
@click.pass_context
def versions(ctx: click.Context, name: str) -> None:
    """List the versions of model NAME, newest first, with stage, aliases and source.

    \b
    Example:
      eventflow registry versions churn
    """
    from eventflow.registry.api import quoted

    with _client(ctx) as client:
        if client.get_registered_model(name) is None:
            raise click.ClickException(f"no registered model named {name!r}: see `eventflow registry models list`")
        found = client.search_model_versions(f"name = '{quoted(name)}'")
    rows = [[v["version"], v["current_stage"], ",".join(v["aliases"]), _when(v["creation_timestamp"]), v.get("user_id", ""), v["source"]] for v in found]
    _table(["VERSION", "STAGE", "ALIASES", "CREATED", "BY", "SOURCE"], sorted(rows, key=lambda r: -int(r[0])))


@registry.group()
def models() -> None:
    """Registered models: list, rename, delete."""


@models.command("list")
@click.option("--filter", "filter_string", default=None, help="MLflow's filter: name LIKE 'churn%', tags.team = 'ml'.")
@click.pass_context
def models_list(ctx: click.Context, filter_string: str | None) -> None:
    """List registered models with their newest version and aliases.

    \b
    Examples:
      eventflow registry models list
      eventflow registry models list --filter "tags.team = 'ml'"
    """
    with _client(ctx) as client:
        found = client.search_registered_models(filter_string)
    rows = []
    for model in found:
        newest = max((int(v["version"]) for v in model["latest_versions"]), default=None)
        aliases = ",".join(f"{a['alias']}={a['version']}" for a in model["aliases"])
        rows.append([model["name"], "" if newest is None else str(newest), aliases, _when(model["last_updated_timestamp"]), model.get("description", "")])
    _table(["NAME", "LATEST", "ALIASES", "UPDATED", "DESCRIPTION"], rows)


@models.command("rename")
@click.argument("name")
@click.argument("new_name")
@click.pass_context
def models_rename(ctx: click.Context, name: str, new_name: str) -> None:
    """Rename model NAME to NEW_NAME; its versions and aliases follow."""
    with _client(ctx) as client:
        client.rename_registered_model(name, new_name)
    click.echo(f"renamed {name} to {new_name}")


@models.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def models_delete(ctx: click.Context, name: str, yes: bool) -> None:
    """Delete model NAME and all its versions (the log keeps their history)."""
    if not yes:
        click.confirm(f"Delete {name} and all its versions?", abort=True)
    with _client(ctx) as client:
        client.delete_registered_model(name)
    click.echo(f"deleted {name}")
