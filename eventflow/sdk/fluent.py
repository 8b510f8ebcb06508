"""The fluent API: MLflow's names, events underneath.

    import eventflow
    eventflow.set_experiment("churn")
    with eventflow.start_run(run_name="baseline"):
        eventflow.log_param("depth", 3)
        for step in range(100):
            eventflow.log_metric("loss", 1 / (step + 1), step=step)

Every call is checked at once (a bad key or value raises here, and nothing of it is
sent) and then only enqueued: the background sender appends it. A run that ends by an
exception becomes ``run.failed``; by SIGTERM or Ctrl-C ``run.killed``; otherwise
``run.finished``.

Training code is never held hostage by an unreachable server or broker: ending the
last run (and so the exit) waits at most ``EVENTFLOW_FLUSH_TIMEOUT`` seconds, SIGTERM
and Ctrl-C at most ``KILL_WAIT``; what is still unsent then goes to the local spool
(``spool.py``) with one line on stderr, and is sent by the next process that logs to
the same target, or by ``eventflow sync``.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventflow import commands, rules
from eventflow import environment_variables as env_vars
from eventflow import validation as v
from eventflow.config import check_tracking_uri, tracking_uri_from_env
from eventflow.sdk import environment, heartbeat, spool, system_metrics
from eventflow.sdk.stops import StopWatcher
from eventflow.sdk.sender import Sender
from eventflow.sdk.stores import HomeUnavailable, Store, open_store

if TYPE_CHECKING:
    from eventflow.sdk.runs import Run

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"

# SIGTERM and Ctrl-C: how long a stopping process lets the sender finish before spooling.
KILL_WAIT = 2.0


def flush_timeout() -> float:
    """``EVENTFLOW_FLUSH_TIMEOUT``: seconds ending the last run (and a normal exit) waits for
    the log to take what is pending, default 30; the rest is spooled, not lost.

    Why bounded: a script whose server or broker is down must still end. Why 30 s: long
    enough for a healthy but loaded server to take a large backlog, short enough that a
    job scheduler does not kill the script first.
    """
    raw = os.environ.get("EVENTFLOW_FLUSH_TIMEOUT", "30")
    try:
        seconds = float(raw)
    except ValueError:
        raise v.InvalidInput(f"EVENTFLOW_FLUSH_TIMEOUT must be a number of seconds, not {raw!r}") from None
    if not seconds >= 0:
        raise v.InvalidInput(f"EVENTFLOW_FLUSH_TIMEOUT must be 0 or more seconds, not {raw!r}")
    return seconds


@dataclass
class RunInfo:
    run_id: str
    experiment_id: str
    run_name: str
    artifact_uri: str
    start_time: int
    status: str = "RUNNING"
    end_time: int | None = None
    lifecycle_stage: str = "active"
    user_id: str = ""

    @property
    def run_uuid(self) -> str:
        return self.run_id


@dataclass
class ActiveRun:
    """The run being logged to; a context manager that ends it."""

    info: RunInfo
    params: dict[str, str] = field(default_factory=dict)
    # Resumed from EVENTFLOW_RUN_ID: the launcher (``eventflow run``) owns the run's end,
    # since it alone knows the exit code and still has the output to store.
    launched: bool = False
    monitor: Any = None  # the system metrics monitor (start_run(log_system_metrics=True))
    heartbeat: Any = None  # its signs of life (eventflow/sdk/heartbeat.py)

    @property
    def run_id(self) -> str:
        return self.info.run_id

    def __enter__(self) -> "ActiveRun":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            end_run("FINISHED")
        elif issubclass(exc_type, KeyboardInterrupt):
            end_run("KILLED")
        else:
            end_run("FAILED", error_message=f"{exc_type.__name__}: {exc}")


class _Terminated(BaseException):
    """SIGTERM while the exit waits for the log: ends the wait (caught in ``settle``)."""


class _Session:
    """This process's connection: one store, one sender, the stack of active runs."""

    def __init__(self) -> None:
        self.uri: str | None = None
        self._store: Store | None = None
        self._sender: Sender | None = None
        self.experiment_id: str | None = None
        self.runs: list[ActiveRun] = []
        self.last_run_id: str | None = None  # the run this process ended last (last_active_run)
        self.lock = threading.RLock()
        self.settling: str | None = None  # "waiting" or "spooling" inside settle()
        self.terminated = False  # a SIGTERM came while spooling; delivered again after it

    @property
    def store(self) -> Store:
        with self.lock:
            if self._store is None:
                self._store = open_store(self.uri or tracking_uri_from_env())
            return self._store

    @property
    def sender(self) -> Sender:
        with self.lock:
            if self._sender is None:
                # Items waiting to be sent before log calls block (never drop).
                max_pending = int(os.environ.get("EVENTFLOW_MAX_PENDING", "1000000"))
                flush_timeout()  # a bad value fails now, not at exit with events pending
                self._sender = Sender(self.store.append, max_pending=max_pending, before=self._send_spool)
            return self._sender

    def _send_spool(self, sender: Sender) -> None:
        """First thing a new sender does: send what earlier processes spooled for this target."""
        where = spool.directory(spool.root(), get_tracking_uri())
        if where.is_dir():
            spool.send(where, self.store.append, stop=lambda: sender.stopping)

    def settle(self, wait: float) -> None:
        """Let the sender finish for up to ``wait`` s; spool what it has not, and say so.

        A SIGTERM or Ctrl-C during the wait ends the wait (spool now); one while spooling
        waits for the spool file to be written, then the process ends by it.
        """
        sender = self._sender
        if sender is None or self.settling:
            return
        interrupted: BaseException | None = None
        self.settling = "waiting"
        try:
            try:
                sender.flush(wait)
                sender = None
            except TimeoutError:
                pass
            except (KeyboardInterrupt, _Terminated) as error:
                interrupted = error
            self.settling = "spooling"
            if sender is not None:
                self._spool(sender)
        finally:
            self.settling = None
        if isinstance(interrupted, KeyboardInterrupt):
            raise interrupted
        if self.terminated or interrupted is not None:
            self.terminated = False
            os.kill(os.getpid(), signal.SIGTERM)

    def _spool(self, sender: Sender) -> None:
        events = sender.take_unsent()
        self._sender = None  # a later log call starts a new sender, which sends the spool first
        if not events:
            return
        target = get_tracking_uri()
        try:
            path = spool.write(spool.root(), target, events)
        except HomeUnavailable as error:
            print(f"eventflow: {target} is unreachable, and {len(events)} unsent events could not be spooled: {error}",
                  file=sys.stderr, flush=True)
            raise
        print(f"eventflow: {target} is unreachable; {len(events)} unsent events are spooled in {path.parent} "
              "and will be sent by the next process that logs there, or run `eventflow sync`", file=sys.stderr, flush=True)

    def reset(self) -> None:
        with self.lock:
            self.settle(flush_timeout())  # bounded: an unreachable target gets a spool, not a hang
            if self._sender is not None:
                self._sender.close()
            if self._store is not None:
                self._store.close()
            self._store = self._sender = None
            self.experiment_id = None
            self.last_run_id = None  # it lives at the previous target


