"""The deployer: serves ``models:/NAME@ALIAS`` on a port and rolls it whenever the alias moves.

Two halves, so that the log's history is never acted upon, only its latest state:

1. ``DesiredState``, a ``Subscriber`` on eventflow.models: it only records, per target,
   the version its alias points at (``model_version.alias_set`` / ``alias_deleted``, and
   a deleted version drops its aliases as in MLflow) and wakes the reconciler. It reads
   the topic from offset zero at every start instead of committing offsets to a group:
   the desired state is a fold of the whole history, which a restarted deployer needs
   (its backends died with it), and folding is cheap.
2. ``Reconciler``, a thread: it compares the desired version of each target with what
   it serves and acts only on the latest desired one. It starts once the history has
   been read (``catch_up``), so a replay or a restart deploys each target once, to the
   current version, and several quick alias moves end on the last one.

A deployment: ``deployment.started`` → start the new version's ``eventflow models serve``
beside the old one → /ping, then POST the model's input example → switch the stable
address (eventflow/deploy/proxy.py) → check the input example again through it → wait
for the old backend's requests in flight → stop it → ``deployment.succeeded``. A new
version that fails its check is stopped while the old one keeps serving
(``deployment.failed``); one that fails after the switch is switched back
(``deployment.failed`` + ``deployment.rolled_back``). A failed version is not retried
until the alias is set again (to it: another try); a restarted deployer whose alias
points at a version that failed serves the last version that succeeded (from the
deployment events) instead of nothing. Deleting the alias leaves the last version serving: an
accidental delete should not take a production endpoint down.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from eventflow.consumers.base import ConsumerLoop, Delivery, Subscriber
from eventflow.deploy.backend import Backend, HealthCheckFailed, check_scores, input_example_request
from eventflow.deploy.history import fold, read_deployment_events
from eventflow.deploy.proxy import Proxy
from eventflow.events import TOPIC_PREFIX, Event
from eventflow.log import Log, TopicPartition
from eventflow.log.event_log import EventLog

logger = logging.getLogger(__name__)

TARGET_ENV = "EVENTFLOW_DEPLOY_TARGETS"
_SPEC = re.compile(r"^models:/(?P<name>[^@/]+)@(?P<alias>[^=/]+)=(?:(?P<host>[^:=]+):)?(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class Target:
    """Serve whatever version ``name@alias`` points at on ``host:port``."""

    name: str
    alias: str
    port: int
    host: str = "127.0.0.1"

    @property
    def key(self) -> str:
        """The target's name on the log (the deployment family's key)."""
        return f"{self.name}@{self.alias}:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def local_url(self) -> str:
        """Where this machine reaches the stable address (a wildcard bind answers on loopback)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


def parse_target(spec: str) -> Target:
    """``models:/NAME@ALIAS=PORT`` (or ``=HOST:PORT``), or a ValueError saying the shape."""
    found = _SPEC.match(spec.strip())
    if not found or not 0 < int(found["port"]) < 65536:
        raise ValueError(f"invalid deployment target {spec!r}: write it as models:/NAME@ALIAS=PORT, e.g. models:/churn@production=8080")
    return Target(found["name"], found["alias"], int(found["port"]), found["host"] or "127.0.0.1")


def targets_from_env() -> list[Target]:
    """EVENTFLOW_DEPLOY_TARGETS: targets separated by commas or spaces."""
    return [parse_target(spec) for spec in re.split(r"[,\s]+", os.environ.get(TARGET_ENV, "")) if spec]


