"""``eventflow deployments list|history``: what the deployer serves, and how it got there."""

from __future__ import annotations

import datetime
from typing import Any

import click

from eventflow.cli_common import tracking_uri_option


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _fetch(tracking_uri: str | None, target: str | None = None, max_results: int | None = None) -> dict[str, Any]:
    """The deployments from a server's route, or read from the log itself (a home or broker)."""
    if tracking_uri and tracking_uri.startswith(("http://", "https://")):
        return _remote(tracking_uri, target=target, max_results=max_results)
    from eventflow.deploy.history import deployments
    from eventflow.log import open_log
    from eventflow.sdk.stores import local_parts

    log = open_log(local_parts(tracking_uri)[0])
    try:
        return deployments(log, target, max_results or 100)
    finally:
        log.close()


def _remote(tracking_uri: str, **params: Any) -> dict[str, Any]:
    import httpx

    from eventflow.sdk.credentials import Credentials
    from eventflow.sdk.unreachable import reaching

    with reaching(tracking_uri):
        answer = httpx.get(tracking_uri.rstrip("/") + "/api/2.0/eventflow/deployments", auth=Credentials.from_env().auth(),
                           params={k: v for k, v in params.items() if v is not None}, timeout=30)
    if answer.status_code != 200:
        raise click.ClickException(f"the server answered {answer.status_code}: {answer.text[:300]}")
    return answer.json()


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    for row in [header, *rows]:
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


_tracking = tracking_uri_option()


@click.group("deployments")
def deployments() -> None:
    """What the deployer serves, and the history of its deployments.

    The deployer (eventflow consume deployer --target models:/NAME@ALIAS=PORT) rolls a
    target whenever its alias moves, emitting deployment.started, .succeeded, .failed
    and .rolled_back; these commands read those events.

    \b
    Examples:
      eventflow deployments list
      eventflow deployments history churn@production:8080
    """


@deployments.command("list")
@_tracking
def list_(tracking_uri: str | None) -> None:
    """Each target: the version it serves, and how its last deployment went."""
    found = _fetch(tracking_uri)["deployments"]
    if not found:
        click.echo("no deployments yet (start one with: eventflow consume deployer --target 'models:/NAME@ALIAS=PORT')")
        return
    _table(["TARGET", "SERVING", "LAST", "STATUS", "UPDATED", "ENDPOINT"],
           [[d["target"], d["serving_version"] or "-", d["last_version"], d["status"], _when(d["updated_time"]), d["endpoint"] or "-"]
            for d in found])
    for d in found:
        if d["status"] in ("FAILED", "ROLLED_BACK") and d["error"]:
            click.echo(f"{d['target']}: version {d['last_version']} {d['status'].lower()}: {d['error'][:300]}")


@deployments.command("history")
@click.argument("target", required=False)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="How many events, newest first.")
@_tracking
def history(target: str | None, limit: int, tracking_uri: str | None) -> None:
    """The deployment events of every target (or of TARGET), newest first."""
    found = _fetch(tracking_uri, target=target, max_results=limit)["history"]
    if not found:
        click.echo("no deployment events" + (f" for {target}" if target else ""))
        return
    _table(["TIME", "TARGET", "EVENT", "VERSION", "PREVIOUS", "DETAIL"],
           [[_when(e["time"]), e["target"], e["type"].removeprefix("deployment."), e["version"], e.get("previous_version") or "-",
             (e.get("error") or e.get("reason") or "")[:80]] for e in found])
