"""``eventflow audit TARGET`` and ``eventflow registry alias-history MODEL ALIAS``.

Both read ``GET /api/2.0/eventflow/audit`` from a server (``--tracking-uri http://…``),
or, given a home directory (the default, ~/.eventflow), the log and views on disk.
"""

from __future__ import annotations

import json
from typing import Any

import click

from eventflow.cli_common import tracking_uri_option
from eventflow.validation import InvalidInput


def _local(home: str | None, query: dict[str, Any], answer: str = "audit") -> dict[str, Any]:
    """What the REST route would answer (``eventflow.audit.api.<answer>``), read from a home directory."""
    from eventflow.audit import api
    from eventflow.server.runtime import open_runtime

    runtime = open_runtime(home=home, run_consumers=False)
    try:
        return getattr(api, answer)(runtime, query)
    finally:
        runtime.log.close()
        runtime.engine.dispose()


def fetch(tracking_uri: str | None, query: dict[str, Any]) -> dict[str, Any]:
    """Every page of an audit, from a server or a home directory."""
    query = {k: v for k, v in query.items() if v not in (None, False)}
    if tracking_uri and tracking_uri.startswith(("http://", "https://")):
        return _remote(tracking_uri, query)
    try:
        return _local(tracking_uri, {**query, "max_results": 100_000})
    except InvalidInput as error:
        raise click.ClickException(f"{error.message} [{error.error_code}]") from None


