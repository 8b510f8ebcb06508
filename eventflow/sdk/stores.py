"""Where the SDK sends events and reads state: straight to a log, or through a server.

``LocalStore`` talks to the log itself (the embedded log under the eventflow home, or a
Kafka cluster) and reads SQL views it keeps current by running the projector in this
process before a read — safe beside the server's own projector, because the projector
fences its offsets. ``HttpStore`` talks to an ``eventflow server``.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import hashlib
import os
import shutil
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from eventflow.events import Event
from eventflow.log import Log
from eventflow.log.event_log import EventLog


class HomeUnavailable(RuntimeError):
    """The eventflow home cannot be written (read-only or full): say where, and what to do.

    Raised at the call that needs the home (``start_run``, ``Client()``, spooling), in
    place of a raw ``OSError`` or SQLite/SQLAlchemy error from deep inside.
    """

    @classmethod
    def because(cls, error: BaseException, path: str | os.PathLike[str]) -> "HomeUnavailable":
        text = str(error).lower()
        if getattr(error, "errno", None) == errno.ENOSPC or "full" in text or "no space" in text:
            return cls(
                f"the eventflow home {str(path)!r} is full ({error}): free space there, "
                "or set EVENTFLOW_HOME to a directory with room"
            )
        if getattr(error, "errno", None) in (errno.EROFS, errno.EACCES, errno.EPERM) or "readonly" in text or "read-only" in text:
            return cls(
                f"the eventflow home {str(path)!r} is read-only ({error}): set EVENTFLOW_HOME "
                "to a directory this process can write"
            )
        return cls(f"the eventflow home {str(path)!r} cannot be used ({error}): set EVENTFLOW_HOME to a writable directory")


def check_writable(path: Path) -> None:
    """Write and fsync a few bytes in ``path``: a read-only or full home fails here, clearly."""
    probe = path / f".probe-{os.getpid()}"
    try:
        with open(probe, "wb") as handle:
            handle.write(b"eventflow")
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as error:
        with contextlib.suppress(OSError):
            probe.unlink()
        raise HomeUnavailable.because(error, path) from error


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Store(abc.ABC):
    """What the SDK needs from eventflow."""

    # True when storing an artifact already puts its event on the log.
    records_uploads = False

    @abc.abstractmethod
    def append(self, events: Sequence[Event]) -> None:
        """Append events durably (raises on failure; the sender retries)."""

    @abc.abstractmethod
    def experiment_artifact_location(self, experiment_id: str) -> str:
        """Where a new experiment's runs keep their artifacts."""

    def artifact_root(self, experiment_id: str, run_id: str) -> str:
        """The artifact URI of a new run."""
        return f"{self.experiment_artifact_location(experiment_id)}/{run_id}/artifacts"

    @abc.abstractmethod
    def upload_artifact(self, artifact_uri: str, local_file: Path, artifact_path: str) -> tuple[int, str]:
        """Store a file under a run's artifacts; returns its size and sha256."""

    @abc.abstractmethod
    def download_artifact(self, artifact_uri: str, artifact_path: str, local_file: Path) -> None:
        """Copy one of a run's stored files to ``local_file`` (as stored: check it yourself)."""

    @abc.abstractmethod
    def artifact_digests(self, run_id: str, path: str = "") -> list[dict[str, Any]]:
        """The files the log recorded for a run under ``path``: ``{path, size, sha256}`` each."""

    @abc.abstractmethod
    def logged_model_digests(self, model_id: str, path: str = "") -> list[dict[str, Any]]:
        """The same for an MLflow 3 logged model's files."""

    @abc.abstractmethod
    def model_version_files(self, name: str, version: str) -> list[dict[str, Any]]:
        """The files a registered model version pinned when it was created: ``{path, size,
        sha256}`` each, the path inside the model's directory (empty: nothing pinned)."""

    @abc.abstractmethod
    def get_logged_model(self, model_id: str) -> dict[str, Any] | None: ...

    # Reads; each sees every event appended through this store before it.
    @abc.abstractmethod
    def get_experiment(self, experiment_id: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def get_experiment_by_name(self, name: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def search_experiments(self, view_type: str = "ACTIVE_ONLY", max_results: int = 1000) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def get_run(self, run_id: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def search_runs(self, experiment_ids: Sequence[str], max_results: int = 1000, order_by: Sequence[str] = (),
                    filter_string: str | None = None, run_view_type: str = "ACTIVE_ONLY") -> list[dict[str, Any]]:
        """Runs of the experiments matching MLflow's filter grammar, up to ``max_results``."""

    @abc.abstractmethod
    def metric_history(self, run_id: str, key: str) -> list[dict[str, Any]]: ...

    def stop_request(self, run_id: str) -> dict[str, Any] | None:
        """The stop someone asked for the run (``run.stop_requested``: requested_time, actor,
        reason), or None: none, or the run is not visible yet."""
        return None

    def run_project(self, run_id: str) -> dict[str, Any] | None:
        """What a project run ran (its ``run.project_recorded``), None for another run;
        raises InvalidInput when the run does not exist."""
        raise NotImplementedError(f"{type(self).__name__} cannot read project records")

    def close(self) -> None:
        pass


class LocalStore(Store):
    def __init__(self, log: Log, views_url: str, artifacts: Path):
        from eventflow.consumers.base import ConsumerLoop
        from eventflow.consumers.projector import Projector
        from eventflow.views.db import open_views

        self.log = log
        self.events = EventLog(log)
        self.engine = open_views(views_url)
        self.artifacts = Path(artifacts)
        self._projector = ConsumerLoop(log, Projector(self.engine), join_group=False)
        self._lock = threading.Lock()

    def append(self, events: Sequence[Event]) -> None:
        self.events.append_many(events)

    def catch_up(self) -> None:
        with self._lock:
            self._projector.catch_up()

    def experiment_artifact_location(self, experiment_id: str) -> str:
        return (self.artifacts / experiment_id).as_uri()

    def upload_artifact(self, artifact_uri: str, local_file: Path, artifact_path: str) -> tuple[int, str]:
        target = self._directory(artifact_uri) / artifact_path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local_file, target)
        return os.path.getsize(target), sha256_of(target)

    def download_artifact(self, artifact_uri: str, artifact_path: str, local_file: Path) -> None:
        local_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._directory(artifact_uri) / artifact_path, local_file)

    def _directory(self, artifact_uri: str) -> Path:
        """The local directory of a run's artifacts: a ``file:`` URI, or the server's
        ``mlflow-artifacts:/<exp>/<run>/artifacts`` over this same home (a run created
        through a server, or a project run that MLflow code logs into)."""
        if artifact_uri.startswith("mlflow-artifacts:"):
            relative = artifact_uri.removeprefix("mlflow-artifacts:").strip("/")
            if any(part in ("", ".", "..") for part in relative.split("/")):
                raise ValueError(f"not an artifact location of this store: {artifact_uri!r}")
            return self.artifacts / relative
        return Path(url2pathname(urlparse(artifact_uri).path))

    def artifact_digests(self, run_id: str, path: str = "") -> list[dict[str, Any]]:
        from eventflow.views import queries

        return self._read(queries.artifact_digests, run_id, path)

    def logged_model_digests(self, model_id: str, path: str = "") -> list[dict[str, Any]]:
        from eventflow.views import queries

        return self._read(queries.logged_model_digests, model_id, path)

    def model_version_files(self, name: str, version: str) -> list[dict[str, Any]]:
        from eventflow.registry.api import get_model_version_files
        from eventflow.registry.client import _LocalBackend

        return get_model_version_files(_LocalBackend(self), {"name": name, "version": version})["files"]

    def get_logged_model(self, model_id: str) -> dict[str, Any] | None:
        from eventflow.views import queries

        return self._read(queries.get_logged_model, model_id)

    def _read(self, query, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
        self.catch_up()
        with self.engine.connect() as connection:
            return query(connection, *args, **kwargs)

    def get_experiment(self, experiment_id: str) -> dict[str, Any] | None:
        from eventflow.views import queries

        return self._read(queries.get_experiment, experiment_id)

    def get_experiment_by_name(self, name: str) -> dict[str, Any] | None:
        from eventflow.views import queries

        return self._read(queries.get_experiment_by_name, name)

    def search_experiments(self, view_type: str = "ACTIVE_ONLY", max_results: int = 1000) -> list[dict[str, Any]]:
        from eventflow.views import queries

        return self._read(queries.search_experiments, view_type=view_type, max_results=max_results)[0]

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        from eventflow.views import queries

        return self._read(queries.get_run, run_id)

    def search_runs(self, experiment_ids: Sequence[str], max_results: int = 1000, order_by: Sequence[str] = (),
                    filter_string: str | None = None, run_view_type: str = "ACTIVE_ONLY") -> list[dict[str, Any]]:
        from eventflow.views import queries

        return self._read(queries.search_runs, list(experiment_ids), run_view_type=run_view_type, max_results=max_results,
                          order_by=list(order_by), filter_string=filter_string)[0]

    def metric_history(self, run_id: str, key: str) -> list[dict[str, Any]]:
        from eventflow.views import queries

        return self._read(queries.metric_history, run_id, key)[0]

    def stop_request(self, run_id: str) -> dict[str, Any] | None:
        """Read as the views are, without projecting first: polled every second, a catch-up
        would make the training process project its own points all along. The server that
        took the request has applied it, to these very views on the embedded default; over
        kafka:// (views of their own) it shows at this store's next catch-up only."""
        from eventflow.views import queries

        with self.engine.connect() as connection:
            return queries.get_stop_request(connection, run_id)

    def run_project(self, run_id: str) -> dict[str, Any] | None:
        from eventflow.validation import InvalidInput
        from eventflow.views import queries

        if self._read(queries.get_run_info, run_id) is None:
            raise InvalidInput(f"Run with id={run_id} not found", "RESOURCE_DOES_NOT_EXIST")
        return self._read(queries.get_run_project, run_id)

    def close(self) -> None:
        self._projector.close()
        self.engine.dispose()
        self.log.close()


def open_store(uri: str | None) -> Store:
    """A store for a tracking URI: nothing or a path (embedded), ``kafka://``, ``http(s)://``."""
    if uri:
        from eventflow.config import check_tracking_uri

        check_tracking_uri(uri)
    if uri and uri.startswith(("http://", "https://")):
        from eventflow.sdk.http_store import HttpStore

        return HttpStore(uri)
    from eventflow.log import open_log

    with _home_errors(uri):
        log_uri, views_url, artifacts = local_parts(uri)
        return LocalStore(open_log(log_uri), views_url, artifacts)


def local_parts(uri: str | None) -> tuple[str, str, Path]:
    """(log URI, views URL, artifact directory) behind a non-HTTP tracking URI: what a
    ``LocalStore`` opens, and what a loopback server over the same home serves."""
    from eventflow.config import Home

    with _home_errors(uri):
        home = Home.resolve(_home_path(uri))
        check_writable(home.path)
        if uri and uri.startswith("kafka://"):
            return uri, os.environ.get("EVENTFLOW_DB") or f"sqlite:///{home.path / 'kafka-views.db'}", home.artifacts_dir
        return str(home.log_dir), home.views_url, home.artifacts_dir


def _home_path(uri: str | None) -> str | None:
    return uri.removeprefix("file://") if uri and not uri.startswith("kafka://") else None


@contextlib.contextmanager
def _home_errors(uri: str | None):  # type: ignore[no-untyped-def]
    """A home that cannot be used becomes a ``HomeUnavailable`` that says where and why."""
    from sqlalchemy.exc import SQLAlchemyError

    from eventflow.config import DEFAULT_HOME

    try:
        yield
    except HomeUnavailable:
        raise
    except (OSError, sqlite3.Error, SQLAlchemyError) as error:
        path = Path(_home_path(uri) or os.environ.get("EVENTFLOW_HOME") or DEFAULT_HOME).expanduser()
        raise HomeUnavailable.because(error, path) from error