class DesiredState(Subscriber):
    """Records the version each target's alias points at; never acts itself."""

    topics = (TOPIC_PREFIX + "models",)
    keeps_offsets = True  # from offset zero every start: see the module's docstring

    def __init__(self, targets: list[Target], on_change: Any = None):
        self.group = "deployer"
        self.targets = targets
        self.on_change = on_change
        self._lock = threading.Lock()
        self._desired: dict[str, str | None] = {t.key: None for t in targets}
        # Counts the alias events of each target: setting an alias again to a version
        # that failed is asking for another try, which the version alone cannot tell.
        self._generation: dict[str, int] = {t.key: 0 for t in targets}

    def desired(self, target: Target) -> tuple[str | None, int]:
        """The version the target should serve (None: none), and its generation."""
        with self._lock:
            return self._desired[target.key], self._generation[target.key]

    def apply(self, deliveries: list[Delivery], spans: dict[TopicPartition, tuple[int, int]]) -> None:
        changed = False
        with self._lock:
            for d in deliveries:
                changed |= self._fold(d.event)
        if changed and self.on_change is not None:
            self.on_change()

    def _fold(self, event: Event) -> bool:
        p, changed = event.payload, False
        for t in self.targets:
            if p.get("name") != t.name:
                continue
            if event.type == "model_version.alias_set" and p["alias"] == t.alias:
                new: str | None = str(p["version"])
            elif event.type == "model_version.alias_deleted" and p["alias"] == t.alias:
                new = None
            elif event.type == "model_version.deleted" and str(p.get("version")) == self._desired[t.key]:
                new = None
            elif event.type == "registered_model.deleted":
                new = None
            else:
                continue
            changed = True
            self._desired[t.key] = new
            self._generation[t.key] += 1
        return changed