_session = _Session()
# A stop asked from outside (the dashboard) ends the active runs as Ctrl-C does (stops.py).
_stops = StopWatcher(lambda: _session._store, lambda: [r.run_id for r in _session.runs])


# -- where to log --------------------------------------------------------------------


def set_tracking_uri(uri: str | os.PathLike[str] | None) -> None:
    """Log to ``uri``: a directory (embedded), ``kafka://host:port``, ``http://server:port``."""
    if _session.runs:
        raise RuntimeError("end the active run before changing the tracking URI")
    checked = None if uri is None else check_tracking_uri(str(uri))
    _session.reset()
    _session.uri = checked


def get_tracking_uri() -> str:
    from eventflow.config import Home

    return _session.uri or tracking_uri_from_env() or str(Home.resolve().path)


def _ensure_default_experiment(store: Store) -> None:
    if store.get_experiment(DEFAULT_EXPERIMENT_ID) is None:
        location = store.experiment_artifact_location(DEFAULT_EXPERIMENT_ID)
        store.append([commands.create_experiment(DEFAULT_EXPERIMENT_ID, DEFAULT_EXPERIMENT_NAME, location)])


def set_experiment(experiment_name: str | None = None, experiment_id: str | None = None) -> dict[str, Any]:
    """Make an experiment the active one, creating it by name if it does not exist."""
    if (experiment_name is None) == (experiment_id is None):
        raise ValueError("set_experiment takes exactly one of experiment_name or experiment_id")
    store = _session.store
    _session.sender.flush()
    if experiment_id is not None:
        experiment = store.get_experiment(v.check_experiment_id(experiment_id))
        if experiment is None:
            raise v.InvalidInput(f"No Experiment with id={experiment_id} exists", "RESOURCE_DOES_NOT_EXIST")
    else:
        name = v.check_experiment_name(experiment_name)
        experiment = store.get_experiment_by_name(name)
        if experiment is None:
            if name == DEFAULT_EXPERIMENT_NAME:
                _ensure_default_experiment(store)
            else:
                new_id = commands.new_experiment_id()
                location = store.experiment_artifact_location(new_id)
                store.append([commands.create_experiment(new_id, name, location)])
            experiment = store.get_experiment_by_name(name)
            if experiment is None:
                raise RuntimeError(f"experiment {name!r} was created but is not visible: is the projector failing?")
    if experiment.get("lifecycle_stage") == "deleted":
        raise v.InvalidInput(
            f"Cannot set a deleted experiment {experiment['name']!r} as the active experiment. "
            "Restore it first or choose another name."
        )
    _session.experiment_id = experiment["experiment_id"]
    return experiment


