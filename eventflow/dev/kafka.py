"""A real single-node Apache Kafka broker (KRaft), started from Maven Central, no Docker.

    with LocalKafka() as kafka:
        print(kafka.bootstrap)        # "127.0.0.1:40123"

What it does:

1. Fetches the pinned broker (``org.apache.kafka:kafka_2.13:4.1.1`` plus a log4j2 binding
   for SLF4J) with Maven into a cache, once: ``$EVENTFLOW_CACHE/kafka-4.1.1/libs``, by
   default ``~/.cache/eventflow/kafka-4.1.1/libs``. A complete cache is used as is.
2. Writes ``server.properties`` (one node that is both broker and controller, listeners on
   127.0.0.1, replication factors 1, no topic auto-creation) and a log4j2 configuration that
   logs warnings to ``broker.log`` in the data directory.
3. Formats the storage (first start of a data directory only) and starts
   ``java -cp 'libs/*' kafka.Kafka server.properties``, then waits until the broker answers
   a metadata request.

Needs Java 17+ and Maven (``apt-get install openjdk-17-jre-headless maven``); without them
``start()`` raises :class:`ServiceUnavailable` saying so.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from eventflow.dev._process import (
    ChildService,
    ServiceError,
    ServiceUnavailable,
    free_port,
    port_answers,
    port_is_free,
    progress,
    register,
    start_watchdog,
    stop_stale,
    tail,
)

__all__ = ["KAFKA_VERSION", "LocalKafka", "ServiceError", "ServiceUnavailable", "fetch_broker", "libs_dir"]

KAFKA_VERSION = "4.1.1"
SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.24.3"
JAVA_MIN_MAJOR = 17

INSTALL_HINT = "install OpenJDK 17+ and Maven: apt-get install openjdk-17-jre-headless maven"

_ARTIFACTS = [
    ("org.apache.kafka", f"kafka_{SCALA_VERSION}", KAFKA_VERSION),
    ("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION),
    ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
]
_REQUIRED_JARS = [f"{artifact}-{version}.jar" for _group, artifact, version in _ARTIFACTS]
_COMPLETE_MARKER = ".eventflow-complete"
_STATE_FILE = "eventflow-kafka.json"


# -- the broker's jars -----------------------------------------------------------------


def cache_root() -> Path:
    """Where downloaded services are kept: ``$EVENTFLOW_CACHE`` or ``~/.cache/eventflow``."""
    env = os.environ.get("EVENTFLOW_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "eventflow"


def libs_dir() -> Path:
    """The directory that holds (or will hold) the broker's class path."""
    return cache_root() / f"kafka-{KAFKA_VERSION}" / "libs"


def _libs_complete(libs: Path) -> bool:
    marker = libs / _COMPLETE_MARKER
    try:
        names = [line for line in marker.read_text().splitlines() if line.strip()]
    except OSError:
        return False
    return all(name in names for name in _REQUIRED_JARS) and all((libs / name).is_file() for name in names)


