"""A past run's recipe: everything that went into it, read back from its events.

A project run's recipe is its project record (``records.project_of``); a plain SDK run's
is what the SDK recorded at its start (``sdk/environment.py``: the commit, the repository,
the script, the command line, the Python version, whether the tree was dirty, and the
``environment/requirements.txt`` artifact). Both add the run's params and input datasets.

A recipe that lacks something a rerun needs says exactly what (``RecipeIncomplete``):
guessing at a missing commit or package list would "rerun" something else.

``facts_of`` reads the same things as ``report.RunFacts`` — plus the run's metric curves
and artifact digests — for any run, complete or not: the report compares what is there.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventflow.projects.records import ProjectRecord
from eventflow.projects.report import RunFacts
from eventflow.sdk.stores import Store
from eventflow.validation import InvalidInput

REQUIREMENTS_ARTIFACT = "environment/requirements.txt"
RERUN_OF_TAG = "eventflow.rerun_of"


class RecipeIncomplete(InvalidInput):
    """The run lacks something a rerun needs; ``missing`` names each thing."""

    def __init__(self, run_id: str, missing: list[str]):
        self.run_id, self.missing = run_id, missing
        super().__init__(f"run {run_id} cannot be rerun: it lacks " + "; ".join(missing), "INVALID_STATE")


@dataclass(frozen=True)
class Recipe:
    """What went into a run. ``kind`` is ``project`` (an ``eventflow run``) or ``script``
    (training code that started its own run with the SDK)."""

    run_id: str
    kind: str
    experiment_id: str
    run_name: str
    source: str | None  # where to fetch the code: a git URL or a local repository
    commit: str | None
    subdirectory: str = ""
    entry_point: str | None = None  # project runs
    command: str | None = None  # the expanded command (project) or the command line (script)
    script: str | None = None  # script runs: the path the script ran from (mlflow.source.name)
    parameters: dict[str, str] = field(default_factory=dict)
    env_manager: str | None = None
    python: str | None = None
    packages: str | None = None
    dirty: bool = False
    patch: bytes | None = None
    datasets: dict[str, str] = field(default_factory=dict)
    project: Any = None  # the ProjectRecord of a project run
    missing: tuple[str, ...] = ()

    def require(self) -> "Recipe":
        """This recipe, or ``RecipeIncomplete`` naming everything it lacks."""
        if self.missing:
            raise RecipeIncomplete(self.run_id, list(self.missing))
        return self


def project_record(store: Store, run_id: str) -> ProjectRecord | None:
    """The run's project record (``run.project_recorded``), or None for a plain SDK run."""
    found = store.run_project(run_id)
    return None if found is None else ProjectRecord.from_row(found)


def get_run(store: Store, run_id: str) -> dict[str, Any]:
    run = store.get_run(run_id)
    if run is None:
        raise InvalidInput(f"Run with id={run_id} not found", "RESOURCE_DOES_NOT_EXIST")
    return run


def tags_of(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def params_of(run: dict[str, Any]) -> dict[str, str]:
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}


def datasets_of(run: dict[str, Any]) -> dict[str, str]:
    """Input datasets as ``name (context)`` -> digest."""
    found: dict[str, str] = {}
    for item in (run.get("inputs") or {}).get("dataset_inputs", []):
        tags = item.get("tags") or []
        pairs = tags.items() if isinstance(tags, dict) else ((t.get("key"), t.get("value")) for t in tags)
        context = dict(pairs).get("mlflow.data.context")
        name = item["dataset"]["name"] + (f" ({context})" if context else "")
        found[name] = item["dataset"]["digest"]
    return found


def read_artifact(store: Store, run: dict[str, Any], path: str, sha256: str | None = None) -> bytes | None:
    """A run's artifact as the log recorded it: None if it was never logged; an error if the
    stored bytes are not those whose digest the log holds."""
    recorded = {f["path"]: f["sha256"] for f in store.artifact_digests(run["info"]["run_id"], path)}
    if path not in recorded:
        return None
    expected = sha256 or recorded[path]
    with tempfile.TemporaryDirectory() as directory:
        local = Path(directory) / "artifact"
        store.download_artifact(run["info"]["artifact_uri"], path, local)
        data = local.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise InvalidInput(f"run {run['info']['run_id']}'s artifact {path!r} was changed after it was logged: "
                           f"the log recorded sha256 {expected}, the stored file has {actual}", "INVALID_STATE")
    return data