class Reconciler:
    """Brings each target to its desired version, one deployment at a time."""

    def __init__(self, log: Log, targets: list[Target], state: DesiredState, tracking_uri: str, ready_timeout: float = 120.0):
        self.events = EventLog(log)
        self.targets = targets
        self.state = state
        self.tracking_uri = tracking_uri
        self.ready_timeout = ready_timeout
        self.proxies = {t.key: Proxy(t.host, t.port) for t in targets}
        # target → (version, generation) that failed: not retried until the alias is set again
        self.failed: dict[str, tuple[str, int]] = {}
        # target → the last version that served well: what a restarted deployer serves
        # when the desired version is one that failed
        self.fallback: dict[str, str] = {}
        self.wake = threading.Event()

    def start_proxies(self) -> None:
        for proxy in self.proxies.values():
            proxy.serve_in_thread()

    def run(self, stop: threading.Event) -> None:
        self._wait_for_server(stop)
        while not stop.is_set():
            self.wake.wait(timeout=1.0)
            self.wake.clear()
            for target in self.targets:
                if stop.is_set():
                    break
                try:
                    self.reconcile(target)
                except Exception:  # the log or the server down: try again at the next wake (at most 1 s)
                    logger.exception("deployer: reconciling %s failed; retrying", target.key)

    def _wait_for_server(self, stop: threading.Event) -> None:
        """Until the tracking server answers: a version is not failed because the server
        that resolves it is still starting (the deployer inside it, or beside it in compose)."""
        import httpx

        while not stop.is_set():
            try:
                if httpx.get(self.tracking_uri.rstrip("/") + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            stop.wait(0.2)

    def reconcile(self, target: Target) -> None:
        desired, generation = self.state.desired(target)
        current = self.proxies[target.key].current
        if desired is None:
            return
        if self.failed.get(target.key) == (desired, generation):
            good = self.fallback.get(target.key)
            if current is None and good is not None and good != desired:
                self.deploy(target, good, None)  # restarted: serve the last good version meanwhile
            return
        if current is None or current.version != desired:
            self.deploy(target, desired, generation)

    def remember(self, history: list[dict[str, Any]]) -> None:
        """Take what the deployment history says (eventflow/deploy/history.py's fold): the
        last good version of each target, and a desired version that already failed."""
        for state in history:
            target = next((t for t in self.targets if t.key == state["target"]), None)
            if target is None:
                continue
            if state["serving_version"]:
                self.fallback[target.key] = state["serving_version"]
            desired, generation = self.state.desired(target)
            if state["status"] in ("FAILED", "ROLLED_BACK") and state["last_version"] == desired:
                self.failed[target.key] = (desired, generation)

    def deploy(self, target: Target, version: str, generation: int | None) -> None:
        """Roll ``target`` to ``version``; ``generation`` None for a fallback (not the alias's)."""
        proxy = self.proxies[target.key]
        old = proxy.current
        base = {"target": target.key, "model_uri": f"models:/{target.name}/{version}", "name": target.name, "version": version,
                "previous_version": old.version if old else None, "endpoint": target.endpoint}
        started = self._emit("deployment.started", base)
        new = Backend(target.name, version, self.tracking_uri)
        switched = False
        try:
            new.start()
            example = self._example(new)
            new.wait_ready(self.ready_timeout)
            check_scores(new.url, example, new.model_uri)
            proxy.switch(new)
            switched = True
            check_scores(target.local_url, example, f"{target.endpoint} after the switch")
        except Exception as error:  # any failure of the new version: the old one keeps (or goes back to) serving
            reason = str(error) if isinstance(error, HealthCheckFailed) else f"{type(error).__name__}: {error}"
            if switched:
                proxy.switch(old)
                proxy.drain(new)
            new.stop()
            if generation is not None:
                self.failed[target.key] = (version, generation)
            else:
                self.fallback.pop(target.key, None)  # the fallback broke too: do not loop on it
            logger.warning("deployer: %s version %s failed: %s", target.key, version, reason)
            self._emit("deployment.failed", {**base, "error": reason}, started)
            if switched:
                self._emit("deployment.rolled_back", {**base, "reason": reason}, started)
            return
        self.fallback[target.key] = version
        if old is not None:
            if not proxy.drain(old):
                logger.warning("deployer: %s version %s still had requests in flight after 60 s; stopping it", target.key, old.version)
            old.stop()
        self._emit("deployment.succeeded", base, started)
        logger.info("deployer: %s serves version %s", target.key, version)

    def _example(self, backend: Backend) -> bytes | None:
        """The input example's request body, read from the version's verified files
        (fetched while the backend starts, into a directory removed afterwards)."""
        import tempfile
        from pathlib import Path

        from eventflow.models.pyfunc import local_copy

        with tempfile.TemporaryDirectory(prefix="eventflow-deployer-") as directory:
            return input_example_request(local_copy(backend.model_uri, self.tracking_uri, Path(directory) / "model"))

    def _emit(self, event_type: str, payload: dict[str, Any], cause: Event | None = None) -> Event:
        """Append a deployment event; the events of one deployment share the started one's id
        as their correlation id, and name it as their cause."""
        event_id = str(uuid.uuid4())
        event = Event(event_type, payload, event_id=event_id, actor="deployer",
                      correlation_id=cause.correlation_id if cause else event_id, causation_id=cause.event_id if cause else None)
        self.events.append(event)
        return event

    def stop(self) -> None:
        for proxy in self.proxies.values():
            backend = proxy.switch(None)
            proxy.stop()
            if backend is not None:
                backend.stop()


class Deployer:
    """Both halves, run by ``eventflow consume deployer``."""

    def __init__(self, log: Log, targets: list[Target], tracking_uri: str):
        if not targets:
            raise ValueError(f"the deployer needs at least one target (--target models:/NAME@ALIAS=PORT or {TARGET_ENV})")
        if not tracking_uri.startswith(("http://", "https://")):
            raise ValueError("the deployer resolves models:/ URIs through an eventflow server: give --tracking-uri http://HOST:PORT")
        self.log = log
        self.state = DesiredState(targets)
        self.reconciler = Reconciler(log, targets, self.state, tracking_uri)
        self.state.on_change = self.reconciler.wake.set

    def run(self, stop: threading.Event) -> None:
        loop = ConsumerLoop(self.log, self.state, join_group=False)
        self.reconciler.start_proxies()
        try:
            loop.catch_up(timeout=600)
            self.reconciler.remember(fold(read_deployment_events(self.log)))
            thread = threading.Thread(target=self.reconciler.run, args=(stop,), name="eventflow-deployer-reconciler", daemon=True)
            self.reconciler.wake.set()
            thread.start()
            loop.run(stop)
            thread.join()
        finally:
            loop.close()
            self.reconciler.stop()
