"""Registry commands: validated intent turned into ``registered_model.*`` / ``model_version.*`` events.

The rules that need no state (names, versions, stages, aliases, tags) are checked here,
in MLflow's words; the rules that need state (does the model exist, which number comes
next) are the caller's, against the views (see ``eventflow.registry.api``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from eventflow import validation as v
from eventflow.commands import artifact_path, file_facts
from eventflow.events import Event, now_ms

STAGES = ("None", "Staging", "Production", "Archived")
MAX_NAME_LENGTH = 256
MAX_ALIAS_LENGTH = 255
MAX_TAG_VALUE_LENGTH = 100_000
_ALIAS = re.compile(r"^[\w\-]*$")
_VERSION_ALIAS = re.compile(r"^[vV]\d+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_model_name(name: Any, field: str = "name") -> str:
    if name is None or (isinstance(name, str) and not name.strip()):
        raise v.InvalidInput(f"Missing value for required parameter '{field}'. Registered model name cannot be empty.")
    if not isinstance(name, str):
        raise v.invalid_value(field, name, "a registered model name must be a string")
    if "/" in name or ":" in name:
        raise v.InvalidInput(f"Invalid model name '{name}'. Names cannot contain '/' or ':'.")
    if _CONTROL.search(name):
        raise v.invalid_value(field, name, "a registered model name cannot hold control characters")
    if len(name) > MAX_NAME_LENGTH:
        raise v.InvalidInput(f"Registered model name '{name[:40]}…' exceeds the maximum length of {MAX_NAME_LENGTH} characters")
    return name


def check_version(version: Any) -> str:
    """A version number as MLflow writes it: a positive integer, as a string."""
    if isinstance(version, bool) or version is None or version == "":
        raise v.InvalidInput("Missing value for required parameter 'version'.")
    try:
        number = int(str(version).strip())
    except ValueError:
        raise v.InvalidInput(f"Parameter 'version' must be an integer, got '{version}'.") from None
    if not 0 < number < 2**31:
        raise v.InvalidInput(f"Parameter 'version' must be a positive integer, got '{version}'.")
    return str(number)


def check_stage(stage: Any) -> str:
    """One of MLflow's stages, matched case-insensitively, in its canonical spelling."""
    for known in STAGES:
        if isinstance(stage, str) and stage.strip().lower() == known.lower():
            return known
    raise v.InvalidInput(f"Invalid Model Version stage: {stage}. Value must be one of {', '.join(STAGES)}.")


def check_alias(alias: Any) -> str:
    if alias is None or alias == "":
        raise v.InvalidInput("Registered model alias name cannot be empty.")
    if not isinstance(alias, str) or not _ALIAS.match(alias):
        raise v.InvalidInput(f"Invalid alias name: '{alias}'. Names may only contain alphanumerics, underscores (_), and dashes (-).")
    if len(alias) > MAX_ALIAS_LENGTH:
        raise v.InvalidInput(f"Registered model alias name exceeds the maximum length of {MAX_ALIAS_LENGTH} characters")
    if alias.lower() == "latest":
        raise v.InvalidInput("'latest' alias name (case insensitive) is reserved.")
    if _VERSION_ALIAS.match(alias):
        raise v.InvalidInput(f"Version alias name '{alias}' is reserved.")
    return alias


