"""Real services for the tests: an Apache Kafka broker and a PostgreSQL server.

``kafka_bootstrap`` ("host:port") is taken from the first of these that works:

1. ``$EVENTFLOW_KAFKA_BOOTSTRAP``: a broker you run yourself (e.g. ``eventflow dev kafka``);
2. testcontainers' ``KafkaContainer`` (KRaft), when a Docker engine answers;
3. a local broker started by ``eventflow.dev.kafka.LocalKafka`` (Kafka from Maven
   Central, run with the local java; needs Java 17+ and Maven);
4. none: the test is skipped, saying why, except when ``CI=true``, where it fails.

``postgres_url`` (a SQLAlchemy URL) likewise: ``$EVENTFLOW_TEST_POSTGRES_URL``, then
testcontainers' ``PostgresContainer``, then ``eventflow.dev.postgres.LocalPostgres`` (the
machine's PostgreSQL packages), then skip (fail under ``CI=true``).

Both are session-scoped and lazy: a service starts only when a test asks for it, once per
session (per xdist worker), and stops at the end. A service that is present but fails to
start is an error, never a skip.
"""

from __future__ import annotations

import functools
import os
import subprocess
import warnings

import pytest


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _unavailable(reason: str):
    """Skip a test that needs a service this machine lacks; under CI=true, fail it."""
    if _in_ci():
        pytest.fail(f"{reason} (CI=true: a missing service is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


@functools.lru_cache(maxsize=1)
def _docker_answers() -> bool:
    """True when a Docker engine answers within a few seconds (checked once)."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - no SDK, no socket, no daemon, permission denied...
        pass
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=5
        )
        return result.returncode == 0 and bool(result.stdout.strip())
    except Exception:  # noqa: BLE001
        return False


def _import_container(name: str, cls: str):
    """A testcontainers module's class, from the newer ``testcontainers.community`` if there."""
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for module in (f"testcontainers.community.{name}", f"testcontainers.{name}"):
            try:
                return getattr(importlib.import_module(module), cls)
            except (ImportError, AttributeError):
                continue
    raise ImportError(f"testcontainers has no {cls}")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory):
    """``"host:port"`` of a real Apache Kafka broker (see the module docstring for where from)."""
    env = os.environ.get("EVENTFLOW_KAFKA_BOOTSTRAP", "").strip()
    if env:
        yield env
        return

    if _docker_answers():
        KafkaContainer = _import_container("kafka", "KafkaContainer")
        container = KafkaContainer().with_kraft()
        container.start()
        try:
            yield container.get_bootstrap_server()
        finally:
            container.stop()
        return

    from eventflow.dev.kafka import LocalKafka, ServiceUnavailable

    kafka = LocalKafka(data_dir=tmp_path_factory.mktemp("kafka"), stop_timeout=20)
    missing = None
    try:
        kafka.start()
    except ServiceUnavailable as exc:
        missing = str(exc)
    if missing is not None:
        _unavailable(f"no Kafka broker: EVENTFLOW_KAFKA_BOOTSTRAP is unset, no Docker engine answers, "
                     f"and a local broker cannot start: {missing}")
    try:
        yield kafka.bootstrap
    finally:
        kafka.stop()


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory):
    """A SQLAlchemy URL (``postgresql+psycopg://...``) of a real, empty PostgreSQL database."""
    env = os.environ.get("EVENTFLOW_TEST_POSTGRES_URL", "").strip()
    if env:
        yield env
        return

    if _docker_answers():
        PostgresContainer = _import_container("postgres", "PostgresContainer")
        container = PostgresContainer("postgres:16-alpine", driver="psycopg")
        container.start()
        try:
            yield container.get_connection_url()
        finally:
            container.stop()
        return

    from eventflow.dev.postgres import LocalPostgres, ServiceUnavailable

    # No data_dir: when run as root the server runs as another user, which cannot enter
    # pytest's private (0700) temporary directory; LocalPostgres makes a reachable one.
    postgres = LocalPostgres()
    missing = None
    try:
        postgres.start()
    except ServiceUnavailable as exc:
        missing = str(exc)
    if missing is not None:
        _unavailable(f"no PostgreSQL: EVENTFLOW_TEST_POSTGRES_URL is unset, no Docker engine answers, "
                     f"and a local server cannot start: {missing}")
    try:
        yield postgres.url
    finally:
        postgres.stop()


@pytest.fixture(scope="session")
def new_postgres_database(postgres_url):
    """A function that makes an empty database of its own on the session's PostgreSQL
    server and returns its SQLAlchemy URL: each server or projector under test gets one,
    so tests never see each other's views."""
    import uuid

    from sqlalchemy import create_engine, text

    def make(prefix: str = "test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
        admin.dispose()
        return postgres_url.rsplit("/", 1)[0] + "/" + name

    return make