def _get(tracking_uri: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
    """One GET to the server; a failure becomes a message that says what went wrong."""
    import httpx

    from eventflow.sdk.credentials import Credentials

    from eventflow.sdk.unreachable import reaching

    with reaching(tracking_uri):
        got = httpx.get(tracking_uri.rstrip("/") + path, params=params, auth=Credentials.from_env().auth(), timeout=120)
    if got.status_code != 200:
        try:
            message = got.json().get("message", got.text)
        except ValueError:
            message = got.text
        raise click.ClickException(f"the server answered {got.status_code}: {message[:500]}")
    return got.json()


def _remote(tracking_uri: str, query: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = {}
    entries: list[Any] = []
    lines: list[str] = []
    token = None
    while True:
        params = {**{k: str(v).lower() if isinstance(v, bool) else v for k, v in query.items()}, **({"page_token": token} if token else {})}
        answer = _get(tracking_uri, "/api/2.0/eventflow/audit", params)
        entries += answer["entries"]
        lines += answer["lines"]
        token = answer.get("next_page_token")
        if not token:
            break
    return {**answer, "entries": entries, "lines": lines}


_tracking = tracking_uri_option()


@click.command("audit")
@click.argument("target")
@click.option("--since", metavar="TIME", help="Only changes at or after TIME (ms since the epoch or ISO 8601).")
@click.option("--until", metavar="TIME", help="Only changes up to TIME.")
@click.option("--reverse", is_flag=True, help="Newest first.")
@click.option("--points", is_flag=True, help="List every metric event instead of a summary.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per change.")
@_tracking
def audit(target: str, since: str | None, until: str | None, reverse: bool, points: bool, as_json: bool, tracking_uri: str | None) -> None:
    """The history of one thing: every change, who made it (and whether the server
    checked who), from where, what it changed, its log position, and what it caused.

    \b
    TARGET is a run id, experiments:/ID or experiments:/NAME, models:/NAME,
    models:/NAME/VERSION, models:/NAME@ALIAS, a deployment target (NAME@ALIAS:PORT)
    or a webhook subscription id.
    \b
    Examples:
      eventflow audit models:/churn@production
      eventflow audit models:/churn --since 2026-03-03T00:00Z --json
    """
    found = fetch(tracking_uri, {"target": target, "since": since, "until": until, "reverse": reverse, "points": points})
    if as_json:
        for entry in found["entries"]:
            click.echo(json.dumps(entry, sort_keys=True))
        return
    click.echo(f"history of {found['target']}: {len(found['entries'])} change{'s' if len(found['entries']) != 1 else ''}")
    for text in found["lines"]:
        click.echo(text)


@click.command("alias-history")
@click.argument("model")
@click.argument("alias")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per move.")
@_tracking
def alias_history(model: str, alias: str, as_json: bool, tracking_uri: str | None) -> None:
    """Every version ALIAS of MODEL ever pointed at: from when, until when, and who moved it.

    \b
    Example:
      eventflow registry alias-history churn production
    """
    found = fetch(tracking_uri, {"target": f"models:/{model}@{alias}"})
    moves = alias_moves(found["entries"])
    if as_json:
        for move in moves:
            click.echo(json.dumps(move, sort_keys=True))
        return
    if not moves:
        click.echo(f"{model}@{alias} never pointed at a version")
        return
    for move in moves:
        trust = "" if move["authenticated"] else f" [{move['trust']}]"
        end = move["until_iso"] or "now"
        click.echo(f"version {move['version']}  {move['since_iso']} → {end}  set by {move['actor']}{trust}  @{move['position']}")


def alias_moves(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The spans of an alias from its history's entries: version, since, until, who set it."""
    moves: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for entry in entries:
        kind = entry["event_type"]
        if kind == "model_version.alias_set":
            version = int(entry["payload"]["version"])
            if current is not None:
                current.update(until=entry["time"], until_iso=entry["time_iso"])
            current = {"version": version, "since": entry["time"], "since_iso": entry["time_iso"], "until": None, "until_iso": None,
                       "actor": entry["actor"], "authenticated": entry["authenticated"], "trust": entry["trust"], "position": entry["position"]}
            moves.append(current)
        elif current is not None and (kind == "model_version.alias_deleted" or kind == "registered_model.deleted"
                                      or (kind == "model_version.deleted" and int(entry["payload"]["version"]) == current["version"])):
            current.update(until=entry["time"], until_iso=entry["time_iso"])
            current = None
    return moves


def snapshot(until: str, into: str | None, where: Any, kafka: str | None) -> None:
    """``views rebuild --until``: the views of one moment, into a database of their own."""
    import time

    from eventflow.audit.history import iso
    from eventflow.audit.snapshot import parse_until, rebuild_until
    from eventflow.log import open_log
    from eventflow.views.db import open_views

    if not into:
        raise click.UsageError("--until needs --into URL: a snapshot goes into a database of its own, never over the live views")
    log = open_log(f"kafka://{kafka}" if kafka else str(where.log_dir))
    try:
        moment = parse_until(log, until)
        engine = open_views(into)
        started = time.perf_counter()
        with click.progressbar(length=sum(sum(log.end_offsets(t).values()) for t in log.topics()), label="replaying") as bar:
            applied = rebuild_until(log, engine, moment, on_step=bar.update)
        engine.dispose()
    except InvalidInput as error:
        raise click.ClickException(error.message) from None
    finally:
        log.close()
    elapsed = time.perf_counter() - started
    last = f" (last event {moment.last[0].topic}[{moment.last[0].partition}]@{moment.last[1]})" if moment.last else ""
    click.echo(f"snapshot of {iso(moment.time)}{last}: {applied:,} events in {elapsed:.1f} s, into {into}")


def fetch_lineage(tracking_uri: str | None, query: dict[str, Any]) -> dict[str, Any]:
    """A lineage graph, from a server (``GET /api/2.0/eventflow/lineage``) or a home directory."""
    if tracking_uri and tracking_uri.startswith(("http://", "https://")):
        return _get(tracking_uri, "/api/2.0/eventflow/lineage", query)
    try:
        return _local(tracking_uri, query, answer="lineage_of")
    except InvalidInput as error:
        raise click.ClickException(f"{error.message} [{error.error_code}]") from None


@click.command("lineage")
@click.argument("uri")
@click.option("--direction", type=click.Choice(["both", "upstream", "downstream"]), default="both", show_default=True,
              help="Where it came from (upstream), where it went (downstream), or both.")
@click.option("--depth", type=click.IntRange(1, 50), default=10, show_default=True, help="How many edges away to follow.")
@click.option("--json", "as_json", is_flag=True, help="The graph as JSON (root, nodes, edges).")
@_tracking
def lineage(uri: str, direction: str, depth: int, as_json: bool, tracking_uri: str | None) -> None:
    """Where URI came from and where it went: datasets, commits, runs, logged models,
    model versions, aliases and deployments.

    \b
    URI is runs:/ID (or a bare run id), models:/NAME/VERSION, models:/NAME@ALIAS,
    datasets:/NAME[@DIGEST] or deployments:/TARGET.
    \b
    Examples:
      eventflow lineage models:/churn@production
      eventflow lineage datasets:/train --direction downstream --json
    """
    found = fetch_lineage(tracking_uri, {"uri": uri, "direction": direction, "depth": depth})
    if as_json:
        click.echo(json.dumps({k: found[k] for k in ("root", "nodes", "edges")}, sort_keys=True, indent=2))
        return
    for text in found["lines"]:
        click.echo(text)
