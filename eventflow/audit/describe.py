"""Events → words: what each change did, said as a person would (``alias production:
version 3 → 4``, ``param lr = 0.01``, ``stage Staging → Production``).

Some changes are only meaningful against what came before (where an alias pointed, a
version's stage), so a ``Narrator`` walks the history in order and remembers that much.
"""

from __future__ import annotations

from typing import Any

from eventflow.events import Event, metric_points

MAX_LISTED = 5  # tags or params listed by name before "and N more"


def _pairs(items: list[dict[str, Any]], sep: str = " = ") -> str:
    shown = ", ".join(f"{item['key']}{sep}{_short(item['value'])}" for item in items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def _short(value: Any, width: int = 80) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


class Narrator:
    """Describes the events of one history, oldest first."""

    def __init__(self) -> None:
        self.aliases: dict[tuple[str, str], int] = {}
        self.stages: dict[tuple[str, int], str] = {}
        self.serving: dict[str, Any] = {}

    def describe(self, e: Event) -> str:
        p, kind = e.payload, e.type
        method = getattr(self, "_" + kind.replace(".", "_"), None)
        if method is not None:
            return method(p)
        return kind.split(".", 1)[1].replace("_", " ")

    # -- experiments ---------------------------------------------------------------------------
    def _experiment_created(self, p: dict[str, Any]) -> str:
        return f"experiment {p['name']!r} created (id {p['experiment_id']})"

    def _experiment_renamed(self, p: dict[str, Any]) -> str:
        return f"experiment renamed to {p['new_name']!r}"

    def _experiment_deleted(self, p: dict[str, Any]) -> str:
        return "experiment deleted"

    def _experiment_restored(self, p: dict[str, Any]) -> str:
        return "experiment restored"

    def _experiment_tag_set(self, p: dict[str, Any]) -> str:
        return f"tag {p['key']} = {_short(p['value'])}"

    def _experiment_tag_deleted(self, p: dict[str, Any]) -> str:
        return f"tag {p['key']} deleted"

    # -- runs ----------------------------------------------------------------------------------
    def _run_created(self, p: dict[str, Any]) -> str:
        parent = f", child of {p['parent_run_id']}" if p.get("parent_run_id") else ""
        return f"run {p['run_name']!r} ({p['run_id']}) created in experiment {p['experiment_id']}{parent}"

    def _run_finished(self, p: dict[str, Any]) -> str:
        return "run finished"

    def _run_failed(self, p: dict[str, Any]) -> str:
        return "run failed"

    def _run_killed(self, p: dict[str, Any]) -> str:
        return "run killed"

    def _run_alive(self, p: dict[str, Any]) -> str:
        return f"signs of life (every {p['every_ms'] / 1000:g} s)"

    def _run_crashed(self, p: dict[str, Any]) -> str:
        return f"run crashed: no sign of life for {p['timeout_ms'] / 1000:g} s (reads FAILED to MLflow clients)"

    def _run_stalled(self, p: dict[str, Any]) -> str:
        return f"run stalled: alive, and no new metric for {p['timeout_ms'] / 1000:g} s"

    def _run_stall_ended(self, p: dict[str, Any]) -> str:
        return "stall ended: a new metric"

    def _run_stop_requested(self, p: dict[str, Any]) -> str:
        return "stop requested" + (f": {_short(p['reason'])}" if p.get("reason") else "")

    def _run_renamed(self, p: dict[str, Any]) -> str:
        return f"run renamed to {p['run_name']!r}"

    def _run_deleted(self, p: dict[str, Any]) -> str:
        return "run deleted"

    def _run_restored(self, p: dict[str, Any]) -> str:
        return "run restored"

    def _run_params_logged(self, p: dict[str, Any]) -> str:
        return "param " + _pairs(p["params"]) if len(p["params"]) == 1 else "params " + _pairs(p["params"])

    def _run_tags_set(self, p: dict[str, Any]) -> str:
        return ("tag " if len(p["tags"]) == 1 else "tags ") + _pairs(p["tags"])

    def _run_tag_deleted(self, p: dict[str, Any]) -> str:
        return f"tag {p['key']} deleted"

    def _run_metrics_logged(self, p: dict[str, Any]) -> str:
        points = metric_points(p)
        keys = sorted({point.key for point in points})
        return f"logged {len(points):,} point{'s' if len(points) != 1 else ''} of {', '.join(keys[:MAX_LISTED])}" + (
            f" and {len(keys) - MAX_LISTED} more metrics" if len(keys) > MAX_LISTED else "")

    def _run_artifact_logged(self, p: dict[str, Any]) -> str:
        return f"artifact {p['path']} ({p['size']:,} bytes, sha256 {p['sha256'][:12]}…)"

    def _run_inputs_logged(self, p: dict[str, Any]) -> str:
        datasets = [f"{d['dataset']['name']} (digest {d['dataset']['digest']}, from {_short(d['dataset']['source'], 60)})" for d in p["datasets"]]
        models = [m["model_id"] for m in p.get("models") or ()]
        return "inputs: " + ", ".join(datasets + [f"logged model {m}" for m in models]) if datasets or models else "inputs logged"

    def _run_outputs_logged(self, p: dict[str, Any]) -> str:
        return "outputs: logged model " + ", ".join(m["model_id"] for m in p["models"])

    # -- registry ------------------------------------------------------------------------------
    def _registered_model_created(self, p: dict[str, Any]) -> str:
        return f"model {p['name']!r} created"

    def _registered_model_renamed(self, p: dict[str, Any]) -> str:
        for key in [k for k in self.aliases if k[0] == p["name"]]:
            self.aliases[(p["new_name"], key[1])] = self.aliases.pop(key)
        for key in [k for k in self.stages if k[0] == p["name"]]:
            self.stages[(p["new_name"], key[1])] = self.stages.pop(key)
        return f"model renamed {p['name']!r} → {p['new_name']!r}"

    def _registered_model_updated(self, p: dict[str, Any]) -> str:
        return f"description: {_short(p['description'])!r}"

    def _registered_model_deleted(self, p: dict[str, Any]) -> str:
        return f"model {p['name']!r} deleted with its versions"

    def _registered_model_tag_set(self, p: dict[str, Any]) -> str:
        return f"tag {p['key']} = {_short(p['value'])}"

    def _registered_model_tag_deleted(self, p: dict[str, Any]) -> str:
        return f"tag {p['key']} deleted"

    def _model_version_created(self, p: dict[str, Any]) -> str:
        self.stages[(p["name"], int(p["version"]))] = "None"
        origin = f" from run {p['run_id']}" if p.get("run_id") else ""
        files = p.get("files") or []
        pinned = f", {len(files)} files pinned" if files else ""
        return f"version {p['version']} created{origin} (source {_short(p['source'], 60)}{pinned})"

    def _model_version_updated(self, p: dict[str, Any]) -> str:
        return f"version {p['version']} description: {_short(p['description'])!r}"

    def _model_version_deleted(self, p: dict[str, Any]) -> str:
        gone = [alias for (name, alias), v in self.aliases.items() if name == p["name"] and v == int(p["version"])]
        for alias in gone:
            del self.aliases[(p["name"], alias)]
        return f"version {p['version']} deleted" + (f" (aliases {', '.join(gone)} removed)" if gone else "")

    def _model_version_stage_transitioned(self, p: dict[str, Any]) -> str:
        key = (p["name"], int(p["version"]))
        before = self.stages.get(key, "?")
        self.stages[key] = p["stage"]
        return f"version {p['version']}: stage {before} → {p['stage']}"

    def _model_version_tag_set(self, p: dict[str, Any]) -> str:
        return f"version {p['version']}: tag {p['key']} = {_short(p['value'])}"

    def _model_version_tag_deleted(self, p: dict[str, Any]) -> str:
        return f"version {p['version']}: tag {p['key']} deleted"

    def _model_version_alias_set(self, p: dict[str, Any]) -> str:
        key = (p["name"], p["alias"])
        before = self.aliases.get(key)
        self.aliases[key] = int(p["version"])
        if before is None:
            return f"alias {p['alias']}: → version {p['version']}"
        return f"alias {p['alias']}: version {before} → {p['version']}"

    def _model_version_alias_deleted(self, p: dict[str, Any]) -> str:
        before = self.aliases.pop((p["name"], p["alias"]), None)
        return f"alias {p['alias']} deleted" + (f" (was version {before})" if before is not None else "")

    # -- logged models -------------------------------------------------------------------------
    def _logged_model_created(self, p: dict[str, Any]) -> str:
        run = f" by run {p['source_run_id']}" if p.get("source_run_id") else ""
        return f"logged model {p['name']!r} ({p['model_id']}) created{run}"

    def _logged_model_finalized(self, p: dict[str, Any]) -> str:
        return f"logged model finalized: {p['status']}"

    # -- deployments and webhooks ----------------------------------------------------------------
    def _deployment_started(self, p: dict[str, Any]) -> str:
        before = f" (was version {p['previous_version']})" if p.get("previous_version") else ""
        return f"deployment of {p['name']} version {p['version']} to {p['target']} started{before}"

    def _deployment_succeeded(self, p: dict[str, Any]) -> str:
        return f"{p['target']} serves {p['name']} version {p['version']}"

    def _deployment_failed(self, p: dict[str, Any]) -> str:
        return f"deployment of version {p['version']} to {p['target']} failed: {_short(p.get('error'), 120)}"

    def _deployment_rolled_back(self, p: dict[str, Any]) -> str:
        return f"{p['target']} rolled back to version {p.get('previous_version')}: {_short(p.get('reason'), 120)}"

    def _webhook_created(self, p: dict[str, Any]) -> str:
        return f"webhook to {p['url']} for {', '.join(p['events'])} created"

    def _webhook_updated(self, p: dict[str, Any]) -> str:
        return f"webhook updated: {p['url']} for {', '.join(p['events'])}, {p.get('status') or 'ACTIVE'}"

    # -- alerts ----------------------------------------------------------------------------------
    def _alert_fired(self, p: dict[str, Any]) -> str:
        return f"alert fired ({p['level']}): {_short(p['title'], 200)}"

    def _alert_resolved(self, p: dict[str, Any]) -> str:
        return f"alert resolved: {_short(p['title'], 200)}"

    def _alert_raised(self, p: dict[str, Any]) -> str:
        return f"alert raised by the run's code ({p['level']}): {_short(p['title'], 200)}"

    # -- jobs ------------------------------------------------------------------------------------
    def _job_created(self, p: dict[str, Any]) -> str:
        return f"job {p['name']!r} created ({p['job_id']})"

    def _job_triggered(self, p: dict[str, Any]) -> str:
        cause = {"cron": "its cron tick", "event": f"event {p.get('cause_event_id')}", "manual": "run-now"}.get(p["reason"], p["reason"])
        return f"job {p['job_id']} triggered by {cause} (run {p['trigger_id']})"

    def _job_started(self, p: dict[str, Any]) -> str:
        return f"job {p['job_id']} started in run {p['run_id']} (attempt {p['attempt']}, agent {p['agent_id']})"

    def _job_succeeded(self, p: dict[str, Any]) -> str:
        return f"job {p['job_id']} succeeded in run {p['run_id']} (attempt {p['attempt']})"

    def _job_failed(self, p: dict[str, Any]) -> str:
        then = "; it will be retried" if p["will_retry"] else ""
        return f"job {p['job_id']} failed (attempt {p['attempt']}{', run ' + p['run_id'] if p.get('run_id') else ''}): {_short(p['reason'], 200)}{then}"

    def _job_skipped(self, p: dict[str, Any]) -> str:
        return f"job {p['job_id']} skipped a run: {_short(p['reason'], 200)}"


def who(e: Event) -> dict[str, Any]:
    """The actor and how far to believe it: the server checked its credentials, or it is a
    claim (the server's unchecked name, or a client that wrote to the log itself)."""
    s = e.source or {}
    stamped_by = s.get("stamped_by") or "client"
    if s.get("authenticated"):
        trust = "authenticated"
    elif stamped_by == "server":
        trust = "claimed (not authenticated)"
    else:
        trust = "client's claim (written to the log without the server)"
    return {"actor": e.actor, "authenticated": bool(s.get("authenticated")), "stamped_by": stamped_by, "trust": trust}


def where(e: Event) -> str:
    s = e.source or {}
    parts = [f"{s.get('host', '?')} pid {s.get('process', '?')}", f"eventflow {s.get('sdk_version', '?')}"]
    if s.get("client_address"):
        parts.append(f"from {s['client_address']}")
    return ", ".join(parts)