# -- runs -----------------------------------------------------------------------------


def start_run(
    run_id: str | None = None,
    experiment_id: str | None = None,
    run_name: str | None = None,
    nested: bool = False,
    tags: dict[str, Any] | None = None,
    experiment: str | None = None,
    log_system_metrics: bool | None = None,
) -> ActiveRun:
    """Start a run (or resume ``run_id``); use it as a context manager to end it.

    Inside ``eventflow run`` (``EVENTFLOW_RUN_ID`` set), the first run resumes the run
    the launcher made, as MLflow's MLFLOW_RUN_ID does; ending it is left to the launcher.
    ``log_system_metrics`` (default: ``EVENTFLOW_ENABLE_SYSTEM_METRICS_LOGGING``) samples
    CPU, memory, disk, network and GPUs into ``system/...`` metrics until the run ends.
    """
    every = system_metrics.interval() if system_metrics.wanted(log_system_metrics) else None
    beats = heartbeat.every()  # checked before any run exists
    launched = False
    if run_id is None and not _session.runs and not nested and env_vars.RUN_ID.is_set:
        run_id, launched = env_vars.RUN_ID.get(), True
    if _session.runs and not nested:
        raise RuntimeError(
            f"Run with UUID {_session.runs[-1].run_id} is already active. To start a nested run, "
            "call start_run with nested=True; to start a new run, end the current one with end_run()."
        )
    if experiment is not None:
        set_experiment(experiment)
    store = _session.store
    sender = _session.sender
    if run_id is not None:
        sender.flush()
        found = store.get_run(v.check_run_id(run_id))
        if found is None and launched:
            found = _await_launched_run(store, run_id)
        if found is None:
            raise v.InvalidInput(f"Run with id={run_id} not found", "RESOURCE_DOES_NOT_EXIST")
        info = found["info"]
        active = ActiveRun(
            RunInfo(info["run_id"], info["experiment_id"], info["run_name"], info["artifact_uri"], info["start_time"]),
            params={p["key"]: p["value"] for p in found["data"].get("params", [])},
            launched=launched,
        )
        _session.runs.append(active)
        _install_exit_handlers()
        active.heartbeat = heartbeat.start(_beat(active.run_id, beats), beats)
        if every is not None:  # a resumed run's system metrics go on from its last step, as MLflow's
            steps = [m["step"] for m in found["data"].get("metrics", []) if m["key"].startswith(system_metrics.PREFIX)]
            active.monitor = system_metrics.start(_publisher(active.run_id), every, max(steps, default=-1) + 1)
        _stops.start()
        return active
    experiment_id = experiment_id or _session.experiment_id or os.environ.get("EVENTFLOW_EXPERIMENT_ID")
    if experiment_id is None:
        sender.flush()
        _ensure_default_experiment(store)
        experiment_id = DEFAULT_EXPERIMENT_ID
    new_id = commands.new_run_id()
    name = run_name or f"run-{new_id[:8]}"
    all_tags: dict[str, Any] = {}
    if os.environ.get("EVENTFLOW_CAPTURE_ENV", "true").lower() not in ("0", "false", "no"):
        all_tags.update(environment.capture())
    all_tags["mlflow.runName"] = name
    if _session.runs:
        all_tags["mlflow.parentRunId"] = _session.runs[-1].run_id
    all_tags.update(tags or {})
    start = int(time.time() * 1000)
    artifact_uri = store.artifact_root(experiment_id, new_id)
    event = commands.create_run(
        new_id,
        experiment_id,
        run_name=name,
        user_id=all_tags.get("mlflow.user", environment.user()),
        artifact_uri=artifact_uri,
        start_time=start,
        tags=all_tags,
        parent_run_id=_session.runs[-1].run_id if _session.runs else None,
    )
    sender.event(event)
    active = ActiveRun(RunInfo(new_id, experiment_id, name, artifact_uri, start))
    _session.runs.append(active)
    _install_exit_handlers()
    active.heartbeat = heartbeat.start(_beat(active.run_id, beats), beats)
    if every is not None:
        active.monitor = system_metrics.start(_publisher(active.run_id), every)
    _stops.start()
    if os.environ.get("EVENTFLOW_CAPTURE_ENV", "true").lower() not in ("0", "false", "no"):
        log_text(environment.installed_packages(), "environment/requirements.txt")
    return active