def check_text(value: Any, field: str = "description") -> str | None:
    """An optional free text (a description, a run link); no NUL, which PostgreSQL cannot store."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise v.invalid_value(field, value, "it must be a string")
    if "\x00" in value:
        raise v.invalid_value(field, value, "it must not hold NUL characters")
    return value



def _tags(tags: dict[str, Any] | Iterable[tuple[str, Any]] | None) -> list[dict[str, str]]:
    items = tags.items() if isinstance(tags, dict) else (tags or [])
    checked = [v.check_tag(key, value, f"tags[{i}]", MAX_TAG_VALUE_LENGTH) for i, (key, value) in enumerate(items)]
    return [{"key": key, "value": value} for key, value in checked]


def create_registered_model(name: str, description: str | None = None, tags: Iterable[tuple[str, Any]] = ()) -> Event:
    return Event(
        "registered_model.created",
        {"name": check_model_name(name), "description": check_text(description), "tags": _tags(tags), "creation_time": now_ms()},
    )


def rename_registered_model(name: str, new_name: str, after: str | None = None) -> Event:
    """``after``: the last event about ``new_name`` (a model of that name deleted or renamed
    away), which the rename must follow; it is keyed by the new name, the rename by the old."""
    payload = {"name": check_model_name(name), "new_name": check_model_name(new_name, "new_name")}
    return Event("registered_model.renamed", payload, causation_id=after)


def update_registered_model(name: str, description: str | None) -> Event:
    return Event("registered_model.updated", {"name": check_model_name(name), "description": check_text(description) or ""})


def delete_registered_model(name: str) -> Event:
    return Event("registered_model.deleted", {"name": check_model_name(name)})


def set_registered_model_tag(name: str, key: str, value: Any) -> Event:
    [tag] = _tags([(key, value)])
    return Event("registered_model.tag_set", {"name": check_model_name(name), **tag})


def delete_registered_model_tag(name: str, key: str) -> Event:
    return Event("registered_model.tag_deleted", {"name": check_model_name(name), "key": v.check_key(key)})


def create_model_version(
    name: str,
    version: str,
    source: str,
    *,
    run_id: str | None = None,
    run_link: str | None = None,
    description: str | None = None,
    tags: Iterable[tuple[str, Any]] = (),
    model_id: str | None = None,
    files: Iterable[dict[str, Any]] = (),
) -> Event:
    """``source`` must already be checked (``eventflow.registry.sources.check_source``);
    ``files`` are its files as the log recorded them (``eventflow.registry.pins``), pinned
    into the version so that what is loaded later is what was registered."""
    return Event(
        "model_version.created",
        {
            "name": check_model_name(name),
            "version": check_version(version),
            "source": source,
            "run_id": None if run_id is None else v.check_run_id(run_id),
            "run_link": check_text(run_link, "run_link") or None,
            "description": check_text(description),
            "tags": _tags(tags),
            "creation_time": now_ms(),
            "model_id": model_id,
            "files": _pins(files),
        },
    )


def _pins(files: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    pinned = []
    for item in files:
        size, sha256 = file_facts(item.get("size"), item.get("sha256"))
        pinned.append({"path": artifact_path(str(item.get("path", "")), "model version"), "size": size, "sha256": sha256})
    return sorted(pinned, key=lambda pin: pin["path"])


def update_model_version(name: str, version: str, description: str | None) -> Event:
    return Event(
        "model_version.updated",
        {"name": check_model_name(name), "version": check_version(version), "description": check_text(description) or ""},
    )


def delete_model_version(name: str, version: str) -> Event:
    return Event("model_version.deleted", {"name": check_model_name(name), "version": check_version(version)})


def transition_stage(name: str, version: str, stage: str, archive_existing_versions: bool = False) -> Event:
    return Event(
        "model_version.stage_transitioned",
        {
            "name": check_model_name(name),
            "version": check_version(version),
            "stage": check_stage(stage),
            "archive_existing_versions": bool(archive_existing_versions),
        },
    )


def set_model_version_tag(name: str, version: str, key: str, value: Any) -> Event:
    [tag] = _tags([(key, value)])
    return Event("model_version.tag_set", {"name": check_model_name(name), "version": check_version(version), **tag})


def delete_model_version_tag(name: str, version: str, key: str) -> Event:
    return Event("model_version.tag_deleted", {"name": check_model_name(name), "version": check_version(version), "key": v.check_key(key)})


def set_alias(name: str, alias: str, version: str) -> Event:
    """The promotion: the deployer rolls out whatever version an alias comes to name."""
    return Event("model_version.alias_set", {"name": check_model_name(name), "alias": check_alias(alias), "version": check_version(version)})


def delete_alias(name: str, alias: str) -> Event:
    return Event("model_version.alias_deleted", {"name": check_model_name(name), "alias": check_alias(alias)})
