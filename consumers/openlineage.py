"""The OpenLineage consumer: eventflow's runs as OpenLineage run events, so that Marquez or
any OpenLineage backend sees them (``eventflow consume openlineage --url URL | --file PATH``).

What maps to what:

- an experiment is a job: namespace ``--namespace`` (default ``eventflow``), name the
  experiment's name when the run started (a rename names the runs after it, not before);
- an eventflow run is an OpenLineage run whose runId is ``run_uuid(run_id)``, a UUID5 of
  the eventflow run id (fixed for ever: a replay gives the backend the same run);
- ``run.created`` → START, ``run.finished`` → COMPLETE, ``run.failed`` → FAIL (with the
  errorMessage facet), ``run.killed`` → ABORT; eventTime is the start or end time the
  event carries;
- the datasets a run logged (``run.inputs_logged``) are its inputs: namespace and name from
  the dataset's source when it is a location (``s3://bucket/key`` → ``s3://bucket`` and
  ``key``, a local path → ``file`` and the path), else the job namespace and the dataset's
  name; the digest is the dataset version facet;
- its outputs are the logged models it produced (``run.outputs_logged``, or a
  ``logged_model.created`` naming it as source run) as ``models:/<model_id>``, and the
  registered versions made from it (``model_version.created``) as ``models:/<name>/<version>``.
  A version registered after the run ended goes out as an OTHER event of that run, the
  spec's way of adding to an ended run.

Delivery is **at-least-once**, in log order per run. Per batch: read the state it keeps
(experiment names, each run's datasets and outputs, which transitions were sent), emit,
then write the state and the offsets in one transaction. An emit that succeeded in a batch
that did not commit (a crash between the two) is sent again after a restart, byte for byte
the same (runId, eventType, eventTime), which backends take as the same transition; a
transition already recorded is never sent again, even if its event is on the log twice.
Nothing is skipped: a backend that is unreachable or answers 5xx/408/429 is retried with
backoff, the offsets not moving meanwhile; a 4xx refusal is the event's fault, and the
event goes to the dead-letter topic with the answer. The state lives in the views database
(table ``openlineage_state``); ``eventflow views rebuild`` carries it into the new database,
so the consumer, reading the log again from zero there, sends nothing it had sent.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Column, Engine, MetaData, String, Table, Text, inspect, select

from eventflow import __version__
from eventflow.consumers.base import ConsumerLoop, Delivery, Subscriber
from eventflow.events import TOPIC_PREFIX, Event
from eventflow.log import Log, TopicPartition
from eventflow.views.db import reading, schema_lock, upsert
from eventflow.views.positions import advance, stored_offsets

logger = logging.getLogger(__name__)

GROUP = "openlineage"
DEFAULT_NAMESPACE = "eventflow"
PRODUCER = f"urn:eventflow:{__version__}"  # a URI naming eventflow and its version
INSTALL_HINT = "pip install 'eventflow[openlineage]'"

# The UUID5 namespace of run ids. Never change it: every run sent so far would get a new id.
_RUN_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:eventflow:openlineage:run")
_END_STATES = {"run.finished": "COMPLETE", "run.failed": "FAIL", "run.killed": "ABORT"}
_TOPICS = tuple(TOPIC_PREFIX + t for t in ("experiments", "runs", "models"))

metadata = MetaData()
# One JSON document per consumer group and key ("experiment:<id>", "run:<id>"): what that
# consumer knows and has sent, moved with its offsets in one transaction.
state_table = Table(
    "openlineage_state",
    metadata,
    Column("consumer", String(200), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("doc", Text, nullable=False),
)


class MissingExtra(RuntimeError):
    """openlineage-python is not installed."""


def require_client() -> None:
    """Fail clearly when the optional openlineage-python client is missing."""
    try:
        import openlineage.client  # noqa: F401
    except ImportError as error:
        raise MissingExtra(f"the OpenLineage consumer needs the openlineage-python client: {INSTALL_HINT}") from error


def run_uuid(run_id: str) -> str:
    """The OpenLineage runId of an eventflow run (the spec wants a UUID)."""
    return str(uuid.uuid5(_RUN_NAMESPACE, run_id))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dataset_identity(dataset: dict[str, Any], namespace: str) -> tuple[str, str, str | None]:
    """(namespace, name, location URI) of an eventflow dataset, by OpenLineage's naming:
    from its source when that is a location, else the job namespace and its name."""
    source = dataset.get("source") or ""
    try:  # MLflow writes sources as JSON: {"uri": ...}, {"url": ...}, {"path": ...}
        parsed = json.loads(source)
        if isinstance(parsed, dict):
            source = next((str(parsed[k]) for k in ("uri", "url", "path") if parsed.get(k)), "")
    except ValueError:
        pass
    if source.startswith("/"):
        source = "file://" + source
    parts = urlsplit(source)
    if parts.scheme == "file" and parts.path:
        return "file", parts.path, source
    if parts.scheme and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/") or dataset["name"], source
    return namespace, dataset["name"], None


def _schema_fields(schema: str | None) -> list[tuple[str, str | None]]:
    """The columns of an MLflow dataset schema ({"mlflow_colspec": [{"name", "type"}]})."""
    try:
        columns = json.loads(schema or "").get("mlflow_colspec") or []
        return [(str(c["name"]), c.get("type")) for c in columns if isinstance(c, dict) and c.get("name")]
    except (ValueError, AttributeError, TypeError):
        return []


class Events:
    """Builds the OpenLineage events of eventflow's runs with the openlineage-python classes."""

    def __init__(self, namespace: str = DEFAULT_NAMESPACE, producer: str = PRODUCER):
        require_client()
        self.namespace = namespace
        self.producer = producer

    def run_event(self, kind: str, time: int, run_id: str, run: dict[str, Any], error: str | None = None) -> Any:
        from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
        from openlineage.client.facet_v2 import error_message_run, job_type_job, parent_run

        facets: dict[str, Any] = {"eventflow_run": self._eventflow_run(run_id, run)}
        if kind == "FAIL":
            facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=error or "the run failed", programmingLanguage="PYTHON", producer=self.producer)
        if run.get("parent"):
            parent = run["parent"]
            facets["parent"] = parent_run.ParentRunFacet(
                run=parent_run.Run(runId=run_uuid(parent["run_id"])),
                job=parent_run.Job(namespace=self.namespace, name=parent["job"]), producer=self.producer)
        job_facets = {"jobType": job_type_job.JobTypeJobFacet(
            processingType="BATCH", integration="EVENTFLOW", jobType="RUN", producer=self.producer)}
        return RunEvent(
            eventType=getattr(RunState, kind), eventTime=_iso(time), producer=self.producer,
            run=Run(runId=run_uuid(run_id), facets=facets),
            job=Job(namespace=self.namespace, name=run["job"], facets=job_facets),
            inputs=[self._input(d) for d in run.get("inputs", ())],
            outputs=[self._output(uri) for uri in run.get("outputs", ())],
        )

    def _eventflow_run(self, run_id: str, run: dict[str, Any]) -> Any:
        from openlineage.client.facet_v2 import RunFacet

        # A custom facet (prefixed, as the spec asks) linking back to the eventflow run.
        return RunFacet(producer=self.producer).with_additional_properties(
            runId=run_id, runName=run.get("run_name"), experimentId=run.get("experiment_id"), user=run.get("user"))

    def _input(self, dataset: dict[str, Any]) -> Any:
        from openlineage.client.event_v2 import InputDataset
        from openlineage.client.facet_v2 import DatasetFacet, dataset_version_dataset, datasource_dataset, schema_dataset

        namespace, name, location = dataset_identity(dataset, self.namespace)
        facets: dict[str, Any] = {
            "version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=dataset["digest"], producer=self.producer),
            "dataSource": datasource_dataset.DatasourceDatasetFacet(
                name=dataset.get("source_type") or namespace, uri=location or namespace, producer=self.producer),
            "eventflow_dataset": DatasetFacet(producer=self.producer).with_additional_properties(
                name=dataset["name"], digest=dataset["digest"], sourceType=dataset.get("source_type"), source=dataset.get("source")),
        }
        if fields := _schema_fields(dataset.get("schema")):
            facets["schema"] = schema_dataset.SchemaDatasetFacet(
                fields=[schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in fields], producer=self.producer)
        return InputDataset(namespace=namespace, name=name, facets=facets)

    def _output(self, uri: str) -> Any:
        from openlineage.client.event_v2 import OutputDataset

        return OutputDataset(namespace=self.namespace, name=uri)