def _beat(run_id: str, seconds: float) -> Callable[[], None]:
    every_ms = max(1, int(seconds * 1000))
    return lambda: _session.sender.event(commands.run_alive(run_id, every_ms))


def _publisher(run_id: str) -> system_metrics.Publish:
    """Where a run's system metrics go: the sender, as any metric, to that run (not whichever
    run is active when a sample is taken)."""

    def publish(metrics: dict[str, float], timestamp: int, step: int) -> None:
        sender = _session.sender
        for key, value in metrics.items():
            sender.metric(run_id, *v.check_metric(key, value, timestamp, step))

    return publish


def _await_launched_run(store: Store, run_id: str) -> dict[str, Any] | None:
    """``eventflow run`` starts the entry point while it writes the run (so the code starts
    at once): wait for the run to be visible, for at most ``EVENTFLOW_LAUNCH_WAIT`` seconds."""
    deadline = time.monotonic() + float(env_vars.LAUNCH_WAIT.get() or 0)
    found = None
    while found is None and time.monotonic() < deadline:
        time.sleep(0.02)
        found = store.get_run(run_id)
    return found


def active_run() -> ActiveRun | None:
    return _session.runs[-1] if _session.runs else None


def _run() -> ActiveRun:
    """The active run, started on first use as MLflow does."""
    return _session.runs[-1] if _session.runs else start_run()


def end_run(status: str = "FINISHED", error_message: str | None = None) -> None:
    """End the active run with ``status`` (FINISHED, FAILED or KILLED).

    Ending the last run waits until everything logged is durable, for at most
    ``EVENTFLOW_FLUSH_TIMEOUT`` seconds (``KILL_WAIT`` for KILLED); the rest is spooled.
    """
    if not _session.runs:
        return
    _end_one(status, error_message)
    if not _session.runs:
        _session.settle(KILL_WAIT if status == "KILLED" else flush_timeout())


