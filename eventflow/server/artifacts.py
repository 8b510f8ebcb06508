"""Artifacts: MLflow's proxied artifact service over a local store, recorded on the log.

Paths are ``<experiment_id>/<run_id>/artifacts/<file>``, as MLflow's ``mlflow-artifacts:/``
root lays them out (MLflow 3's logged models under ``<experiment_id>/models/<model_id>/artifacts/``).
Every upload becomes a ``run.artifact_logged`` (or ``logged_model.artifact_logged``) event
with its size and sha256, so a download can be checked against what the log vouches for.

A run's files are frozen once the run has ended (a logged model's once it is finalized):
an upload or a delete then answers 409 RESOURCE_CONFLICT before a byte is written, so a
model cannot be swapped under a version that was registered, or a deployment, from it.
The store's root and anything but a run's or logged model's artifacts cannot be deleted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from eventflow import commands, rules
from eventflow.auth import context as access
from eventflow.auth import policy
from eventflow.server.artifact_responses import file_response, safe_path
from eventflow.server.errors import ApiError, not_found
from eventflow.server.runtime import Runtime
from eventflow.views import queries

Check = Callable[[Runtime, str, Path], None]  # raises unless the file at the store path is vouched for
PREFIXES = ("/api/2.0/mlflow-artifacts/artifacts", "/ajax-api/2.0/mlflow-artifacts/artifacts")


def listing(runtime: Runtime, relative: str) -> list[dict[str, Any]]:
    """The entries of one directory of the store, named relative to it (as MLflow does)."""
    directory = runtime.artifact_file(relative)
    if not directory.is_dir():
        return []
    files = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(".") and entry.name.endswith(".partial"):
            continue
        item: dict[str, Any] = {"path": entry.name, "is_dir": entry.is_dir()}
        if entry.is_file():
            item["file_size"] = entry.stat().st_size
        files.append(item)
    return files


def _run_of(relative: str, *, whole: bool = False) -> tuple[str, str] | None:
    """(run_id, path inside the run's artifacts) for ``<exp>/<run>/artifacts/<path>``
    (``whole``: also the artifacts directory itself, with the path "")."""
    parts = relative.strip("/").split("/")
    if len(parts) >= (3 if whole else 4) and parts[2] == "artifacts" and parts[1] != "models":
        return parts[1], "/".join(parts[3:])
    return None


def _logged_model_of(relative: str, *, whole: bool = False) -> tuple[str, str] | None:
    """(model_id, path inside its artifacts) for MLflow 3's ``<exp>/models/<model_id>/artifacts/<path>``."""
    parts = relative.strip("/").split("/")
    if len(parts) >= (4 if whole else 5) and parts[1] == "models" and parts[3] == "artifacts" and parts[2].startswith("m-"):
        return parts[2], "/".join(parts[4:])
    return None


def _check_changeable(runtime: Runtime, relative: str, *, deleting: bool = False) -> bool:
    """Refuse to change the files of a run that has ended (or a finalized logged model);
    True when the path is a run's or logged model's, whose changes go on the log.

    Deleting a deleted run's files stays possible: that is ``mlflow gc`` reclaiming them.
    """
    owner, model = _run_of(relative, whole=deleting), _logged_model_of(relative, whole=deleting)
    if owner is not None:
        info = runtime.read(queries.get_run_info, owner[0])
        if info is None:
            raise not_found(f"Run with id={owner[0]} not found")
        if deleting and info["lifecycle_stage"] == "deleted":
            return True
        rules.run_files_open(owner[0], info["status"] if info["lifecycle_stage"] == "active" else "deleted")
        return True
    if model is not None:
        logged = runtime.read(queries.get_logged_model, model[0])
        if logged is None:
            if deleting:
                raise not_found(f"Logged model with ID '{model[0]}' not found.")
            return False  # not a logged model's directory after all: stored, not recorded
        status = logged["info"].get("status")
        if status != "LOGGED_MODEL_PENDING":
            raise ApiError(
                f"Logged model {model[0]} is {status}: its artifacts cannot be changed once it is finalized. "
                "Log a new model instead.",
                "RESOURCE_CONFLICT",
            )
        return True
    if deleting:
        raise ApiError(
            f"Invalid artifact path {relative!r} to delete: only files inside a run's or a logged model's artifacts "
            "(<experiment_id>/<run_id>/artifacts/...) can be deleted, never the store, an experiment or a run directory",
            "INVALID_PARAMETER_VALUE",
        )
    return False


def _target(runtime: Runtime, relative: str, action: str) -> Path:
    """The file an upload or delete names; never the store's root."""
    target = runtime.artifact_file(relative)
    if not relative.strip("/"):
        raise ApiError(
            f"Invalid artifact path {relative!r}: cannot {action} the artifact store's root; "
            "name a file, e.g. <experiment_id>/<run_id>/artifacts/model.pkl",
            "INVALID_PARAMETER_VALUE",
        )
    return target


async def upload(request: Request, runtime: Runtime) -> JSONResponse:
    await store_upload(request, runtime, request.path_params["path"])
    return JSONResponse({})


class TooLarge(ApiError):
    """Raised while an upload with a size limit is read, before more of it is written."""


async def store_upload(request: Request, runtime: Runtime, relative: str, *, limit: int | None = None,
                       too_large: str = "", empty: str = "") -> int:
    """Write the request's body to the store path ``relative`` (a run's or logged model's
    file is recorded on the log with its size and sha256); returns the size. ``limit``
    bytes at most (else ``too_large``), and at least one when ``empty`` says why."""
    target = _target(runtime, relative, "upload to")
    whole = _run_of(relative, whole=True) or _logged_model_of(relative, whole=True)
    if target.is_dir() or (whole is not None and not whole[1]):
        raise ApiError(f"Invalid artifact path {relative!r}: it is a directory; upload to a file inside it", "INVALID_PARAMETER_VALUE")
    recorded = await run_in_threadpool(_check_changeable, runtime, relative)
    owner, model = _run_of(relative), _logged_model_of(relative)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ApiError(f"Invalid artifact path {relative!r}: a part of it is a file, not a directory", "INVALID_PARAMETER_VALUE") from None
    digest = hashlib.sha256()
    size = 0
    # Write beside the target (inside the store: the root is refused) and rename: a
    # reader never sees half a file, and a refused or broken upload leaves nothing.
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".", suffix=".partial", delete=False) as partial:
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if limit is not None and size > limit:
                    raise TooLarge(too_large)
                partial.write(chunk)
                digest.update(chunk)
            partial.close()
            if empty and not size:
                raise ApiError(empty)
            # The run may have ended while the body arrived.
            await run_in_threadpool(_check_changeable, runtime, relative)
            os.replace(partial.name, target)
        finally:
            if os.path.exists(partial.name):
                os.unlink(partial.name)
    if recorded and owner is not None:
        event = commands.log_artifact(owner[0], owner[1], size, digest.hexdigest())
        await run_in_threadpool(runtime.write, [event])
    elif recorded and model is not None:
        event = commands.log_logged_model_artifact(model[0], model[1], size, digest.hexdigest())
        await run_in_threadpool(runtime.write, [event])
    return size


