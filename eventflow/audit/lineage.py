"""Lineage: where a thing came from and where it went, as a graph of typed nodes and edges
read from the materialized views (issue 15).

Nodes: dataset, run, logged_model, model_version, alias, deployment, commit. Edges:
dataset -input-> run, commit -source-> run, run -produced-> logged_model, logged_model or
run -registered-> model_version, model_version -alias-> alias, alias or model_version
-deployed-> deployment, original run -rerun-> rerun, parent run -child-> child run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, select

from eventflow.audit import index
from eventflow.views import tables as t
from eventflow.validation import InvalidInput

DIRECTIONS = ("both", "upstream", "downstream")
RERUN_TAG, PARENT_TAG, COMMIT_TAG, ENTRY_TAG = "eventflow.rerun_of", "mlflow.parentRunId", "mlflow.source.git.commit", "mlflow.project.entryPoint"


def _missing(what: str) -> InvalidInput:
    return InvalidInput(f"No {what} found for lineage", "RESOURCE_DOES_NOT_EXIST")


def parse_uri(c: Connection, uri: str) -> str:
    """The node id of a lineage URI (checked to exist)."""
    given = (uri or "").strip()
    if not given:
        raise InvalidInput("Missing value for required parameter 'uri': give runs:/ID, models:/NAME/VERSION, models:/NAME@ALIAS, datasets:/NAME[@DIGEST] or deployments:/TARGET")
    if given.startswith("models:/"):
        from eventflow.audit import targets

        target = targets.parse(given)
        if target.kind == targets.VERSION:
            row = c.execute(select(t.model_versions.c.version).where(t.model_versions.c.name == target.entity, t.model_versions.c.version == target.version)).first()
            if row is None:
                raise _missing(f"model version {target.entity!r} version {target.version}")
            return f"model_version:{target.entity}/{target.version}"
        if target.kind == targets.ALIAS:
            row = c.execute(select(t.registered_model_aliases.c.version).where(t.registered_model_aliases.c.name == target.entity, t.registered_model_aliases.c.alias == target.alias)).first()
            if row is None:
                raise _missing(f"alias {target.alias!r} of model {target.entity!r}")
            return f"alias:{target.entity}@{target.alias}"
        raise InvalidInput(f"Invalid lineage uri {given!r}: write models:/NAME/VERSION or models:/NAME@ALIAS")
    if given.startswith("datasets:/"):
        rest = given.removeprefix("datasets:/").strip("/")
        name, at, digest = rest.rpartition("@") if "@" in rest else (rest, "", "")
        if not name:
            raise InvalidInput(f"Invalid lineage uri {given!r}: write datasets:/NAME or datasets:/NAME@DIGEST")
        q = select(t.inputs.c.dataset_name, t.inputs.c.dataset_digest).where(t.inputs.c.dataset_name == name)
        if digest:
            q = q.where(t.inputs.c.dataset_digest == digest)
        rows = c.execute(q.distinct()).all()
        if not rows:
            raise _missing(f"dataset {rest!r}")
        if len(rows) > 1:
            raise InvalidInput(f"Dataset {name!r} has several digests ({', '.join(sorted(r[1] for r in rows))}): write datasets:/{name}@DIGEST")
        return f"dataset:{rows[0][0]}@{rows[0][1]}"
    if given.startswith("deployments:/"):
        target = given.removeprefix("deployments:/").strip("/")
        hit = c.execute(select(t.entity_events.c.offset).where(t.entity_events.c.entity_type == index.DEPLOYMENT, t.entity_events.c.entity == target).limit(1)).first()
        if hit is None:
            raise _missing(f"deployment {target!r}")
        return f"deployment:{target}"
    run_id = given.removeprefix("runs:/").strip("/").partition("/")[0]
    if c.execute(select(t.runs.c.run_id).where(t.runs.c.run_id == run_id)).first() is None:
        raise _missing(f"run {run_id!r}")
    return f"run:{run_id}"


_CHUNK = 500  # ids per IN (...) list


class _Graph:
    def __init__(self, c: Connection) -> None:
        self.c = c
        self.nodes: dict[str, dict[str, Any]] = {}
        self._targets: list[str] | None = None
        self._runs: dict[str, dict[str, Any]] = {}  # run id → what its node and edges need

    def prefetch(self, node_ids: list[str]) -> None:
        """Read what the run nodes among ``node_ids`` need in a dozen queries for all of
        them, not a dozen each: a dataset many runs trained on has a level of thousands."""
        wanted = sorted({n.partition(":")[2] for n in node_ids if n.startswith("run:")} - set(self._runs))
        for start in range(0, len(wanted), _CHUNK):
            self._fetch_runs(wanted[start:start + _CHUNK])

    def _fetch_runs(self, ids: list[str]) -> None:
        c = self.c
        facts: dict[str, dict[str, Any]] = {
            i: {"row": None, "tags": {}, "project": None, "params": {}, "inputs": [], "children": [], "tag_children": [],
                "reruns": [], "models": set(), "versions": []} for i in ids}
        for row in c.execute(select(t.runs).where(t.runs.c.run_id.in_(ids))).mappings():
            facts[row["run_id"]]["row"] = row
        for run_id, key, value in c.execute(select(t.tags.c.run_id, t.tags.c.key, t.tags.c.value).where(t.tags.c.run_id.in_(ids))):
            facts[run_id]["tags"][key] = value
        for row in c.execute(select(t.run_projects).where(t.run_projects.c.run_id.in_(ids))).mappings():
            facts[row["run_id"]]["project"] = row
        for run_id, key, value in c.execute(select(t.params.c.run_id, t.params.c.key, t.params.c.value).where(t.params.c.run_id.in_(ids))):
            facts[run_id]["params"][key] = value
        for run_id, name, digest in c.execute(select(t.inputs.c.run_id, t.inputs.c.dataset_name, t.inputs.c.dataset_digest).where(t.inputs.c.run_id.in_(ids))):
            facts[run_id]["inputs"].append((name, digest))
        for child, parent in c.execute(select(t.runs.c.run_id, t.runs.c.parent_run_id).where(t.runs.c.parent_run_id.in_(ids))):
            facts[parent]["children"].append(child)
        for child, key, value in c.execute(select(t.tags.c.run_id, t.tags.c.key, t.tags.c.value).where(t.tags.c.key.in_((PARENT_TAG, RERUN_TAG)), t.tags.c.value.in_(ids))):
            facts[value]["tag_children" if key == PARENT_TAG else "reruns"].append(child)
        for model_id, run_id in c.execute(select(t.logged_models.c.model_id, t.logged_models.c.source_run_id).where(t.logged_models.c.source_run_id.in_(ids))):
            facts[run_id]["models"].add(model_id)
        for run_id, model_id in c.execute(select(t.run_outputs.c.run_id, t.run_outputs.c.model_id).where(t.run_outputs.c.run_id.in_(ids))):
            facts[run_id]["models"].add(model_id)
        for name, version, model_id, run_id in c.execute(
                select(t.model_versions.c.name, t.model_versions.c.version, t.model_versions.c.model_id, t.model_versions.c.run_id)
                .where(t.model_versions.c.run_id.in_(ids))):
            facts[run_id]["versions"].append((name, version, model_id))
        self._runs.update(facts)

    def _run(self, run_id: str) -> dict[str, Any]:
        if run_id not in self._runs:
            self._fetch_runs([run_id])
        return self._runs[run_id]

    def node(self, node_id: str) -> dict[str, Any]:
        if node_id not in self.nodes:
            self.nodes[node_id] = self._describe(node_id)
        return self.nodes[node_id]

    def _describe(self, node_id: str) -> dict[str, Any]:
        kind, _, key = node_id.partition(":")
        c, attrs, label, uri = self.c, {}, key, None
        if kind == "run":
            facts = self._run(key)
            row, tags, project = facts["row"], facts["tags"], facts["project"]
            attrs = {"status": row["status"] if row else None, "run_name": row["run_name"] if row else None,
                     "experiment_id": row["experiment_id"] if row else None,
                     "commit": (project["commit"] if project else None) or tags.get(COMMIT_TAG),
                     "entry_point": (project["entry_point"] if project else None) or tags.get(ENTRY_TAG),
                     "params": dict(facts["params"])}
            label, uri = f"run {key}", f"runs:/{key}"
        elif kind == "dataset":
            name, _, digest = key.rpartition("@")
            row = c.execute(select(t.datasets).where(t.datasets.c.name == name, t.datasets.c.digest == digest)).mappings().first()
            attrs = {"name": name, "digest": digest, "source": row["source"] if row else None,
                     "source_type": row["source_type"] if row else None}
            label, uri = f"dataset {name}@{digest}", f"datasets:/{name}@{digest}"
        elif kind == "logged_model":
            row = c.execute(select(t.logged_models).where(t.logged_models.c.model_id == key)).mappings().first()
            attrs = {"name": row["name"] if row else None, "status": row["status"] if row else None,
                     "source_run_id": row["source_run_id"] if row else None,
                     "experiment_id": row["experiment_id"] if row else None}
            label, uri = f"logged model {attrs['name'] or key} ({key})", f"models:/{key}"
        elif kind == "model_version":
            name, _, version = key.rpartition("/")
            row = c.execute(select(t.model_versions).where(t.model_versions.c.name == name, t.model_versions.c.version == int(version))).mappings().first()
            attrs = {"name": name, "version": int(version), "source": row["source"] if row else None,
                     "run_id": row["run_id"] if row else None, "stage": row["current_stage"] if row else None}
            label, uri = f"{name} version {version}", f"models:/{name}/{version}"
        elif kind == "alias":
            name, _, alias = key.rpartition("@")
            attrs = {"name": name, "alias": alias}
            label, uri = f"alias {name}@{alias}", f"models:/{name}@{alias}"
        elif kind == "deployment":
            attrs, label, uri = {"target": key}, f"deployment {key}", f"deployments:/{key}"
        elif kind == "commit":
            attrs, label = {"sha": key}, f"commit {key[:12]}"
        return {"id": node_id, "type": kind, "label": label, "uri": uri, "attributes": attrs}

    # (neighbour id, edge type, neighbour is upstream)
    def neighbours(self, node_id: str) -> list[tuple[str, str, bool]]:
        kind, _, key = node_id.partition(":")
        c, out = self.c, []
        if kind == "run":
            facts = self._run(key)
            for name, digest in facts["inputs"]:
                out.append((f"dataset:{name}@{digest}", "input", True))
            attrs = self.node(node_id)["attributes"]
            if attrs.get("commit"):
                out.append((f"commit:{attrs['commit']}", "source", True))
            tags, row = facts["tags"], facts["row"]
            parent = (row["parent_run_id"] if row else None) or tags.get(PARENT_TAG)
            if parent:
                out.append((f"run:{parent}", "child", True))
            if tags.get(RERUN_TAG):
                out.append((f"run:{tags[RERUN_TAG]}", "rerun", True))
            out += [(f"run:{child}", "child", False) for child in facts["children"] + facts["tag_children"]]
            out += [(f"run:{child}", "rerun", False) for child in facts["reruns"]]
            out += [(f"logged_model:{m}", "produced", False) for m in sorted(facts["models"])]
            for name, version, model_id in facts["versions"]:
                if not model_id:
                    out.append((f"model_version:{name}/{version}", "registered", False))
        elif kind == "dataset":
            name, _, digest = key.rpartition("@")
            for (run_id,) in c.execute(select(t.inputs.c.run_id).where(t.inputs.c.dataset_name == name, t.inputs.c.dataset_digest == digest)).all():
                out.append((f"run:{run_id}", "input", False))
        elif kind == "commit":
            runs = {r for (r,) in c.execute(select(t.run_projects.c.run_id).where(t.run_projects.c.commit == key)).all()}
            runs |= {r for (r,) in c.execute(select(t.tags.c.run_id).where(t.tags.c.key == COMMIT_TAG, t.tags.c.value == key)).all()}
            out += [(f"run:{r}", "source", False) for r in sorted(runs)]
        elif kind == "logged_model":
            row = c.execute(select(t.logged_models.c.source_run_id).where(t.logged_models.c.model_id == key)).first()
            if row and row[0]:
                out.append((f"run:{row[0]}", "produced", True))
            for (run_id,) in c.execute(select(t.run_outputs.c.run_id).where(t.run_outputs.c.model_id == key)).all():
                out.append((f"run:{run_id}", "produced", True))
            for name, version in c.execute(select(t.model_versions.c.name, t.model_versions.c.version).where(t.model_versions.c.model_id == key)).all():
                out.append((f"model_version:{name}/{version}", "registered", False))
        elif kind == "model_version":
            name, _, version = key.rpartition("/")
            row = c.execute(select(t.model_versions.c.run_id, t.model_versions.c.model_id).where(t.model_versions.c.name == name, t.model_versions.c.version == int(version))).first()
            if row and row[1]:
                out.append((f"logged_model:{row[1]}", "registered", True))
            elif row and row[0]:
                out.append((f"run:{row[0]}", "registered", True))
            for (alias,) in c.execute(select(t.registered_model_aliases.c.alias).where(t.registered_model_aliases.c.name == name, t.registered_model_aliases.c.version == int(version))).all():
                out.append((f"alias:{name}@{alias}", "alias", False))
            for target in self._deployments():
                if _deployed_ref(target) == ("version", name, version):
                    out.append((f"deployment:{target}", "deployed", False))
        elif kind == "alias":
            name, _, alias = key.rpartition("@")
            row = c.execute(select(t.registered_model_aliases.c.version).where(t.registered_model_aliases.c.name == name, t.registered_model_aliases.c.alias == alias)).first()
            if row:
                out.append((f"model_version:{name}/{row[0]}", "alias", True))
            for target in self._deployments():
                if _deployed_ref(target) == ("alias", name, alias):
                    out.append((f"deployment:{target}", "deployed", False))
        elif kind == "deployment":
            ref = _deployed_ref(key)
            if ref:
                out.append((f"alias:{ref[1]}@{ref[2]}" if ref[0] == "alias" else f"model_version:{ref[1]}/{ref[2]}", "deployed", True))
        return out

    def _deployments(self) -> list[str]:
        # read once per graph: every version and alias node asks
        if self._targets is None:
            self._targets = [e for (e,) in self.c.execute(select(t.entity_events.c.entity).where(t.entity_events.c.entity_type == index.DEPLOYMENT).distinct()).all()]
        return self._targets


def _deployed_ref(target: str) -> tuple[str, str, str] | None:
    """What a deployment target (NAME@ALIAS:PORT or NAME/VERSION:PORT) serves."""
    model = target.rpartition(":")[0] if ":" in target else target
    if "@" in model:
        name, _, alias = model.rpartition("@")
        return ("alias", name, alias) if name and alias else None
    name, _, version = model.rpartition("/")
    return ("version", name, version) if name and version.isdigit() else None


def guarded_by(node: dict[str, Any]) -> tuple[str, str] | None:
    """The resource whose READ right lets a reader see this node (None: a dataset or a
    commit, seen only through a node the reader may see, or as a root checked already)."""
    kind, key, attrs = node["type"], node["id"].partition(":")[2], node["attributes"]
    if kind in ("run", "logged_model"):
        return ("experiment", str(attrs["experiment_id"])) if attrs.get("experiment_id") is not None else None
    if kind in ("model_version", "alias"):
        return ("registered_model", attrs["name"])
    if kind == "deployment":
        ref = _deployed_ref(key)
        return ("registered_model", ref[1]) if ref else None
    return None


def lineage(c: Connection, uri: str, direction: str = "both", depth: int = 10,
            may_read: Callable[[str, str], bool] | None = None) -> dict[str, Any]:
    """The graph around ``uri``. With ``may_read`` (resource type, id → bool), a node the
    reader may not READ is left out, the walk does not go through it (what lies beyond
    it is not shown either), and ``hidden`` counts the nodes left out at its edge."""
    if direction not in DIRECTIONS:
        raise InvalidInput(f"Invalid value {direction!r} for parameter 'direction': it must be one of {', '.join(DIRECTIONS)}")
    root = parse_uri(c, uri)
    graph = _Graph(c)
    graph.node(root)
    edges: dict[tuple[str, str, str], None] = {}
    seen = {root: 0}
    hidden: set[str] = set()

    def visible(node_id: str) -> bool:
        if may_read is None or node_id == root:
            return True
        if node_id in hidden:
            return False
        guard = guarded_by(graph.node(node_id))
        if guard is None or may_read(*guard):
            return True
        hidden.add(node_id)
        return False
    # upstream and downstream walks are separate so "both" does not wander sideways
    walks = [d for d in ("upstream", "downstream") if direction in (d, "both")]
    for walk in walks:
        frontier, visited, level = [root], {root}, 0
        while frontier and level < depth:
            # Level by level, so the runs of a level (and of the next) are read in bulk.
            graph.prefetch(frontier)
            found = [(node_id, other, kind, is_up) for node_id in frontier for other, kind, is_up in graph.neighbours(node_id)
                     if is_up == (walk == "upstream")]
            graph.prefetch([other for _, other, _, _ in found])
            next_frontier = []
            for node_id, other, kind, is_up in found:
                if not visible(other):
                    continue
                graph.node(other)
                edges[(other, node_id, kind) if is_up else (node_id, other, kind)] = None
                seen.setdefault(other, level + 1)
                if other not in visited:
                    visited.add(other)
                    next_frontier.append(other)
            frontier, level = next_frontier, level + 1
    return {"root": root, "direction": direction, "depth": depth,
            "nodes": [graph.nodes[n] for n in seen],
            "edges": [{"source": s, "target": d, "type": k} for s, d, k in edges], "hidden": len(hidden)}


def resources(c: Connection, data: dict[str, Any]) -> list[tuple[str, str]]:
    """What a lineage request needs READ on: the root's experiment or registered model."""
    try:
        root = parse_uri(c, str(data.get("uri") or ""))
    except InvalidInput:
        return []
    kind, _, key = root.partition(":")
    from eventflow.auth.policy import run

    if kind == "run":
        return run(c, {"run_id": key})
    if kind in ("model_version", "alias"):
        return [("registered_model", key.rpartition("/" if kind == "model_version" else "@")[0])]
    if kind == "deployment":
        ref = _deployed_ref(key)
        return [("registered_model", ref[1])] if ref else []
    if kind == "dataset":
        name, _, digest = key.rpartition("@")
        run_id = c.execute(select(t.inputs.c.run_id).where(t.inputs.c.dataset_name == name, t.inputs.c.dataset_digest == digest).limit(1)).scalar()
        return run(c, {"run_id": run_id}) if run_id else []
    return []


