"""The environment variables eventflow reads, each declared once with its type and meaning.

Read a variable through its declaration (``TRACKING_USERNAME.get()``), never with
``os.environ`` by name, so that its spelling, type and default live in one place and
``eventflow`` can list what it understands.

Only the variables of identity are declared here so far (credentials and the server's
authentication switch); the others (``EVENTFLOW_HOME``, ``EVENTFLOW_KAFKA``,
``EVENTFLOW_DB``, ``EVENTFLOW_ARTIFACTS``, ``EVENTFLOW_TRACKING_URI``, ``EVENTFLOW_ACTOR``,
``EVENTFLOW_WRITE_TIMEOUT``, ``EVENTFLOW_ALLOWED_HOSTS``, ``EVENTFLOW_WEBHOOK_*`` …) are
still read where they are used and move here as those places are touched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T", str, bool, int, float)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True)
class EnvironmentVariable(Generic[T]):
    """One variable: its name, the type its value is read as, its default and what it does."""

    name: str
    type: type[T]
    default: T | None
    doc: str

    @property
    def is_set(self) -> bool:
        """Whether the variable is present and not empty."""
        return bool(os.environ.get(self.name, ""))

    def get(self) -> T | None:
        """The value as ``type``, or the default when unset or empty; a clear ValueError when
        it cannot be read as ``type``."""
        raw = os.environ.get(self.name, "")
        if raw == "":
            return self.default
        if self.type is bool:
            lowered = raw.strip().lower()
            if lowered in _TRUE:
                return True  # type: ignore[return-value]
            if lowered in _FALSE:
                return False  # type: ignore[return-value]
            raise ValueError(f"{self.name}={raw!r}: expected true or false")
        try:
            return self.type(raw)
        except ValueError:
            raise ValueError(f"{self.name}={raw!r}: expected a {self.type.__name__}") from None

    def __str__(self) -> str:
        return self.name


def _var(name: str, type_: type[T], default: T | None, doc: str) -> EnvironmentVariable[T]:
    variable = EnvironmentVariable(name, type_, default, doc)
    DECLARED[name] = variable
    return variable


DECLARED: dict[str, EnvironmentVariable] = {}

# -- clients: who the SDK, the CLI and the MLflow client authenticate as ------------------
# eventflow's own names win over MLflow's, so one shell can hold both for different servers.

TRACKING_USERNAME = _var(
    "EVENTFLOW_TRACKING_USERNAME", str, None,
    "User name the SDK and the CLI send with HTTP Basic to an eventflow server that has "
    "authentication on (with EVENTFLOW_TRACKING_PASSWORD). Falls back to MLFLOW_TRACKING_USERNAME.",
)
TRACKING_PASSWORD = _var(
    "EVENTFLOW_TRACKING_PASSWORD", str, None,
    "Password for EVENTFLOW_TRACKING_USERNAME. Falls back to MLFLOW_TRACKING_PASSWORD.",
)
TRACKING_TOKEN = _var(
    "EVENTFLOW_TRACKING_TOKEN", str, None,
    "Access token sent as 'Authorization: Bearer' when no user name and password are set. "
    "Falls back to MLFLOW_TRACKING_TOKEN.",
)
MLFLOW_TRACKING_USERNAME = _var(
    "MLFLOW_TRACKING_USERNAME", str, None, "MLflow's client user name (HTTP Basic); eventflow's SDK reads it too."
)
MLFLOW_TRACKING_PASSWORD = _var(
    "MLFLOW_TRACKING_PASSWORD", str, None, "MLflow's client password (HTTP Basic); eventflow's SDK reads it too."
)
MLFLOW_TRACKING_TOKEN = _var(
    "MLFLOW_TRACKING_TOKEN", str, None, "MLflow's client bearer token; eventflow's SDK reads it too."
)

STOP_POLL_SECONDS = _var(
    "EVENTFLOW_STOP_POLL_SECONDS", float, 1.0,
    "How often the SDK asks whether someone requested a stop of its active run (the dashboard's Stop "
    "button); a stop then ends the run KILLED as Ctrl-C does. 0 turns the check off.",
)

# -- the server -------------------------------------------------------------------------

AUTH = _var(
    "EVENTFLOW_AUTH", bool, False,
    "Set to true by 'eventflow server --auth' for every worker: requests must authenticate, "
    "and the events they make name the authenticated user.",
)
ADMIN_USERNAME = _var(
    "EVENTFLOW_ADMIN_USERNAME", str, None,
    "The first administrator, created when the server starts with --auth and has no users yet.",
)
ADMIN_PASSWORD = _var(
    "EVENTFLOW_ADMIN_PASSWORD", str, None,
    "The first administrator's password (there is no built-in default).",
)
AUTH_DEFAULT_PERMISSION = _var(
    "EVENTFLOW_AUTH_DEFAULT_PERMISSION", str, "READ",
    "What a user may do with an experiment or a registered model nobody granted them anything on: "
    "READ (MLflow's default), EDIT, MANAGE or NO_PERMISSIONS (to keep teams apart).",
)
AUTH_CACHE_SECONDS = _var(
    "EVENTFLOW_AUTH_CACHE_SECONDS", float, 30.0,
    "How long a server remembers a verified credential, so the slow hash is paid once; a password "
    "change, a deletion or a revocation takes effect on other servers within this time.",
)
LIVE_PING_SECONDS = _var(
    "EVENTFLOW_LIVE_PING_SECONDS", float, 20.0,
    "How often the server pings a dashboard's websocket, and how long it waits for the answer before "
    "it closes the connection (a browser that stopped reading); raise it behind proxies with long pauses.",
)

# -- projects ---------------------------------------------------------------------------

ENVS_DIR = _var(
    "EVENTFLOW_ENVS_DIR", str, None,
    "Where 'eventflow run' keeps the environments it builds for projects (one directory per "
    "content digest of what they install); default ~/.cache/eventflow/envs.",
)
RUN_ID = _var(
    "EVENTFLOW_RUN_ID", str, None,
    "The run a process logs into: set by 'eventflow run' for the entry point it starts, so that "
    "eventflow.start_run() resumes that run instead of creating another (MLflow's MLFLOW_RUN_ID).",
)
LAUNCH_WAIT = _var(
    "EVENTFLOW_LAUNCH_WAIT", float, 120.0,
    "How long a process started by 'eventflow run' waits, at its first start_run(), for the run "
    "the launcher is writing meanwhile to become visible (seconds).",
)

# -- training code: the SDK ----------------------------------------------------------------

ENABLE_SYSTEM_METRICS_LOGGING = _var(
    "EVENTFLOW_ENABLE_SYSTEM_METRICS_LOGGING", bool, False,
    "Log CPU, memory, disk, network (and GPU, with pynvml) metrics as system/... for every run that "
    "start_run() starts without saying log_system_metrics (MLflow's MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING).",
)
SYSTEM_METRICS_SAMPLING_INTERVAL = _var(
    "EVENTFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", float, 10.0,
    "Seconds between two system metrics points of a run (MLflow's MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL).",
)
SUPPRESS_PRINTING_URL_TO_STDOUT = _var(
    "EVENTFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", bool, False,
    "Do not print 'View run NAME at: URL' when a run logged to a server ends. Falls back to "
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT.",
)
MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT = _var(
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", bool, False,
    "MLflow's switch for the same; eventflow's SDK reads it too.",
)

# -- the server's optional consumers --------------------------------------------------------

OPENLINEAGE_URL = _var(
    "EVENTFLOW_OPENLINEAGE_URL", str, None,
    "An OpenLineage backend (Marquez: http://HOST:5000) that eventflow server, and eventflow consume "
    "openlineage, send every run's START and COMPLETE/FAIL/ABORT to (needs pip install 'eventflow[openlineage]').",
)
OPENLINEAGE_FILE = _var(
    "EVENTFLOW_OPENLINEAGE_FILE", str, None,
    "A file to append the OpenLineage run events to instead, one JSON per line.",
)
OPENLINEAGE_NAMESPACE = _var(
    "EVENTFLOW_OPENLINEAGE_NAMESPACE", str, "eventflow",
    "The OpenLineage namespace of the jobs (one job per experiment).",
)
OPENLINEAGE_API_KEY = _var(
    "EVENTFLOW_OPENLINEAGE_API_KEY", str, None,
    "A bearer token for the OpenLineage backend, if it wants one.",
)

# -- crashed runs -----------------------------------------------------------------------------

HEARTBEAT_SECONDS = _var(
    "EVENTFLOW_HEARTBEAT_SECONDS", float, 30.0,
    "How often the SDK sends a running run's sign of life (run.alive), so that a process that died "
    "can be told from a quiet one. 0 sends none (the run is then never called crashed).",
)
RUN_TIMEOUT = _var(
    "EVENTFLOW_RUN_TIMEOUT", float, 300.0,
    "Seconds without a sign of life after which the server's watchdog records run.crashed for a run "
    "whose SDK sends them (at least three heartbeats' worth).",
)
RUN_STALL_TIMEOUT = _var(
    "EVENTFLOW_RUN_STALL_TIMEOUT", float, 0.0,
    "Seconds a run that still sends signs of life may go without a new metric before the watchdog records "
    "run.stalled (tag eventflow.stalled; its next metric records run.stall_ended). 0, the default, judges no stalls.",
)

# -- jobs -------------------------------------------------------------------------------------

JOB_LEASE_SECONDS = _var(
    "EVENTFLOW_JOB_LEASE_SECONDS", float, 30.0,
    "How long an agent's claim on a job run lasts without a renewal (agents renew it every third of "
    "that); a claim not renewed in time is given up by the other agents, and the run retried or failed.",
)
