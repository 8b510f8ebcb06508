"""Projects: run training code in its environment, from a directory or a git commit.

MLflow's MLproject format, unchanged (``spec``); the code fetched and pinned to a commit,
a dirty tree kept as a patch (``sources``); environments built once per content and
reused (``environments``); the entry point run as a child that logs into a tracked run
(``runner``, ``submitted``); what ran recorded on the log and read back (``records``).

    from eventflow import projects
    submitted = projects.run("git@github.com:me/train.git#model", parameters={"alpha": 0.5})
"""

from eventflow.projects.environments import BuiltEnvironment, EnvironmentBuildError, EnvironmentSpec, build
from eventflow.projects.launch import ExecutionError, run
from eventflow.projects.records import ProjectRecord, project_of
from eventflow.projects.runner import execute
from eventflow.projects.sources import Checkout, SourceError, apply_patch, fetch
from eventflow.projects.spec import ProjectError, load_project
from eventflow.projects.submitted import SubmittedRun

__all__ = [
    "BuiltEnvironment", "Checkout", "EnvironmentBuildError", "EnvironmentSpec", "ExecutionError", "ProjectError",
    "ProjectRecord", "SourceError", "SubmittedRun", "apply_patch", "build", "execute", "fetch", "load_project",
    "project_of", "run",
]