def _sha256(path: os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(runtime: Runtime, relative: str, target: os.PathLike[str]) -> None:
    """Refuse to serve a run's (or logged model's) file that differs from what its artifact event recorded."""
    owner, model = _run_of(relative), _logged_model_of(relative)
    if owner is not None:
        recorded = runtime.read(queries.artifact_digest, *owner)
    elif model is not None:
        recorded = runtime.read(queries.logged_model_artifact_digest, *model)
    else:
        return
    if recorded is not None and _sha256(target) != recorded:
        raise ApiError(
            f"Artifact {relative!r} does not match the sha256 the log recorded for it ({recorded[:12]}…): "
            "the stored file was changed or corrupted after it was logged",
            "INTERNAL_ERROR",
        )


async def download(request: Request, runtime: Runtime) -> Response:
    return await send(runtime, request.path_params["path"])


async def send(runtime: Runtime, relative: str, *, shown: str | None = None, check: Check | None = None) -> Response:
    """The store's file at ``relative``, checked against the digest that vouches for it
    (the log's record by default; ``check`` for another, e.g. a version's pins), with
    MLflow's headers. ``shown`` is the path the client asked for, named in errors."""
    shown = relative if shown is None else shown
    target = runtime.artifact_file(relative)
    if target.is_dir():
        raise ApiError(f"Artifact path refers to a directory, not a file: '{shown}'")
    if not target.is_file():
        raise not_found(f"Artifact {shown!r} does not exist")
    await run_in_threadpool(check or _verify, runtime, relative, target)
    return file_response(target)


async def delete(request: Request, runtime: Runtime) -> JSONResponse:
    relative = request.path_params["path"]
    target = _target(runtime, relative, "delete")
    await run_in_threadpool(_check_changeable, runtime, relative, deleting=True)
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    return JSONResponse({})


async def list_root(request: Request, runtime: Runtime) -> JSONResponse:
    relative = safe_path(request.query_params.get("path", ""))
    return JSONResponse({"files": await run_in_threadpool(listing, runtime, relative)})


async def list_run_artifacts(request: Request, runtime: Runtime) -> JSONResponse:
    """``/api/2.0/mlflow/artifacts/list``: a run's files under ``path``."""
    run_id = request.query_params.get("run_id") or request.query_params.get("run_uuid")
    if not run_id:
        raise ApiError("Missing value for required parameter 'run_id'.")
    inner = safe_path(request.query_params.get("path", "")).strip("/")
    info = await run_in_threadpool(runtime.read, queries.get_run_info, run_id)
    if info is None:
        raise not_found(f"Run with id={run_id} not found")
    root_uri = info["artifact_uri"]
    base = root_uri.removeprefix("mlflow-artifacts:/").strip("/")
    files = await run_in_threadpool(listing, runtime, f"{base}/{inner}".strip("/"))
    for item in files:
        item["path"] = f"{inner}/{item['path']}".strip("/")  # relative to the run's root
    return JSONResponse({"root_uri": root_uri, "files": files})


async def digests(request: Request, runtime: Runtime) -> JSONResponse:
    """``/api/2.0/eventflow/artifacts/digests``: the size and sha256 the log recorded for each
    of a run's (``run_id``) or a logged model's (``model_id``) files under ``path``, so a
    client can check what it downloads (model loading refuses any file the log does not
    vouch for)."""
    run_id, model_id = request.query_params.get("run_id"), request.query_params.get("model_id")
    path = request.query_params.get("path", "")
    if bool(run_id) == bool(model_id):
        raise ApiError("Give exactly one of the parameters 'run_id' and 'model_id'.")
    if run_id:
        if await run_in_threadpool(runtime.read, queries.get_run_info, run_id) is None:
            raise not_found(f"Run with id={run_id} not found")
        files = await run_in_threadpool(runtime.read, queries.artifact_digests, run_id, path)
    else:
        if await run_in_threadpool(runtime.read, queries.get_logged_model, model_id) is None:
            raise not_found(f"Logged model with ID '{model_id}' not found.")
        files = await run_in_threadpool(runtime.read, queries.logged_model_digests, model_id, path)
    return JSONResponse({"files": files})


async def pinned_files(request: Request, runtime: Runtime) -> JSONResponse:
    """``/api/2.0/eventflow/model-versions/files``: the files a model version (``name``,
    ``version``) pinned when it was created — path inside the model, size and sha256 —
    which loading, serving and deploying it verify every download against."""
    from eventflow.registry.api import get_model_version_files

    data = {key: request.query_params.get(key) for key in ("name", "version")}
    return JSONResponse(await run_in_threadpool(get_model_version_files, runtime, data))


def _bind(handler, runtime: Runtime):  # type: ignore[no-untyped-def]
    async def endpoint(request: Request) -> Response:
        principal = access.current()
        if principal is not None:
            store_path = request.path_params.get("path", request.query_params.get("path", "")) if handler in STORE_HANDLERS else None
            await run_in_threadpool(runtime.read, policy.authorize_artifact, principal, request.method, store_path, dict(request.query_params))
        return await handler(request, runtime)

    return endpoint


STORE_HANDLERS = (list_root, upload, download, delete)  # named by a store path; the others by a run or model id


def routes(runtime: Runtime) -> list[Route]:
    out = []
    for prefix in PREFIXES:
        out += [
            Route(prefix, _bind(list_root, runtime), methods=["GET"]),
            Route(prefix + "/{path:path}", _bind(upload, runtime), methods=["PUT"]),
            Route(prefix + "/{path:path}", _bind(download, runtime), methods=["GET"]),
            Route(prefix + "/{path:path}", _bind(delete, runtime), methods=["DELETE"]),
        ]
    for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow"):
        out.append(Route(prefix + "/artifacts/list", _bind(list_run_artifacts, runtime), methods=["GET"]))
    out.append(Route("/api/2.0/eventflow/artifacts/digests", _bind(digests, runtime), methods=["GET"]))
    out.append(Route("/api/2.0/eventflow/model-versions/files", _bind(pinned_files, runtime), methods=["GET"]))
    return out