def _pom() -> str:
    deps = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>"
        for g, a, v in _ARTIFACTS
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.eventflow</groupId>
  <artifactId>eventflow-local-kafka</artifactId>
  <version>{KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
{deps}
  </dependencies>
</project>
"""


def fetch_broker(*, quiet: bool = False) -> Path:
    """Make sure the broker's jars are in the cache (fetching them with Maven) and return it.

    Safe to call from several processes at once: a file lock makes one of them fetch while
    the others wait, and the cache only counts as complete once every jar is in place.
    """
    libs = libs_dir()
    if _libs_complete(libs):
        return libs
    libs.parent.mkdir(parents=True, exist_ok=True)
    with open(libs.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _libs_complete(libs):
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ServiceUnavailable(
                f"cannot fetch the Kafka {KAFKA_VERSION} broker: Maven (mvn) is not on PATH; {INSTALL_HINT}"
            )
        if not quiet:
            progress(f"fetching Apache Kafka {KAFKA_VERSION} from Maven Central into {libs} (once) ...")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="fetch-", dir=libs.parent) as work:
            work_dir = Path(work)
            (work_dir / "pom.xml").write_text(_pom())
            out_dir = work_dir / "libs"
            cmd = [
                mvn, "-q", "-B", "-f", str(work_dir / "pom.xml"),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={out_dir}",
                "-DincludeScope=runtime",
            ]
            try:
                result = subprocess.run(
                    cmd, cwd=work_dir, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1800
                )
            except subprocess.TimeoutExpired as exc:
                raise ServiceUnavailable(f"Maven did not finish fetching Kafka within {exc.timeout:.0f} s") from exc
            if result.returncode != 0:
                output = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
                raise ServiceUnavailable(
                    f"Maven failed to fetch Apache Kafka {KAFKA_VERSION} (exit {result.returncode}); "
                    f"is Maven Central reachable (proxy settings in ~/.m2/settings.xml)?\n"
                    f"command: {' '.join(cmd)}\n--- Maven output (tail) ---\n{output}"
                )
            names = sorted(p.name for p in out_dir.glob("*.jar"))
            missing = [name for name in _REQUIRED_JARS if name not in names]
            if missing:
                raise ServiceUnavailable(f"Maven finished but these jars are missing: {', '.join(missing)}")
            (out_dir / _COMPLETE_MARKER).write_text("\n".join(names) + "\n")
            if libs.exists():
                shutil.rmtree(libs)
            out_dir.rename(libs)
        if not quiet:
            progress(f"fetched {len(names)} jars in {time.monotonic() - started:.1f} s")
        return libs


# -- java ------------------------------------------------------------------------------


def find_java() -> str:
    """The ``java`` to run the broker with ($JAVA_HOME first), checked to be 17 or newer."""
    java = None
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        java = str(Path(java_home) / "bin" / "java")
    java = java or shutil.which("java")
    if java is None:
        raise ServiceUnavailable(f"cannot start Kafka: java is not on PATH; {INSTALL_HINT}")
    try:
        result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceUnavailable(f"cannot run {java} -version ({exc}); {INSTALL_HINT}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match:
        major = int(match.group(1))
        if major == 1 and match.group(2):  # "1.8.0_392"
            major = int(match.group(2))
        if major < JAVA_MIN_MAJOR:
            raise ServiceUnavailable(
                f"Kafka {KAFKA_VERSION} needs Java {JAVA_MIN_MAJOR}+, but {java} is Java {major}; {INSTALL_HINT}"
            )
    return java


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes in URL-safe base64 without padding."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):  # as Kafka's Uuid.randomUuid(): not parsed as an option
            return text


# -- the broker ------------------------------------------------------------------------


class LocalKafka(ChildService):
    """A single-node Apache Kafka broker (KRaft) on 127.0.0.1, as a child process.

    ``port`` is the client (PLAINTEXT) port, free by default. ``data_dir`` holds the
    configuration, logs (``broker.log``, ``broker.out``) and the topics' data; by default
    a temporary directory removed by ``stop()``. A given data directory is formatted on
    first use and reused afterwards (topics and offsets survive a restart).
    """

    stop_signal = signal.SIGTERM
    pid_file_name = "broker.pid"

    def __init__(
        self,
        port: int | None = None,
        data_dir: str | os.PathLike | None = None,
        *,
        heap: str = "512m",
        start_timeout: float = 120.0,
        stop_timeout: float = 30.0,
        quiet: bool = False,
    ) -> None:
        self.requested_port = port
        self.requested_data_dir = Path(data_dir).expanduser().resolve() if data_dir is not None else None
        self.heap = heap
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.quiet = quiet
        self.port: int | None = None
        self.controller_port: int | None = None
        self.data_dir: Path | None = None
        self.cluster_id: str | None = None
        self._proc: subprocess.Popen | None = None
        self._watchdog: subprocess.Popen | None = None
        self._temporary = data_dir is None

    # -- public ----------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"``, for ``bootstrap_servers`` or ``eventflow server --kafka``."""
        if self.port is None:
            raise RuntimeError("the broker is not started")
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path | None:
        return self.data_dir / "broker.log" if self.data_dir else None

    def log_tail(self, lines: int = 40) -> str:
        if self.data_dir is None:
            return "(no data directory)"
        return (
            f"--- {self.data_dir / 'broker.log'} ---\n{tail(self.data_dir / 'broker.log', lines)}\n"
            f"--- {self.data_dir / 'broker.out'} ---\n{tail(self.data_dir / 'broker.out', lines)}"
        )

    def start(self) -> "LocalKafka":
        """Fetch (once), configure, format (once) and start the broker; wait until it answers."""
        if self.running:
            return self
        java = find_java()
        libs = fetch_broker(quiet=self.quiet)
        self._prepare_data_dir()
        attempts = 1 if self.requested_port is not None else 3
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(java, libs)
                return self
            except _PortTaken:
                self._cleanup_process()
                if attempt == attempts:
                    raise ServiceError(f"Kafka could not bind its ports:\n{self.log_tail()}") from None
                self.port = self.controller_port = None
            except BaseException:
                self.stop()
                raise
        return self

    def stop(self) -> int | None:
        """Stop the broker (SIGTERM, then SIGKILL after ``stop_timeout``); safe to repeat.

        Works whatever happened to the process (even ``kill -9``). A temporary data
        directory is removed. Returns the broker's exit status if it was started.
        """
        status = self._cleanup_process()
        self._remove_temporary_data_dir()
        return status

    def __repr__(self) -> str:
        state = f"running at {self.bootstrap}" if self.running else "stopped"
        return f"<LocalKafka {KAFKA_VERSION} {state} data_dir={self.data_dir}>"

    # -- internals -------------------------------------------------------------------

    def _prepare_data_dir(self) -> None:
        if self.data_dir is None:
            if self.requested_data_dir is None:
                self.data_dir = Path(tempfile.mkdtemp(prefix="eventflow-kafka-"))
            else:
                self.data_dir = self.requested_data_dir
                self.data_dir.mkdir(parents=True, exist_ok=True)
        # A broker left running on this data directory by an owner that vanished.
        stop_stale(self.data_dir / "broker.pid", str(self.data_dir / "server.properties"), signal.SIGTERM)
        state = self._read_state()
        self.cluster_id = state.get("cluster_id") or _cluster_id()

    def _read_state(self) -> dict:
        try:
            return json.loads((self.data_dir / _STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def _choose_ports(self) -> None:
        state = self._read_state()
        if self.port is None:
            self.port = self.requested_port or free_port()
        if self.controller_port is None:
            # Keep the controller's address across restarts of a data directory: it is
            # written into the metadata log when the storage is formatted.
            previous = state.get("controller_port")
            if previous and previous != self.port and port_is_free(previous):
                self.controller_port = previous
            else:
                self.controller_port = free_port()
                while self.controller_port == self.port:
                    self.controller_port = free_port()
        if not port_is_free(self.port):
            raise ServiceError(
                f"cannot start Kafka on 127.0.0.1:{self.port}: the port is in use"
                + ("" if self.requested_port is None else "; choose another with --port")
            )

    def _write_config(self) -> Path:
        data = self.data_dir
        log_dir = data / "kraft-logs"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(log_dir),
            "num.partitions": "3",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "delete.topic.enable": "true",
        }
        server_properties = data / "server.properties"
        server_properties.write_text(
            "# Written by eventflow.dev.kafka: single-node KRaft broker for development and tests.\n"
            + "".join(f"{key}={value}\n" for key, value in props.items())
        )
        log4j = data / "log4j2.properties"
        log4j.write_text(
            "# Written by eventflow.dev.kafka: warnings and errors go to broker.log, nothing to stdout.\n"
            "status = error\n"
            "name = eventflow-kafka\n"
            "appender.file.type = File\n"
            "appender.file.name = FILE\n"
            f"appender.file.fileName = {data / 'broker.log'}\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = WARN\n"
            "rootLogger.appenderRef.file.ref = FILE\n"
            # One INFO line per start and stop, so the log shows the broker's lifecycle.
            "logger.raft.name = kafka.server.KafkaRaftServer\n"
            "logger.raft.level = INFO\n"
        )
        return server_properties

    def _java_opts(self) -> list[str]:
        return [
            f"-Xmx{self.heap}",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.data_dir}",
        ]

    def _format(self, java: str, libs: Path, server_properties: Path) -> None:
        if (self.data_dir / "kraft-logs" / "meta.properties").exists():
            return
        cmd = [
            java, *self._java_opts(), "-cp", f"{libs}/*", "kafka.tools.StorageTool",
            "format", "--standalone", "-t", self.cluster_id, "-c", str(server_properties),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=self.data_dir, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
            raise ServiceError(f"formatting Kafka's storage failed (exit {result.returncode}):\n{output}")

    def _start_once(self, java: str, libs: Path) -> None:
        started = time.monotonic()
        self._choose_ports()
        server_properties = self._write_config()
        self._format(java, libs, server_properties)
        (self.data_dir / _STATE_FILE).write_text(
            json.dumps({"cluster_id": self.cluster_id, "controller_port": self.controller_port, "port": self.port})
        )
        cmd = [java, *self._java_opts(), "-cp", f"{libs}/*", "kafka.Kafka", str(server_properties)]
        with open(self.data_dir / "broker.out", "ab") as out:
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (self.data_dir / "broker.pid").write_text(f"{self._proc.pid}\n")
        self._watchdog = start_watchdog(
            self._proc.pid, signal.SIGTERM, self.stop_timeout, self.data_dir if self._temporary else None
        )
        register(self, self.stop)
        if not self.quiet:
            progress(f"starting Kafka {KAFKA_VERSION} on {self.bootstrap} (data in {self.data_dir}) ...")
        self._wait_ready(started)
        if not self.quiet:
            progress(f"Kafka is up on {self.bootstrap} after {time.monotonic() - started:.1f} s")

    def _wait_ready(self, started: float) -> None:
        deadline = started + self.start_timeout
        last_error: Exception | None = None
        while True:
            if self._proc.poll() is not None:
                log = self.log_tail()
                if "Address already in use" in log or "BindException" in log:
                    raise _PortTaken()
                raise ServiceError(f"the Kafka broker exited with status {self._proc.returncode} while starting:\n{log}")
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"the Kafka broker did not answer on {self.bootstrap} within {self.start_timeout:.0f} s"
                    f" (last error: {last_error!r}):\n{self.log_tail()}"
                )
            if port_answers(self.port):
                try:
                    _check_metadata(self.bootstrap)
                    return
                except Exception as exc:  # noqa: BLE001 - not ready yet, any way it fails
                    last_error = exc
            time.sleep(0.2)



class _PortTaken(Exception):
    """Another process took a port between choosing it and the broker binding it."""


def _check_metadata(bootstrap: str) -> None:
    """Raise unless the broker at ``bootstrap`` answers a metadata request."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="eventflow-dev-readiness",
        request_timeout_ms=5000,
        bootstrap_timeout_ms=5000,
        reconnect_backoff_max_ms=500,
    )
    try:
        admin.list_topics()
    finally:
        admin.close()
