"""The history of one thing: its events, oldest first, each said in words with who,
when, from where, its log position, and what it caused.

Positions come from the projector's index (``entity_events``), so a history reads only
its own events from the log (in stretches), never its whole topic. A model's history
follows renames back: what happened under an old name, up to the rename, is part of it.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, select

from eventflow.audit import index
from eventflow.audit.describe import Narrator, where, who
from eventflow.audit.reading import Located, read_positions
from eventflow.audit.targets import ALIAS, VERSION, Target
from eventflow.events import metric_points
from eventflow.log import Log
from eventflow.views.tables import entity_events

MAX_RENAMES = 1000  # renames followed back before giving up (a loop is impossible, a bug is not)


def iso(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def positions(c: Connection, entity_type: str, entity: str, before: tuple[str, int, int] | None = None) -> list[tuple[str, int, int]]:
    """The indexed positions of an entity's events (up to ``before``, same partition, when given)."""
    rows = c.execute(
        select(entity_events.c.topic, entity_events.c.partition, entity_events.c.offset)
        .where(entity_events.c.entity_type == entity_type, entity_events.c.entity == entity)
    ).all()
    out = [(r.topic, r.partition, r.offset) for r in rows]
    if before is not None:
        out = [p for p in out if p[0] != before[0] or p[1] != before[1] or p[2] <= before[2]]
    return out


def _model_events(c: Connection, log: Log, name: str) -> list[Located]:
    """A model's events under its name and, back through renames, its earlier names."""
    found: dict[tuple[str, int, int], Located] = {}
    todo: list[tuple[str, tuple[str, int, int] | None]] = [(name, None)]
    seen: set[tuple[str, Any]] = set()
    while todo and len(seen) < MAX_RENAMES:
        current, before = todo.pop()
        if (current, before) in seen:
            continue
        seen.add((current, before))
        wanted = [p for p in positions(c, index.MODEL, current, before) if p not in found]
        for located in read_positions(log, wanted):
            found[(located.topic, located.partition, located.offset)] = located
            e = located.event
            if e.type == "registered_model.renamed" and e.payload["new_name"] == current and e.payload["name"] != current:
                todo.append((e.payload["name"], (located.topic, located.partition, located.offset)))
    return list(found.values())


def _about(target: Target, located: Located) -> bool:
    """Whether a model's event belongs to a version's or an alias's history."""
    e, p = located.event, located.event.payload
    if e.type in ("registered_model.created", "registered_model.renamed", "registered_model.deleted"):
        return True
    if target.kind == VERSION:
        return "version" in p and str(p["version"]) == str(target.version)
    if e.type.startswith("deployment."):
        return p["target"].rpartition("@")[2].partition(":")[0] == target.alias
    return e.type.startswith("model_version.alias") and p.get("alias") == target.alias or e.type == "model_version.deleted"


def events_of(c: Connection, log: Log, target: Target) -> list[Located]:
    """Every event of the target's history, in log order (by time across partitions); for
    a version or an alias, all of its model's (the words need what came before), see
    ``_about`` for which are shown."""
    if target.kind in (index.MODEL, VERSION, ALIAS):
        located = _model_events(c, log, target.entity)
    else:
        located = read_positions(log, positions(c, target.kind, target.entity))
    if target.kind == index.DEPLOYMENT and target.model:
        # the alias moves the deployer acted on belong to a deployment's story
        alias = target.entity.rpartition("@")[2].partition(":")[0]
        located += [x for x in _model_events(c, log, target.model)
                    if x.event.type.startswith("model_version.alias") and x.event.payload.get("alias") == alias]
    # One event appended twice (a retried write) is one change.
    unique: dict[str, Located] = {}
    for item in sorted(located, key=lambda x: (x.event.time, x.topic, x.partition, x.offset)):
        unique.setdefault(item.event.event_id, item)
    return list(unique.values())