class Stopped(Exception):
    """The consumer was asked to stop while it waited to retry a delivery."""


class Emitter:
    """Sends events through an openlineage-python client, retrying until the backend takes them."""

    def __init__(self, client: Any, stop: threading.Event | None = None, first_delay: float = 0.5, max_delay: float = 30.0):
        self.client = client
        self.stop = stop or threading.Event()
        self.first_delay = first_delay
        self.max_delay = max_delay

    def emit(self, event: Any) -> str | None:
        """None once delivered; the reason when the backend refused it for good (a 4xx)."""
        delay = self.first_delay
        while True:
            try:
                self.client.emit(event)
                return None
            except Exception as error:  # noqa: BLE001 - whatever the transport raises, retry or refuse
                status = getattr(getattr(error, "response", None), "status_code", None)
                if isinstance(status, int) and 400 <= status < 500 and status not in (408, 429):
                    return f"the OpenLineage backend refused the event: HTTP {status}"
                logger.warning("openlineage: cannot deliver (%s), retrying in %.1f s", error, delay)
            if self.stop.wait(delay):
                raise Stopped()
            delay = min(delay * 2, self.max_delay)

    def close(self) -> None:
        self.client.close()


def open_client(url: str | None = None, file: str | None = None, *, endpoint: str = "api/v1/lineage",
                timeout: float = 10.0, api_key: str | None = None) -> Any:
    """An OpenLineageClient posting to ``url`` (HttpTransport) or appending JSON lines to ``file``."""
    require_client()
    from openlineage.client import OpenLineageClient

    if (url is None) == (file is None):
        raise ValueError("give one target: a backend URL or a file")
    if file is not None:
        from openlineage.client.transport.file import FileConfig, FileTransport

        return OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=file, append=True)))
    from openlineage.client.transport.http import HttpConfig, HttpTransport

    config: dict[str, Any] = {
        "url": url, "endpoint": endpoint, "timeout": timeout,
        # The Emitter retries, with backoff and a stop; the transport's own retries would
        # only hide the failures from it.
        "retry": {"total": 0, "read": 0, "connect": 0, "status_forcelist": []},
    }
    if api_key:
        config["auth"] = {"type": "api_key", "apiKey": api_key}
    return OpenLineageClient(transport=HttpTransport(HttpConfig.from_dict(config)))