def _end_one(status: str, error_message: str | None) -> None:
    event = commands.end_run(_session.runs[-1].run_id, status, error_message=error_message)
    active = _session.runs.pop()
    if active.heartbeat is not None:  # no sign of life after the end
        active.heartbeat.stop()
    if active.monitor is not None:  # its last sample goes before the run's end
        active.monitor.stop()
    active.info.status = status
    _session.last_run_id = active.run_id
    if not active.launched:
        _session.sender.event(event)
        _print_links(active)


def _print_links(active: ActiveRun) -> None:
    """Where to see a run that just ended, as MLflow prints it, when it was logged to a
    server: that is where the dashboard is. Nothing for the embedded default or Kafka,
    which have no address to give (as MLflow prints nothing for a local store)."""
    target = get_tracking_uri()
    if not target.startswith(("http://", "https://")):
        return
    try:
        quiet = env_vars.SUPPRESS_PRINTING_URL_TO_STDOUT.get() or env_vars.MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT.get()
    except ValueError as error:  # a run is ending: say so, but do not fail the end over it
        print(f"eventflow: {error}", file=sys.stderr, flush=True)
        quiet = False
    if quiet:
        return
    from urllib.parse import quote, urlsplit

    parts = urlsplit(target)
    base = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path.rstrip('/')}"  # never print credentials
    experiment_url = f"{base}/#/experiments/{quote(active.info.experiment_id, safe='')}"
    sys.stdout.write(f"🏃 View run {active.info.run_name} at: {experiment_url}/runs/{active.run_id}\n")
    sys.stdout.write(f"🧪 View experiment at: {experiment_url}\n")


def last_active_run() -> "Run | None":
    """The active run, else the last run this process ended (as MLflow: for reading what an
    autologged ``fit`` just logged); None when there was none."""
    active = _session.runs[-1].run_id if _session.runs else _session.last_run_id
    return get_run(active) if active else None


def get_run(run_id: str) -> "Run":
    """A run with everything logged to it so far (this process's pending logging is sent first)."""
    from eventflow.sdk.runs import Run

    run_id = v.check_run_id(run_id)
    if _session._sender is not None:
        _session._sender.flush()
    found = _session.store.get_run(run_id)
    if found is None:
        raise v.InvalidInput(f"Run with id={run_id} not found", "RESOURCE_DOES_NOT_EXIST")
    return Run.from_dict(found)


def search_runs(
    experiment_ids: list[str] | None = None,
    filter_string: str = "",
    run_view_type: int | str = 1,
    max_results: int = 100000,
    order_by: list[str] | None = None,
    output_format: str = "pandas",
    search_all_experiments: bool = False,
    experiment_names: list[str] | None = None,
) -> Any:
    """Runs matching MLflow's filter grammar (``metrics.acc > 0.9 and params.lr = '0.1'``),
    as a pandas DataFrame with MLflow's columns, or (``output_format="list"``, or without
    pandas) a list of ``Run``. With no experiments named: the active experiment's runs, or
    every active experiment's with ``search_all_experiments``."""
    from eventflow.search_filter import parse, parse_order_by
    from eventflow.sdk import runs as run_views

    if output_format not in ("pandas", "list"):
        raise v.InvalidInput(f"Unsupported output format: {output_format!r}: use 'pandas' or 'list'")
    if experiment_ids and experiment_names:
        raise v.InvalidInput("Only experiment_ids or experiment_names can be used, but not both")
    if isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 1:
        raise v.InvalidInput(f"Invalid max_results {max_results!r}: a positive number of runs")
    view = run_views.view_type_name(run_view_type)
    parse(filter_string)  # a bad filter or order_by names its fault before anything is read
    for clause in order_by or ():
        parse_order_by(clause)
    store = _session.store
    if _session._sender is not None:
        _session._sender.flush()
    if experiment_names:
        found = [store.get_experiment_by_name(name) for name in experiment_names if name is not None]
        ids = [e["experiment_id"] for e in found if e is not None]
    elif experiment_ids:
        ids = [str(e) for e in experiment_ids]
    elif search_all_experiments:
        ids = [e["experiment_id"] for e in store.search_experiments("ACTIVE_ONLY", max_results=50000)]
    else:
        ids = [_active_experiment_id()]
    runs = [run_views.Run.from_dict(r) for r in store.search_runs(ids, max_results, order_by or (), filter_string, view)] if ids else []
    if output_format == "list":
        return runs
    try:
        return run_views.frame(runs)
    except ImportError:
        import warnings

        warnings.warn("search_runs returns a list of runs: pandas is not installed", stacklevel=2)
        return runs