def lines(graph: dict[str, Any]) -> list[str]:
    """The chain as text: each node, then what it came from (upstream) indented below it."""
    nodes = {n["id"]: n for n in graph["nodes"]}
    up: dict[str, list[str]] = {}
    down: dict[str, list[str]] = {}
    for e in graph["edges"]:
        up.setdefault(e["target"], []).append(e["source"])
        down.setdefault(e["source"], []).append(e["target"])

    def text(node_id: str) -> str:
        n = nodes[node_id]
        a = n["attributes"]
        if n["type"] == "run":
            extra = [f"commit {a['commit'][:12]}…" if a.get("commit") else "", f"entry point {a['entry_point']}" if a.get("entry_point") else ""]
            extra = [x for x in extra if x]
            return n["label"] + (f" ({', '.join(extra)})" if extra else "")
        return n["label"]

    out: list[str] = []

    def walk(node_id: str, links: dict[str, list[str]], arrow: str, level: int, seen: set[str]) -> None:
        for other in links.get(node_id, []):
            out.append("  " * level + f"{arrow} {text(other)}")
            if other not in seen:
                walk(other, links, arrow, level + 1, seen | {other})

    out.append(text(graph["root"]))
    walk(graph["root"], up, "←", 1, {graph["root"]})
    walk(graph["root"], down, "→", 1, {graph["root"]})
    if graph.get("hidden"):
        out.append(f"({graph['hidden']} linked node(s) you may not read left out, and what lies beyond them)")
    return out