def _deliveries(c: Connection, event_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The webhook deliveries each event triggered (the dispatcher's outbox, in the views)."""
    from sqlalchemy import inspect

    if "webhook_deliveries" not in inspect(c).get_table_names():
        return {}
    from eventflow.webhooks.tables import deliveries

    out: dict[str, list[dict[str, Any]]] = {}
    for chunk in range(0, len(event_ids), 500):
        rows = c.execute(
            select(deliveries.c.event_id, deliveries.c.subscription_id, deliveries.c.delivery_id, deliveries.c.status,
                   deliveries.c.attempts, deliveries.c.last_status_code)
            .where(deliveries.c.event_id.in_(event_ids[chunk:chunk + 500]))
        ).all()
        for r in rows:
            out.setdefault(r.event_id, []).append({
                "kind": "webhook_delivery", "subscription_id": r.subscription_id, "delivery_id": r.delivery_id,
                "status": r.status, "attempts": r.attempts, "last_status_code": r.last_status_code,
                "what": f"webhook delivery {r.delivery_id} to subscription {r.subscription_id}: {r.status} after {r.attempts} attempt{'s' if r.attempts != 1 else ''}",
            })
    return out


def _deployment_links(entries: list[dict[str, Any]], located: list[Located]) -> None:
    """An alias move → the deployment that followed it (the deployer rolls a target when
    the alias it serves moves): the first deployment.started of that model, alias and
    version after the move, and how it ended (its correlation group)."""
    by_event = {item.event.event_id: item for item in located}
    deployments = [item for item in located if item.event.type.startswith("deployment.")]
    if not deployments:
        return
    outcome: dict[str, list[Located]] = {}
    for item in deployments:
        if item.event.correlation_id:
            outcome.setdefault(item.event.correlation_id, []).append(item)
    taken: set[str] = set()
    for entry in entries:
        item = by_event.get(entry["event_id"])
        if item is None or item.event.type != "model_version.alias_set":
            continue
        p = item.event.payload
        for d in deployments:
            dp = d.event.payload
            if d.event.type != "deployment.started" or d.event.event_id in taken or d.event.time < item.event.time:
                continue
            if dp["name"] == p["name"] and int(dp["version"]) == int(p["version"]) and dp["target"].rpartition("@")[2].partition(":")[0] == p["alias"]:
                taken.add(d.event.event_id)
                ends = [o.event.type.split(".")[1] for o in outcome.get(d.event.correlation_id or "", []) if o.event.type != "deployment.started"]
                entry["effects"].append({
                    "kind": "deployment", "event_id": d.event.event_id, "position": d.position, "target": dp["target"],
                    "what": f"deployment to {dp['target']} started {iso(d.event.time)} → {', '.join(ends) or 'in progress'}",
                })
                for e2 in entries:
                    if e2["event_id"] == d.event.event_id:
                        e2["caused_by"] = e2.get("caused_by") or {"event_id": item.event.event_id, "position": item.position, "inferred": True}
                break


def _entry(item: Located, what: str) -> dict[str, Any]:
    e = item.event
    return {
        "time": e.time, "time_iso": iso(e.time), **who(e), "from": where(e), "source": e.source, "event_type": e.type,
        "event_id": e.event_id, "what": what, "position": item.position, "correlation_id": e.correlation_id,
        "causation_id": e.causation_id, "effects": [],
        **({"payload": e.payload} if e.type != "run.metrics_logged" else {}),
    }


def _summarize_points(items: list[Located]) -> dict[str, Any]:
    points = [pt for item in items for pt in metric_points(item.event.payload)]
    keys = sorted({pt.key for pt in points})
    first, last = items[0], items[-1]
    entry = _entry(first, "")
    entry.update({
        "event_type": "run.metrics_logged", "events": len(items), "points": len(points), "metrics": keys,
        "position": first.position if len(items) == 1 else f"{first.position} … {last.position}",
        "what": f"logged {len(points):,} point{'s' if len(points) != 1 else ''} of {len(keys)} metric{'s' if len(keys) != 1 else ''} "
                f"({', '.join(keys[:5])}{', …' if len(keys) > 5 else ''}) between {iso(first.event.time)} and {iso(last.event.time)}"
                f" in {len(items):,} event{'s' if len(items) != 1 else ''}",
    })
    return entry


def history(c: Connection, log: Log, target: Target, *, since: int | None = None, until: int | None = None,
            points: bool = False, reverse: bool = False) -> list[dict[str, Any]]:
    """The target's history as entries (dicts), oldest first unless ``reverse``."""
    located = events_of(c, log, target)
    narrator = Narrator()
    entries: list[dict[str, Any]] = []
    metric_run: list[Located] = []

    def flush() -> None:
        if metric_run:
            if since is None or metric_run[-1].event.time >= since:
                entries.append(_summarize_points(metric_run))
            metric_run.clear()

    for item in located:
        what = narrator.describe(item.event)  # every event, so the state behind the words is right
        if until is not None and item.event.time > until:
            break
        if target.kind in (VERSION, ALIAS) and not _about(target, item):
            continue
        if item.event.type == "run.metrics_logged" and not points:
            metric_run.append(item)
            continue
        if item.event.type == "run.alive" and not points:
            continue  # the SDK's signs of life, every few seconds: shown with --points only
        flush()
        if since is not None and item.event.time < since:
            continue
        entries.append(_entry(item, what))
    flush()
    _archived_with(entries)
    effects = _deliveries(c, [e["event_id"] for e in entries])
    ids = {e["event_id"]: e for e in entries}
    for entry in entries:
        entry["effects"].extend(effects.get(entry["event_id"], []))
        cause = ids.get(entry["causation_id"] or "")
        if cause is not None:
            entry["caused_by"] = {"event_id": cause["event_id"], "position": cause["position"]}
    _deployment_links(entries, located)
    return list(reversed(entries)) if reverse else entries


def _archived_with(entries: list[dict[str, Any]]) -> None:
    """A stage transition with archive_existing_versions says how many others it archived
    (the API writes one more event per version it archives, in the same write)."""
    for i, entry in enumerate(entries):
        if entry["event_type"] != "model_version.stage_transitioned" or "→ Archived" in entry["what"]:
            continue
        count = 0
        for later in entries[i + 1:]:
            if later["event_type"] != "model_version.stage_transitioned" or later["time"] != entry["time"] or "→ Archived" not in later["what"]:
                break
            count += 1
        if count:
            entry["what"] += f", {count} other version{'s' if count != 1 else ''} archived"


def line(entry: dict[str, Any]) -> str:
    """One entry as one line of text."""
    trust = "" if entry["authenticated"] else f" [{entry['trust']}]"
    out = f"{entry['time_iso']}  {entry['actor']}{trust}  {entry['event_type']}  {entry['what']}  @{entry['position']}  ({entry['from']})"
    if entry.get("caused_by"):
        how = "after" if entry["caused_by"].get("inferred") else "caused by"
        out += f"  {how} {entry['caused_by']['position']}"
    for effect in entry["effects"]:
        out += f"\n    → {effect['what']}"
    return out


def lines(entries: Iterable[dict[str, Any]]) -> list[str]:
    return [line(e) for e in entries]
