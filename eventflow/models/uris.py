"""Model URIs: ``runs:/<run>/<path>``, ``models:/<name>/<version>``, ``models:/<name>@<alias>``,
MLflow 3's logged models ``models:/m-<id>``, or a local directory.

A registry URI resolves to the version and the files behind it (the seam below asks the
tracking server over MLflow's REST paths), so every remote model is loaded as a run's or
a logged model's files — checked, file by file, against the digests the version pinned
when it was registered (a run's or logged model's own URI: against the log's record).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
    import httpx


class ModelUriError(ValueError):
    pass


@dataclass(frozen=True)
class RunFiles:
    run_id: str
    path: str

    @property
    def uri(self) -> str:
        return f"runs:/{self.run_id}/{self.path}"


@dataclass(frozen=True)
class LoggedModelFiles:
    """An MLflow 3 logged model's files (``models:/m-<id>``), recorded on the log like a run's."""

    model_id: str
    path: str = ""

    @property
    def uri(self) -> str:
        return f"models:/{self.model_id}" + (f"/{self.path}" if self.path else "")


@dataclass(frozen=True)
class RegistryRef:
    name: str
    version: str | None = None
    alias: str | None = None


@dataclass(frozen=True)
class VersionFiles:
    """A registered version, resolved: its number and the run's or logged model's files
    behind it (which it pinned, file by file, when it was created)."""

    ref: RegistryRef
    version: str
    files: RunFiles | LoggedModelFiles

    @property
    def uri(self) -> str:
        if self.ref.alias is not None:
            return f"models:/{self.ref.name}@{self.ref.alias} (version {self.version})"
        return f"models:/{self.ref.name}/{self.version}"


@dataclass(frozen=True)
class LocalDir:
    path: Path


def parse(uri: str | os.PathLike[str]) -> RunFiles | LoggedModelFiles | RegistryRef | LocalDir:
    text = str(uri)
    if text.startswith("runs:/"):
        parts = text.removeprefix("runs:/").strip("/").split("/", 1)
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ModelUriError(f"{text!r} is not a run's model URI: write runs:/<run_id>/<path>, e.g. runs:/0123abcd/model")
        return RunFiles(parts[0], parts[1].strip("/"))
    if text.startswith("models:/"):
        rest = text.removeprefix("models:/").strip("/")
        if "@" in rest and "/" not in rest:
            name, alias = rest.split("@", 1)
            if name and alias:
                return RegistryRef(name, alias=alias)
        elif rest.count("/") == 1:
            name, version = rest.split("/")
            if name and version.isdigit():
                return RegistryRef(name, version=version)
        if rest.startswith("m-") and "/" not in rest and "@" not in rest:
            return LoggedModelFiles(rest)
        raise ModelUriError(f"{text!r} is not a registry URI: write models:/<name>/<version> or models:/<name>@<alias>")
    if text.startswith("file://"):
        return LocalDir(Path(unquote(urlparse(text).path)))
    if "://" in text or text.startswith(("mlflow-artifacts:", "s3:", "gs:")):
        raise ModelUriError(f"unsupported model URI {text!r}: use runs:/, models:/ or a local directory")
    return LocalDir(Path(text))


def files_of(artifact_uri: str) -> RunFiles | LoggedModelFiles:
    """The run's or logged model's files behind a registered version's artifact URI:
    ``runs:/``, ``models:/m-...``, or the server's ``mlflow-artifacts:/<experiment>/<run>/artifacts/<path>``
    and ``mlflow-artifacts:/<experiment>/models/<model_id>/artifacts/<path>``."""
    if artifact_uri.startswith(("runs:/", "models:/m-")):
        found = parse(artifact_uri)
        if isinstance(found, (RunFiles, LoggedModelFiles)):
            return found
    parts = artifact_uri.removeprefix("mlflow-artifacts:").strip("/").split("/")
    if artifact_uri.startswith("mlflow-artifacts:"):
        if len(parts) >= 4 and parts[2] == "artifacts":
            return RunFiles(parts[1], "/".join(parts[3:]))
        if len(parts) >= 4 and parts[1] == "models" and parts[3] == "artifacts" and parts[2].startswith("m-"):
            return LoggedModelFiles(parts[2], "/".join(parts[4:]))
    raise ModelUriError(
        f"the registry points at {artifact_uri!r}, which is neither a run's nor a logged model's files: eventflow "
        "loads only models whose files the log recorded with their sha256"
    )


def resolve_registry(ref: RegistryRef, tracking_uri: str) -> VersionFiles:
    """Ask the tracking server (or, for a home or broker URI, its registry views read in
    this process) which version a registry URI names, and whose files it is.

    The seam between models and the registry: MLflow's REST paths
    ``registered-models/alias`` (alias → version) and ``model-versions/get-download-uri``
    (version → artifact URI), answered by eventflow's registry like MLflow's.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return _resolve_in_store(ref, tracking_uri)
    import httpx  # here: loading a model from a file must not pay for an HTTP client

    from eventflow.sdk.credentials import Credentials
    from eventflow.sdk.unreachable import reaching

    base = tracking_uri.rstrip("/") + "/api/2.0/mlflow"
    with reaching(tracking_uri), httpx.Client(timeout=30, auth=Credentials.from_env().auth()) as http:
        version = ref.version
        if ref.alias is not None:
            found = _get(http, f"{base}/registered-models/alias", {"name": ref.name, "alias": ref.alias}, ref)
            version = str(found["model_version"]["version"])
        found = _get(http, f"{base}/model-versions/get-download-uri", {"name": ref.name, "version": version}, ref)
    return VersionFiles(ref, str(version), files_of(found["artifact_uri"]))


def _resolve_in_store(ref: RegistryRef, tracking_uri: str) -> VersionFiles:
    """The same answer from the registry views of a home (or a broker's views), read in-process."""
    from eventflow.sdk.client import Client
    from eventflow.validation import InvalidInput

    label = f"models:/{ref.name}" + (f"@{ref.alias}" if ref.alias else f"/{ref.version}")
    try:
        with Client(tracking_uri) as client:
            if ref.alias is not None:
                found = client.get_model_version_by_alias(ref.name, ref.alias)
            else:
                found = client.get_model_version(ref.name, ref.version or "")
    except InvalidInput as error:
        raise ModelUriError(f"cannot resolve {label}: {error.message}") from None
    if found is None:
        missing = f"no alias {ref.alias!r}" if ref.alias else f"no version {ref.version}"
        raise ModelUriError(f"cannot resolve {label}: model {ref.name!r} has {missing} in the registry at {tracking_uri}")
    return VersionFiles(ref, str(found["version"]), files_of(found["source"]))


def _get(http: httpx.Client, url: str, params: dict[str, str | None], ref: RegistryRef) -> dict:
    response = http.get(url, params=params)
    if response.status_code == 200:
        return response.json()
    try:
        message = response.json().get("message", response.text)
    except ValueError:
        message = response.text
    label = f"models:/{ref.name}" + (f"@{ref.alias}" if ref.alias else f"/{ref.version}")
    if response.status_code == 404 and "ENDPOINT_NOT_FOUND" in response.text:
        raise ModelUriError(f"cannot resolve {label}: the tracking server has no model registry ({message})")
    raise ModelUriError(f"cannot resolve {label}: {message}")
