"""The artifact routes of MLflow's UI, over the same store and the same checks.

- ``GET /get-artifact?run_id|run_uuid=&path=``: a run's file, checked against the log;
- ``GET /model-versions/get-artifact?name=&version=&path=``: a registered version's file,
  checked against the digest the version pinned when it was created — what was
  registered is what is shown, as what is loaded;
- ``POST /ajax-api/2.0/mlflow/upload-artifact?run_uuid=&path=`` (the body is the file, at
  most 10 MB as in MLflow): the REST upload's rules, a run's files frozen once it ended,
  and a ``run.artifact_logged`` on the log;
- a logged model's ``…/logged-models/{model_id}/artifacts/directories`` (JSON, a tracking
  endpoint) and ``/ajax-api/2.0/mlflow/logged-models/{model_id}/artifacts/files``.

Each route's permission is in ``eventflow.auth.policy.ROUTES`` under its name here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from eventflow.auth import context as access
from eventflow.auth import policy
from eventflow.registry import api as registry
from eventflow.registry import queries as rq
from eventflow.sdk.stores import sha256_of
from eventflow.server import artifacts
from eventflow.server.artifact_responses import safe_path
from eventflow.server.errors import ApiError, not_found
from eventflow.server.runtime import Runtime
from eventflow.views import queries

UPLOAD_LIMIT = 10 * 1024 * 1024  # MLflow's
TOO_LARGE = "Artifact size is too large. Max size is 10MB."


def store_path(uri: str, store: Path) -> str:
    """The store path behind an artifact URI this server hands out: ``mlflow-artifacts:/…``,
    or a local path inside the store (an experiment created with such a location)."""
    parts = urlsplit(uri)
    if parts.scheme == "mlflow-artifacts":
        return parts.path.strip("/")
    local = url2pathname(parts.path) if parts.scheme == "file" else uri
    if local.startswith("/"):
        target, root = Path(os.path.realpath(local)), store.resolve()
        if target == root or root in target.parents:
            return target.relative_to(root).as_posix()
    raise ApiError(f"The artifacts at {uri!r} are not in this server's artifact store: read them where they are", "INVALID_PARAMETER_VALUE")


def _join(*parts: str) -> str:
    return "/".join(part.strip("/") for part in parts if part.strip("/"))


def _run_root(runtime: Runtime, run_id: str | None) -> str:
    if not run_id:
        raise ApiError("Missing value for required parameter 'run_id'.")
    info = runtime.read(queries.get_run_info, run_id)
    if info is None:
        raise not_found(f"Run with id={run_id} not found")
    return store_path(info["artifact_uri"], runtime.artifacts)


def _logged_model(runtime: Runtime, model_id: str) -> dict[str, Any]:
    logged = runtime.read(queries.get_logged_model, model_id)
    if logged is None:
        raise not_found(f"Logged model with ID '{model_id}' not found.")
    return logged


def _required_path(request: Request) -> str:
    path = request.query_params.get("path")
    if path is None:
        raise ApiError("Missing value for required parameter 'path'.")
    return safe_path(path)


async def get_artifact(request: Request, runtime: Runtime) -> Response:
    path = _required_path(request)
    run_id = request.query_params.get("run_id") or request.query_params.get("run_uuid")
    root = await run_in_threadpool(_run_root, runtime, run_id)
    return await artifacts.send(runtime, _join(root, path), shown=path)


def _pinned(runtime: Runtime, name: str | None, version: str | None, path: str) -> tuple[str, artifacts.Check]:
    """The store path of a version's file, and the check against the digest it pinned."""
    found = registry.get_model_version(runtime, {"name": name, "version": version})["model_version"]
    label = f"{found['name']} version {found['version']}"
    pins = {pin["path"]: pin for pin in runtime.read(rq.version_files, found["name"], found["version"])}
    if not pins:
        raise ApiError(
            f"{label} pinned no files when it was created (its source had none recorded on the log then), so none of "
            "its files can be verified. Register the model again, from a run or logged model whose files were logged.",
            "INVALID_STATE",
        )
    pin = pins.get(path.strip("/"))
    if pin is None:
        shown = ", ".join(sorted(pins)[:20])
        raise not_found(f"{label} pinned no file {path!r} when it was created; it pinned: {shown}")
    base = store_path(registry.download_uri(runtime, found), runtime.artifacts)

    def check(runtime: Runtime, relative: str, target: Path) -> None:
        actual = sha256_of(target)
        if actual != pin["sha256"]:
            raise ApiError(
                f"Artifact {path!r} of {label} has sha256 {actual}, but the version pinned {pin['sha256']} when it was "
                "registered: the stored file was changed or corrupted",
                "INTERNAL_ERROR",
            )

    return _join(base, path), check