# -- logging --------------------------------------------------------------------------


def log_metric(key: str, value: float, step: int | None = None, timestamp: int | None = None) -> None:
    """Log one point; a few microseconds: checked here, appended by the background sender."""
    runs = _session.runs
    run_id = (runs[-1] if runs else start_run()).info.run_id
    if timestamp is None:
        timestamp = time.time_ns() // 1_000_000
    key, value, timestamp, step = v.check_metric(key, value, timestamp, 0 if step is None else step)
    (_session._sender or _session.sender).metric(run_id, key, value, timestamp, step)


def log_metrics(metrics: dict[str, float], step: int | None = None, timestamp: int | None = None) -> None:
    """Log several keys at one step: all are checked before any is sent."""
    runs = _session.runs
    run_id = (runs[-1] if runs else start_run()).info.run_id
    if timestamp is None:
        timestamp = time.time_ns() // 1_000_000
    step = 0 if step is None else step
    checked = [v.check_metric(key, value, timestamp, step) for key, value in metrics.items()]
    sender = _session._sender or _session.sender
    for key, value, ts, st in checked:
        sender.metric(run_id, key, value, ts, st)


def log_params(params: dict[str, Any]) -> None:
    active = _run()
    event = commands.log_params(active.info.run_id, params)
    for item in event.payload["params"]:
        rules.param_unchanged(active.info.run_id, item["key"], active.params.get(item["key"]), item["value"])
    active.params.update({item["key"]: item["value"] for item in event.payload["params"]})
    _session.sender.event(event)


def log_param(key: str, value: Any) -> Any:
    log_params({key: value})
    return value


def set_tags(tags: dict[str, Any]) -> None:
    _session.sender.event(commands.set_tags(_run().info.run_id, tags))


def set_tag(key: str, value: Any) -> None:
    set_tags({key: value})


def delete_tag(key: str) -> None:
    _session.sender.event(commands.delete_tag(_run().info.run_id, key))


def alert(title: str, text: str = "", level: str = "warning") -> None:
    """An alert about the active run from training code (W&B's ``run.alert``): an
    ``alert.raised`` event, which webhooks subscribed to ``alert.*`` deliver (``--format
    slack`` or ``teams`` for chat). ``level``: info, warning or error."""
    from eventflow.alerts.commands import raise_alert

    _session.sender.event(raise_alert(_run().info.run_id, title, text, level))


def log_input(dataset: Any = None, context: str | None = None, tags: dict[str, Any] | None = None, model: Any = None) -> None:
    """Record that the active run used ``dataset`` (from ``eventflow.data`` or MLflow's
    ``mlflow.data``) in ``context`` ("training", "eval"...), and/or an MLflow 3 logged
    ``model`` (anything with a ``model_id``), as one ``run.inputs_logged`` event."""
    from eventflow.data import as_dataset

    if dataset is None and model is None:
        raise v.InvalidInput("log_input needs a dataset or a model")
    datasets = []
    if dataset is not None:
        input_tags = {**({"mlflow.data.context": context} if context else {}), **(tags or {})}
        item = {"dataset": as_dataset(dataset).to_dict(), "tags": [{"key": k, "value": str(x)} for k, x in input_tags.items()]}
        datasets.append(v.check_dataset_input(item, "dataset"))  # before a run is started for it
    models = [{"model_id": v.check_model_id(getattr(model, "model_id", model), "model.model_id")}] if model is not None else []
    _session.sender.event(commands.log_inputs(_run().info.run_id, datasets, models))


def set_experiment_tags(tags: dict[str, Any]) -> None:
    """Tag the active experiment (the one ``set_experiment`` chose, else the Default)."""
    checked = [v.check_experiment_tag(key, value) for key, value in tags.items()]  # all, before any is sent
    experiment_id = _active_experiment_id()
    for key, value in checked:
        _session.sender.event(commands.set_experiment_tag(experiment_id, key, value))


