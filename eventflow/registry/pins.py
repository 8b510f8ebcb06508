"""The files a model version pins when it is created: its source's files, as the log
recorded them (path, size, sha256) at that moment.

The pins go into the version's ``model_version.created`` event, so loading, serving and
deploying the version check every byte against what was registered — not against
whatever ``run.artifact_logged`` the log holds last for that path, which anyone able to
append to the log could have written after the version was made.
"""

from __future__ import annotations

from typing import Any, Callable

from eventflow.models.uris import LoggedModelFiles, ModelUriError, RunFiles, files_of
from eventflow.registry.sources import Source
from eventflow.views import queries

Read = Callable[..., Any]


def owner_of(source: Source) -> RunFiles | LoggedModelFiles | None:
    """The run's or logged model's files a checked source names, or None when it names
    neither (a store path outside any run's or logged model's artifacts)."""
    if source.kind == "runs":
        return RunFiles(source.target, source.path)
    if source.kind == "models":
        return LoggedModelFiles(source.target, source.path)
    try:  # the store's layout, as the loader reads it (one home: ``uris.files_of``)
        return files_of("mlflow-artifacts:/" + source.path)
    except ModelUriError:
        return None


def source_files(read: Read, source: Source) -> list[dict[str, Any]]:
    """Every file the log recorded under the source, with its path relative to the
    source (the model's directory): what the new version pins. Empty when the log
    recorded none there, or the run or logged model is not on this server."""
    owner = owner_of(source)
    if owner is None:
        return []
    if isinstance(owner, RunFiles):
        records = read(queries.artifact_digests, owner.run_id, owner.path)
    else:
        records = read(queries.logged_model_digests, owner.model_id, owner.path)
    prefix = owner.path.strip("/")
    return [
        {"path": record["path"][len(prefix) + 1 :] if prefix else record["path"], "size": record["size"], "sha256": record["sha256"]}
        for record in records
        if not prefix or record["path"] != prefix  # a source is a directory, not one of its files
    ]
