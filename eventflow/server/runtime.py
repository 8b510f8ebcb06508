"""What a running server holds: the log, the views, the artifacts, and its consumers.

Writes go ``validate → append → wait until the projector has applied them`` so a client
that creates a run can read it at once (read your writes). The wait has a timeout that
answers 503 rather than hanging when the projector is down.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from eventflow import commands, idempotency
from eventflow.events import Event
from eventflow.log import Log, Position
from eventflow.log.event_log import EventLog
from eventflow.rules import Refused
from eventflow.server.errors import ApiError
from eventflow.server.stamping import ORIGIN, Origin, stamp
from eventflow.views.positions import Progress

if TYPE_CHECKING:
    from eventflow.config import Home

logger = logging.getLogger(__name__)

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"
# How long the live feed holds a lifecycle event for the views to apply it (so a page
# that re-reads on it reads it); then it goes on anyway, late views or not.
FEED_WAITS_FOR_VIEWS = 10.0

T = TypeVar("T")


class Runtime:
    def __init__(
        self,
        log: Log,
        views_url: str,
        artifacts: Path,
        *,
        run_consumers: bool = True,
        write_timeout: float = 30.0,
        projector_only: bool = False,
    ):
        from eventflow.views.db import open_views, reading
        from eventflow.views.lock import hold_views

        self.log = log
        self.events = EventLog(log)
        # Held until stop (or this process ends): `eventflow views rebuild` refuses meanwhile.
        self._views_hold = hold_views(views_url)
        self.engine = open_views(views_url)
        self._reader = reading(self.engine)
        self.artifacts = Path(artifacts)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.run_consumers = run_consumers
        self.write_timeout = write_timeout
        # A loopback server for one project run's MLflow client (eventflow/projects/loopback.py):
        # it must see the run at its first request, and must not deliver webhooks, deploy or
        # feed a dashboard beside the home's own server.
        self.projector_only = projector_only
        # Set when this process runs the projector, which then wakes waiting writes.
        self.progress: Progress | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        from eventflow.server.hub import Hub

        self.hub = Hub()  # the live dashboard's fan-out; its loop is bound by the app
        from eventflow.webhooks.settings import Settings
        from eventflow.webhooks.tables import create_tables

        self.webhook_settings = Settings.from_env()
        create_tables(self.engine)
        self._webhook_sender: Any = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self.run_consumers:
            from eventflow.consumers.base import ConsumerLoop
            from eventflow.consumers.projector import Projector
            from eventflow.consumers.webhooks import Dispatcher

            self.progress = Progress()
            if self.projector_only:
                loop = ConsumerLoop(self.log, Projector(self.engine, progress=self.progress), join_group=False)
                loop.catch_up()
                consumers = [("eventflow-projector", loop.run)]
            else:
                loop = ConsumerLoop(self.log, Projector(self.engine, progress=self.progress))
                from eventflow import environment_variables as env
                from eventflow.consumers.alerts import Watcher
                from eventflow.consumers.scheduler import Scheduler
                from eventflow.consumers.watchdog import Watchdog

                dispatcher = Dispatcher(self.log, self.engine, self.webhook_settings)
                consumers = [("eventflow-projector", loop.run), ("eventflow-webhooks", dispatcher.run),
                             ("eventflow-alerts", Watcher(self.log, self.engine).run),
                             ("eventflow-watchdog", Watchdog(self.log, self.engine, env.RUN_TIMEOUT.get() or 300.0, env.RUN_STALL_TIMEOUT.get() or 0.0).run),
                             ("eventflow-scheduler", Scheduler(self.log, self.engine).run)]
            for name, run in consumers:
                thread = threading.Thread(target=self._guard(run), name=name, daemon=True)
                thread.start()
                self._threads.append(thread)
            if not self.projector_only:
                self._start_deployer()
                self._start_openlineage()
        if not self.projector_only:
            self._start_feed()
        self._ensure_default_experiment()

    def _start_deployer(self) -> None:
        """The deployer, when targets are configured (EVENTFLOW_DEPLOY_TARGETS): it owns
        their ports, so it runs in one process only (``eventflow server`` refuses targets
        with several workers; run ``eventflow consume deployer`` apart to scale the API)."""
        from eventflow.consumers.deployer import Deployer, targets_from_env

        targets = targets_from_env()
        if not targets:
            return
        tracking_uri = os.environ.get("EVENTFLOW_SERVER_URL")
        if not tracking_uri:
            logger.warning("deployment targets are configured but this server does not know its own URL: run eventflow consume deployer")
            return
        deployer = Deployer(self.log, targets, tracking_uri)
        thread = threading.Thread(target=self._guard(deployer.run), name="eventflow-deployer", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _start_openlineage(self) -> None:
        """With EVENTFLOW_OPENLINEAGE_URL (or _FILE) set, the server sends its runs to that
        OpenLineage backend itself, as ``eventflow consume openlineage`` would."""
        from eventflow import environment_variables as env

        if not (env.OPENLINEAGE_URL.is_set or env.OPENLINEAGE_FILE.is_set):
            return
        from eventflow.consumers.openlineage import LineageConsumer, open_client

        client = open_client(env.OPENLINEAGE_URL.get(), None if env.OPENLINEAGE_URL.is_set else env.OPENLINEAGE_FILE.get(),
                             api_key=env.OPENLINEAGE_API_KEY.get())  # MissingExtra says what to install
        consumer = LineageConsumer(self.log, self.engine, client, env.OPENLINEAGE_NAMESPACE.get() or "eventflow")
        thread = threading.Thread(target=self._guard(consumer.run), name="eventflow-openlineage", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _start_feed(self) -> None:
        """This server's own tail of the log for its websocket hub: every instance runs
        one, even when the other consumers run apart, since each pushes to its own clients."""
        if self.hub.loop is None:
            return  # no event loop to push from (a runtime used without the app)
        from eventflow.consumers.base import ConsumerLoop
        from eventflow.consumers.dashboard_feed import DashboardFeed

        from eventflow.views.positions import wait_applied

        def views_applied(needed: dict[tuple[str, int], int]) -> bool:
            return wait_applied(self.engine, needed, FEED_WAITS_FOR_VIEWS, progress=self.progress)

        loop = ConsumerLoop(self.log, DashboardFeed(self.log, self.hub, views_applied), join_group=False, poll_timeout=0.2)
        thread = threading.Thread(target=self._guard(loop.run), name="eventflow-dashboard-feed", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _guard(self, run: Callable[[threading.Event], None]) -> Callable[[], None]:
        """Keep a consumer running through errors that are not the events' fault."""

        def guarded() -> None:
            while not self._stop.is_set():
                try:
                    run(self._stop)
                except Exception:
                    logger.exception("consumer crashed; restarting it in 1 s")
                    self._stop.wait(1.0)

        return guarded

    def _ensure_default_experiment(self) -> None:
        from eventflow.views import queries

        if self.read(queries.get_experiment, DEFAULT_EXPERIMENT_ID) is None:
            location = self.experiment_artifact_location(DEFAULT_EXPERIMENT_ID)
            try:
                self.write([commands.create_experiment(DEFAULT_EXPERIMENT_ID, DEFAULT_EXPERIMENT_NAME, location)])
            except ApiError as error:
                # Appended, but no projector has applied it yet (consumers run apart and
                # are not up): serve anyway; it shows once they are.
                logger.warning("the Default experiment is not in the views yet: %s", error.message)

    def webhook_sender(self) -> Any:
        """The sender the API uses for test messages (the dispatcher has its own)."""
        if self._webhook_sender is None:
            from eventflow.webhooks.sender import Sender

            self._webhook_sender = Sender(self.engine, self.log, self.webhook_settings, name=f"api-{os.getpid()}")
        return self._webhook_sender

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        if self._webhook_sender is not None:
            self._webhook_sender.close()
        self.log.close()
        self.engine.dispose()
        self._views_hold.release()

    # -- reads and writes -----------------------------------------------------------------

    def read(self, query: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._reader.connect() as connection:
            return query(connection, *args, **kwargs)

    def write(
        self, events: Sequence[Event], *, retry: bool = False, origin: Origin | None = None, from_client: bool = False
    ) -> list[Position]:
        """Append events and return once the projector has applied them — and accepted
        them: an event it refused (a rule that needs state, decided in log order, the
        same on replay) answers the write with that refusal. 503 if the views do not
        apply the events in time; a retry of the same events (same ids: ``retry``, an
        idempotent request) is then answered with what became of the first copy.

        Every event is stamped first (``stamping.stamp``): the actor the server knows,
        its time, the client address of ``origin`` (by default the current request's);
        ``from_client`` for events a client built (their time is kept as client_time)."""
        from eventflow.views.positions import refusal_of, wait_for

        events = stamp(events, origin or ORIGIN.get(), from_client=from_client)
        positions = self.events.append_many(events)
        if not wait_for(self.engine, positions, self.write_timeout, progress=self.progress):
            raise ApiError(
                f"the write was appended to the log (at {positions[-1].topic}[{positions[-1].partition}]@"
                f"{positions[-1].offset}) but the views did not apply it within {self.write_timeout:.0f} s: "
                "is the projector running? Retrying the same request is safe.",
                "TEMPORARILY_UNAVAILABLE",
            )
        # A retried event may have been decided long ago, before this process kept refusals.
        retry = retry or idempotency.active()
        refusal = refusal_of(self.engine, [e.event_id for e in events], positions, None if retry else self.progress)
        if refusal is not None:
            raise Refused(refusal[1], refusal[0])
        return positions

    # -- artifacts --------------------------------------------------------------------------

    def experiment_artifact_location(self, experiment_id: str) -> str:
        return f"mlflow-artifacts:/{experiment_id}"

    def artifact_file(self, relative: str) -> Path:
        """The local file behind an artifact path, refusing anything outside the store.

        A file has one name only: ``.``, ``..`` and empty segments are refused even when
        they stay inside, since every check keyed by the path (whose run it is, whether
        that run has ended, the digest the log recorded) would judge the alias instead.
        """
        if any(part in ("", ".", "..") for part in relative.strip("/").split("/")) and relative.strip("/"):
            raise ApiError(
                f"Invalid artifact path {relative[:200]!r}: '.', '..' and empty segments are not allowed; "
                "name the file by its own path, e.g. <experiment_id>/<run_id>/artifacts/model/model.pkl",
                "INVALID_PARAMETER_VALUE",
            )
        if "\x00" in relative:
            raise ApiError(f"Invalid artifact path {relative!r}: it contains a NUL byte", "INVALID_PARAMETER_VALUE")
        if len(relative.encode()) > 3000 or any(len(part.encode()) > 255 for part in relative.split("/")):
            raise ApiError(
                f"Invalid artifact path {relative[:80]!r}…: a name may have 255 bytes and a path 3000", "INVALID_PARAMETER_VALUE"
            )
        root = self.artifacts.resolve()
        target = (root / relative.lstrip("/")).resolve()
        if target != root and root not in target.parents:
            raise ApiError(f"Invalid artifact path {relative!r}: it leaves the artifact store", "INVALID_PARAMETER_VALUE")
        return target


def served_views_url(where: Home, kafka: str | None, db: str | None) -> str:
    """The views a server or consumer uses for these options (on Kafka without --db, a
    SQLite file of its own in the home)."""
    return db or (f"sqlite:///{where.path / 'kafka-views.db'}" if kafka else where.views_url)


def open_runtime(
    *,
    home: str | None = None,
    kafka: str | None = None,
    db: str | None = None,
    artifacts: str | None = None,
    run_consumers: bool = True,
    allow_finite_retention: bool = False,
) -> Runtime:
    """The runtime for the server's options: the embedded default, or Kafka and a database.

    On Kafka it first checks that the lifecycle topics keep their records for ever
    (FiniteRetention if not, unless ``allow_finite_retention``): the server and every
    consumer start here, so none runs on a log that forgets.
    """
    from eventflow.config import Home
    from eventflow.log import open_log
    from eventflow.log.retention import check_retention

    where = Home.resolve(home)
    log = open_log(f"kafka://{kafka}" if kafka else str(where.log_dir))
    views = served_views_url(where, kafka, db)
    store = Path(artifacts.removeprefix("file://")) if artifacts else where.artifacts_dir
    timeout = float(os.environ.get("EVENTFLOW_WRITE_TIMEOUT", "30"))
    try:
        check_retention(log, allow_finite=allow_finite_retention)
        return Runtime(log, views, store, run_consumers=run_consumers, write_timeout=timeout)
    except BaseException:
        log.close()
        raise