def set_experiment_tag(key: str, value: Any) -> None:
    set_experiment_tags({key: value})


def _active_experiment_id() -> str:
    """As MLflow: the active run's experiment, else the one set, else the Default (made if missing)."""
    if _session.runs:
        return _session.runs[-1].info.experiment_id
    if _session.experiment_id is not None:
        return _session.experiment_id
    if os.environ.get("EVENTFLOW_EXPERIMENT_ID"):
        return os.environ["EVENTFLOW_EXPERIMENT_ID"]
    _session.sender.flush()
    _ensure_default_experiment(_session.store)
    return DEFAULT_EXPERIMENT_ID


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    """Copy a file into the run's artifacts; its size and sha256 go on the log."""
    source = Path(local_path)
    if not source.is_file():
        raise v.InvalidInput(f"log_artifact needs an existing file, and {str(source)!r} is not one")
    _store_file(source, "/".join(p for p in (artifact_path, source.name) if p))


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    """Copy every file under a directory into the run's artifacts, keeping the layout."""
    root = Path(local_dir)
    if not root.is_dir():
        raise v.InvalidInput(f"log_artifacts needs an existing directory, and {str(root)!r} is not one")
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = file.relative_to(root).as_posix()
        _store_file(file, "/".join(p for p in (artifact_path, relative) if p))


def log_text(text: str, artifact_file: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / Path(artifact_file).name
        path.write_text(text, encoding="utf-8")
        _store_file(path, artifact_file)


def log_dict(dictionary: dict[str, Any], artifact_file: str) -> None:
    if artifact_file.endswith((".yaml", ".yml")):
        import yaml

        text = yaml.safe_dump(dictionary, sort_keys=False)
    else:
        text = json.dumps(dictionary, indent=2)
    log_text(text, artifact_file)


def _store_file(source: Path, artifact_path: str) -> None:
    active = _run()
    commands.artifact_path(artifact_path, "run")  # check the path before copying
    store = _session.store
    if store.records_uploads:
        _session.sender.flush()  # the server must know the run before it takes its files
    size, sha256 = store.upload_artifact(active.info.artifact_uri, source, artifact_path)
    if not store.records_uploads:
        _session.sender.event(commands.log_artifact(active.info.run_id, artifact_path, size, sha256))


def flush(timeout: float | None = None) -> None:
    """Block until everything logged so far is durable on the log.

    With no ``timeout`` this waits as long as the log is unreachable (the sender keeps
    retrying); with one it raises ``TimeoutError`` and keeps the items queued. Nothing
    is spooled here: ending the last run, or the exit, does that.
    """
    if _session._sender is not None:
        _session._sender.flush(timeout)


# -- ending runs when the process ends -----------------------------------------------

_handlers_installed = False


def _install_exit_handlers() -> None:
    """End open runs at exit: FAILED on an uncaught exception, KILLED on SIGTERM/Ctrl-C."""
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    previous_hook = sys.excepthook

    def on_uncaught(exc_type, exc, tb):  # type: ignore[no-untyped-def]
        status = "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
        _end_all(status, f"{exc_type.__name__}: {exc}")
        previous_hook(exc_type, exc, tb)

    sys.excepthook = on_uncaught
    atexit.register(_end_all, "FINISHED", None)
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):

        def on_sigterm(signum, frame):  # type: ignore[no-untyped-def]
            if _session.settling == "waiting":
                raise _Terminated  # stop waiting for the log: spool now, then end
            if _session.settling == "spooling":  # let the spool file be written, then end
                _session.terminated = True
                return
            try:
                _end_all("KILLED", "terminated by SIGTERM")
            finally:  # die by the signal, as the caller expects, whatever happened above
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_sigterm)


def _end_all(status: str, error_message: str | None) -> None:
    while _session.runs:
        _end_one(status, error_message if status == "FAILED" else None)
    _session.settle(KILL_WAIT if status == "KILLED" else flush_timeout())
