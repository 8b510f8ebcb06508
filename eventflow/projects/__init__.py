"""Projects: run training code in its environment, from a directory or a git commit.

MLflow's MLproject format, unchanged (``spec``); the code fetched and pinned to a commit,
a dirty tree kept as a patch (``sources``); environments built once per content and
reused (``environments``); the entry point run as a child that logs into a tracked run
(``runner``, ``submitted``); what ran recorded on the log and read back (``records``).

    from eventflow import projects
    submitted = projects.run("git@github.com:me/train.git#model", parameters={"alpha": 0.5})
"""

from importlib import import_module
from typing import Any

# Loaded on first use, so that ``eventflow --help`` (which imports this package's cli) stays quick.
_HOMES = {
    "BuiltEnvironment": "environments", "EnvironmentBuildError": "environments", "EnvironmentSpec": "environments",
    "build": "environments", "ExecutionError": "launch", "run": "launch", "ProjectRecord": "records",
    "project_of": "records", "execute": "runner", "Checkout": "sources", "SourceError": "sources",
    "apply_patch": "sources", "fetch": "sources", "ProjectError": "spec", "load_project": "spec",
    "SubmittedRun": "submitted", "rerun": "reruns", "Rerun": "reruns",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'eventflow.projects' has no attribute {name!r}")
    return getattr(import_module(f"eventflow.projects.{home}"), name)