async def get_model_version_artifact(request: Request, runtime: Runtime) -> Response:
    path = _required_path(request)
    query = request.query_params
    relative, check = await run_in_threadpool(_pinned, runtime, query.get("name"), query.get("version"), path)
    return await artifacts.send(runtime, relative, shown=path, check=check)


async def upload_artifact(request: Request, runtime: Runtime) -> JSONResponse:
    """MLflow's order of refusals, then the REST upload's (eventflow.server.artifacts)."""
    run_id, path = request.query_params.get("run_uuid"), request.query_params.get("path")
    if not run_id:
        raise ApiError("Request must specify run_uuid.")
    if not path:
        raise ApiError("Request must specify path.")
    safe_path(path)
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > UPLOAD_LIMIT:
        raise ApiError(TOO_LARGE)
    if length == "0":
        raise ApiError("Request must specify data.")
    root = await run_in_threadpool(_run_root, runtime, run_id)
    await artifacts.store_upload(request, runtime, _join(root, path), limit=UPLOAD_LIMIT, too_large=TOO_LARGE,
                                 empty="Request must specify data.")
    return JSONResponse({})


async def get_logged_model_artifact(request: Request, runtime: Runtime) -> Response:
    model_id = request.path_params["model_id"]
    path = request.query_params.get("artifact_file_path")
    if not path:
        raise ApiError('Request must include the "artifact_file_path" query parameter.', "BAD_REQUEST")
    safe_path(path)
    logged = await run_in_threadpool(_logged_model, runtime, model_id)
    return await artifacts.send(runtime, _join(store_path(logged["info"]["artifact_uri"], runtime.artifacts), path), shown=path)


def list_logged_model_artifacts(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    """``logged-models/{model_id}/artifacts/directories``: one directory of a logged
    model's files (``artifact_directory_path``), named from its root as MLflow names them."""
    given = data.get("artifact_directory_path")
    inner = safe_path(given).strip("/") if given else ""
    logged = _logged_model(runtime, str(data["model_id"]))
    root_uri = logged["info"]["artifact_uri"]
    files = artifacts.listing(runtime, _join(store_path(root_uri, runtime.artifacts), inner))
    for item in files:
        item["path"] = _join(inner, item["path"])
    return {"root_uri": root_uri, "files": files}


# name (its rule in eventflow.auth.policy.ROUTES) -> method, paths, handler
ROUTES = {
    "get-artifact": ("GET", ("/get-artifact",), get_artifact),
    "model-versions/get-artifact": ("GET", ("/model-versions/get-artifact",), get_model_version_artifact),
    "upload-artifact": ("POST", ("/ajax-api/2.0/mlflow/upload-artifact",), upload_artifact),
    "logged-models/{model_id}/artifacts/files": (
        "GET", ("/ajax-api/2.0/mlflow/logged-models/{model_id}/artifacts/files",), get_logged_model_artifact),
}
UPLOAD_PATHS = frozenset(ROUTES["upload-artifact"][1])


def _governed(name: str, handler, runtime: Runtime):  # type: ignore[no-untyped-def]
    async def endpoint(request: Request) -> Response:
        principal = access.current()
        if principal is not None:
            data = {**request.query_params, **request.path_params}
            await run_in_threadpool(runtime.read, policy.authorize, principal, name, data)
        return await handler(request, runtime)

    return endpoint


def routes(runtime: Runtime) -> list[Route]:
    return [Route(path, _governed(name, handler, runtime), methods=[method])
            for name, (method, paths, handler) in ROUTES.items() for path in paths]