def read(store: Store, run_id: str) -> Recipe:
    """The recipe of ``run_id`` (``Recipe.missing`` lists what a rerun would lack)."""
    run = get_run(store, run_id)
    tags, info = tags_of(run), run["info"]
    record = project_record(store, run_id)
    common = dict(run_id=run_id, experiment_id=info["experiment_id"], run_name=info.get("run_name") or run_id,
                  parameters=params_of(run), datasets=datasets_of(run))
    if record is not None:
        return _project_recipe(store, run, tags, record, common)
    return _script_recipe(store, run, tags, common)


def _project_recipe(store: Store, run: dict[str, Any], tags: dict[str, str], record: ProjectRecord, common: dict[str, Any]) -> Recipe:
    missing = []
    if not record.commit:
        missing.append("a git commit (its project ran from a directory outside git)")
    elif not record.repo_url:
        missing.append("the project's repository URL")
    if not record.command:
        missing.append("its expanded command (the project record has none)")
    if not record.packages:
        missing.append("the environment's package list (the project record's packages)")
    patch = None
    if record.patch_path:
        patch = read_artifact(store, run, record.patch_path, record.patch_sha256)
        if patch is None:
            missing.append(f"the patch of its uncommitted changes (artifact {record.patch_path!r} was never logged)")
    return Recipe(
        kind="project", source=record.repo_url, commit=record.commit, subdirectory=record.subdirectory or "",
        entry_point=record.entry_point, command=record.command,
        parameters={**record.parameters, **common.pop("parameters")},
        env_manager=record.env_manager, python=record.python_version, packages=record.packages or None,
        dirty=bool(record.patch_path), patch=patch, project=record, missing=tuple(missing), **common,
    )


def _script_recipe(store: Store, run: dict[str, Any], tags: dict[str, str], common: dict[str, Any]) -> Recipe:
    missing = []
    commit = tags.get("mlflow.source.git.commit")
    if not commit:
        missing.append("a git commit (tag mlflow.source.git.commit: the script did not run from a git repository)")
    script = tags.get("mlflow.source.name")
    command = tags.get("eventflow.command")
    if not command or command == "<interactive>":
        missing.append("the command line it ran (tag eventflow.command)")
    if not script or script.startswith("<"):
        missing.append("the script it ran (tag mlflow.source.name)")
    source = tags.get("mlflow.source.git.repoURL") or (_local_repository(script, commit) if script and commit else None)
    if commit and not source:
        missing.append("where its code lives (tag mlflow.source.git.repoURL, and the script's own repository is not here)")
    dirty = tags.get("eventflow.git.dirty") == "true"
    if dirty:
        missing.append("a patch of its uncommitted changes (tag eventflow.git.dirty is true and the SDK records no patch)")
    python = tags.get("eventflow.python")
    if not python:
        missing.append("its Python version (tag eventflow.python)")
    packages_bytes = read_artifact(store, run, REQUIREMENTS_ARTIFACT)
    if packages_bytes is None:
        missing.append(f"its installed packages (artifact {REQUIREMENTS_ARTIFACT})")
    return Recipe(
        kind="script", source=source, commit=commit, command=command, script=script,
        python=python, packages=packages_bytes.decode() if packages_bytes is not None else None,
        dirty=dirty, missing=tuple(missing), **common,
    )


def _local_repository(script: str, commit: str) -> str | None:
    """The repository a script ran from, when it is on this machine and holds ``commit``."""
    import subprocess

    directory = Path(script).parent
    if not directory.is_dir():
        return None
    try:
        top = subprocess.run(["git", "-C", str(directory), "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=10)
        has = subprocess.run(["git", "-C", str(directory), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return top.stdout.strip() if top.returncode == 0 and has.returncode == 0 else None


def facts_of(store: Store, run_id: str) -> RunFacts:
    """What went into ``run_id`` and what came out, for the report; what was not recorded
    is None (the report says so) rather than an error."""
    run = get_run(store, run_id)
    tags = tags_of(run)
    record = project_record(store, run_id)
    packages = record.packages if record is not None and record.packages else None
    if packages is None:
        data = read_artifact(store, run, REQUIREMENTS_ARTIFACT)
        packages = data.decode() if data is not None else None
    parameters = dict(record.parameters) if record is not None else {}
    parameters.update(params_of(run))
    metrics = {
        m["key"]: [(int(p["step"]), float(p["value"])) for p in store.metric_history(run_id, m["key"])]
        for m in run["data"].get("metrics", [])
    }
    return RunFacts(
        run_id, commit=(record.commit if record is not None else None) or tags.get("mlflow.source.git.commit"),
        patch=record.patch_sha256 if record is not None else None,
        parameters=parameters, packages=packages,
        python=(record.python_version if record is not None else None) or tags.get("eventflow.python"),
        datasets=datasets_of(run), metrics=metrics, artifacts={f["path"]: f["sha256"] for f in store.artifact_digests(run_id)},
    )