def create_tables(engine: Engine) -> None:
    with schema_lock(engine) as connection:
        metadata.create_all(connection)


def _keys(event: Event) -> Iterable[str]:
    """The state documents an event reads or changes."""
    p = event.payload
    if event.type.startswith("experiment."):
        yield f"experiment:{p['experiment_id']}"
    elif event.type.startswith("run."):
        yield f"run:{p['run_id']}"
        if event.type == "run.created":
            yield f"experiment:{p['experiment_id']}"
            if p.get("parent_run_id"):
                yield f"run:{p['parent_run_id']}"
    elif event.type == "logged_model.created" and p.get("source_run_id"):
        yield f"run:{p['source_run_id']}"
    elif event.type == "model_version.created" and p.get("run_id"):
        yield f"run:{p['run_id']}"


class LineageEmitter(Subscriber):
    """Folds runs, experiments and models into run state and emits each run transition."""

    topics = _TOPICS
    keeps_offsets = True
    offsets_may_go_back = True  # they commit with its effects, in the views

    def __init__(self, engine: Engine, emitter: Emitter, namespace: str = DEFAULT_NAMESPACE, group: str = GROUP):
        self.engine = engine
        self.emitter = emitter
        self.events = Events(namespace, PRODUCER)
        self.group = group
        create_tables(engine)

    def stored_offsets(self, tps: set[TopicPartition]) -> dict[TopicPartition, int]:
        return stored_offsets(self.engine, self.group, tps)

    def apply(self, batch: list[Delivery], spans: dict[TopicPartition, tuple[int, int]]) -> list[tuple[Delivery, str]]:
        wanted = sorted({key for d in batch for key in _keys(d.event)})
        state = self._read(wanted)
        changed: set[str] = set()
        out: list[tuple[Delivery, Any]] = []
        # Experiment names first: a run created in the same batch is named after them.
        for d in sorted(batch, key=lambda d: not d.event.type.startswith("experiment.")):
            try:
                for event in self._fold(d.event, state, changed):
                    out.append((d, event))
            except Exception as error:  # an event we cannot map is the event's fault
                logger.warning("openlineage: cannot map %s %s: %s", d.event.type, d.event.event_id, error)
                out.append((d, error))
        rejected: list[tuple[Delivery, str]] = []
        for d, event in out:
            if isinstance(event, Exception):
                rejected.append((d, f"openlineage: cannot map the event: {event}"))
            elif (reason := self.emitter.emit(event)) is not None:
                rejected.append((d, f"openlineage: {reason}"))
        with self.engine.begin() as c:
            advance(c, self.group, spans)
            rows = [{"consumer": self.group, "key": k, "doc": json.dumps(state[k])} for k in sorted(changed)]
            upsert(c, state_table, rows, ["consumer", "key"])
        return rejected

    def _read(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        with reading(self.engine).connect() as c:
            for start in range(0, len(keys), 500):
                rows = c.execute(select(state_table.c.key, state_table.c.doc).where(
                    state_table.c.consumer == self.group, state_table.c.key.in_(keys[start : start + 500])))
                found.update({k: json.loads(doc) for k, doc in rows})
        return found

    def _fold(self, event: Event, state: dict[str, dict[str, Any]], changed: set[str]) -> list[Any]:
        """Apply one event to the state; the OpenLineage events it makes (none, or one)."""
        p, kind = event.payload, event.type
        if kind in ("experiment.created", "experiment.renamed"):
            key = f"experiment:{p['experiment_id']}"
            state[key] = {"name": p.get("name") or p.get("new_name")}
            changed.add(key)
            return []
        if kind == "run.created":
            key = f"run:{p['run_id']}"
            run = state.setdefault(key, {"inputs": [], "outputs": []})
            if run.get("sent"):  # the same run.created twice on the log: START went out once
                return []
            parent = state.get(f"run:{p['parent_run_id']}") if p.get("parent_run_id") else None
            run.update(job=self._job_name(p["experiment_id"], state), experiment_id=p["experiment_id"],
                       run_name=p.get("run_name"), user=p.get("user_id"), sent=["START"])
            if parent is not None or p.get("parent_run_id"):
                run["parent"] = {"run_id": p["parent_run_id"], "job": (parent or {}).get("job") or run["job"]}
            changed.add(key)
            return [self.events.run_event("START", p.get("start_time") or event.time, p["run_id"], run)]
        if kind == "run.inputs_logged":
            run = self._run(p["run_id"], state, changed)
            for item in p.get("datasets") or ():
                dataset = {k: item["dataset"].get(k) for k in ("name", "digest", "source_type", "source", "schema")}
                if dataset not in run["inputs"]:
                    run["inputs"].append(dataset)
            return []
        if kind == "run.outputs_logged":
            return self._add_outputs(p["run_id"], [f"models:/{m['model_id']}" for m in p.get("models") or ()], event, state, changed)
        if kind == "logged_model.created" and p.get("source_run_id"):
            return self._add_outputs(p["source_run_id"], [f"models:/{p['model_id']}"], event, state, changed)
        if kind == "model_version.created" and p.get("run_id"):
            return self._add_outputs(p["run_id"], [f"models:/{p['name']}/{p['version']}"], event, state, changed)
        if kind in _END_STATES:
            run = self._run(p["run_id"], state, changed)
            ending = _END_STATES[kind]
            if any(s in _END_STATES.values() for s in run["sent"]):  # ended once; a restore + end is a new try, not sent
                return []
            run["sent"].append(ending)
            return [self.events.run_event(ending, p.get("end_time") or event.time, p["run_id"], run, p.get("error_message"))]
        return []

    def _run(self, run_id: str, state: dict[str, dict[str, Any]], changed: set[str]) -> dict[str, Any]:
        """A run's state; one whose run.created this consumer never saw (dead-lettered) gets
        a job named after nothing better than its id."""
        key = f"run:{run_id}"
        run = state.setdefault(key, {"inputs": [], "outputs": []})
        run.setdefault("job", f"run-{run_id}")
        run.setdefault("sent", [])
        changed.add(key)
        return run

    def _add_outputs(self, run_id: str, uris: list[str], event: Event, state: dict[str, dict[str, Any]], changed: set[str]) -> list[Any]:
        run = self._run(run_id, state, changed)
        new = [u for u in uris if u not in run["outputs"]]
        run["outputs"].extend(new)
        if not new or not any(s in _END_STATES.values() for s in run["sent"]):
            return []  # they go out with the run's end
        # The run has ended: tell the backend with an OTHER event of that run.
        return [self.events.run_event("OTHER", event.time, run_id, {**run, "outputs": new, "inputs": []})]

    def _job_name(self, experiment_id: str, state: dict[str, dict[str, Any]]) -> str:
        known = state.get(f"experiment:{experiment_id}")
        if known and known.get("name"):
            return known["name"]
        # Not seen (yet) on the experiments topic, which this consumer reads in no fixed
        # order with the runs: the projector's view may know it.
        from eventflow.views.tables import experiments

        with reading(self.engine).connect() as c:
            if inspect(c).has_table(experiments.name):
                name = c.execute(select(experiments.c.name).where(experiments.c.experiment_id == experiment_id)).scalar()
                if name:
                    return name
        return f"experiment-{experiment_id}"


class LineageConsumer:
    """One OpenLineage consumer instance: the loop over the log and its emitter, until stopped."""

    def __init__(self, log: Log, engine: Engine, client: Any, namespace: str = DEFAULT_NAMESPACE, group: str = GROUP,
                 first_delay: float = 0.5, max_delay: float = 30.0):
        self.stop = threading.Event()
        self.emitter = Emitter(client, self.stop, first_delay, max_delay)
        self.loop = ConsumerLoop(log, LineageEmitter(engine, self.emitter, namespace, group))

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set (also ending a wait to retry)."""
        watcher = threading.Thread(target=lambda: (stop.wait(), self.stop.set()), daemon=True)
        watcher.start()
        try:
            while not stop.is_set():
                self.loop.step()
        except Stopped:
            pass  # the batch was not recorded: the next start sends it
        finally:
            self.stop.set()
            self.loop.close()
            self.emitter.close()
