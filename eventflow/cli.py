"""The ``eventflow`` command line."""

from __future__ import annotations

import click

from eventflow import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="eventflow")
def main() -> None:
    """eventflow: the machine-learning lifecycle as a log of events.

    Every parameter, metric, tag, artifact, run transition and model promotion is an
    Avro event on a log (Kafka, or an embedded log on local disk); SQL views, webhooks,
    the live dashboard and the deployer are consumers of it.
    """


@main.group()
def dev() -> None:
    """Start real services for development and tests, without Docker."""


def _serve_in_foreground(service, ready_lines: list[str]) -> None:
    """Print how to use a started service, then keep it running until Ctrl-C (or SIGTERM)."""
    import signal
    import sys

    def _terminate(signum, frame):  # SIGTERM stops as cleanly as Ctrl-C
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        for line in ready_lines:
            click.echo(line)
        click.echo("Press Ctrl-C to stop.")
        sys.stdout.flush()
        while True:
            status = service.wait(timeout=1.0)
            if status is not None:
                click.echo(f"error: the service exited unexpectedly (status {status}):\n{service.log_tail()}", err=True)
                raise SystemExit(1)
    except KeyboardInterrupt:
        click.echo("\nstopping ...", err=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        service.stop()
    click.echo("stopped.", err=True)


def _start_or_exit(service) -> None:
    from eventflow.dev._process import ServiceError, ServiceUnavailable

    try:
        service.start()
    except KeyboardInterrupt:
        service.stop()
        raise SystemExit(130) from None
    except (ServiceUnavailable, ServiceError) as exc:
        raise click.ClickException(str(exc)) from None


_DATA_DIR = click.Path(file_okay=False, dir_okay=True, writable=True, resolve_path=True)


@dev.command("kafka")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Client port on 127.0.0.1 (PLAINTEXT listener). Default: a free port.")
@click.option("--data-dir", type=_DATA_DIR, default=None,
              help="Keep the broker's data, configuration and logs here, and reuse them on the next "
                   "start (topics and offsets survive). Default: a temporary directory deleted on exit.")
def dev_kafka(port: int | None, data_dir: str | None) -> None:
    """Run a real Apache Kafka broker on 127.0.0.1 until Ctrl-C.

    A single node that is both broker and controller (KRaft), Apache Kafka 4.1.1 from
    Maven Central, run with the local java; no Docker. The first start downloads the
    broker's jars with Maven into ~/.cache/eventflow (or $EVENTFLOW_CACHE); later starts
    take a few seconds. Topics are not created automatically; new topics get 3
    partitions. Warnings and errors go to broker.log in the data directory.

    Needs Java 17+ and Maven (apt-get install openjdk-17-jre-headless maven).

    \b
    Then, in another terminal:
      eventflow server --kafka 127.0.0.1:9092
      EVENTFLOW_KAFKA_BOOTSTRAP=127.0.0.1:9092 pytest   # run the Kafka tests against it

    \b
    Examples:
      eventflow dev kafka --port 9092
      eventflow dev kafka --port 9092 --data-dir ~/.local/share/eventflow/kafka
    """
    from eventflow.dev.kafka import KAFKA_VERSION, LocalKafka

    kafka = LocalKafka(port=port, data_dir=data_dir)
    _start_or_exit(kafka)
    _serve_in_foreground(kafka, [
        f"Apache Kafka {KAFKA_VERSION} is running.",
        f"  bootstrap servers: {kafka.bootstrap}",
        f"  data directory:    {kafka.data_dir}" + ("" if data_dir else " (temporary, deleted on exit)"),
        f"  broker log:        {kafka.log_file}",
        "Use it:",
        f"  eventflow server --kafka {kafka.bootstrap}",
        f"  EVENTFLOW_KAFKA_BOOTSTRAP={kafka.bootstrap} pytest",
    ])


@dev.command("postgres")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="TCP port on 127.0.0.1. Default: a free port.")
@click.option("--data-dir", type=_DATA_DIR, default=None,
              help="Keep the database cluster (pgdata/) and the server log here, and reuse them on the "
                   "next start. Default: a temporary directory deleted on exit. When run as root, "
                   "the server runs as the 'postgres' user, so pick a directory that user can reach "
                   "(e.g. under /tmp or /var/tmp).")
def dev_postgres(port: int | None, data_dir: str | None) -> None:
    """Run a real PostgreSQL server on 127.0.0.1 until Ctrl-C.

    Uses the PostgreSQL installed on this machine (initdb and postgres from PATH or
    /usr/lib/postgresql/*/bin, the newest version); no Docker, no system service. The
    cluster uses trust authentication for user postgres, UTF8, and has a database named
    eventflow. A temporary server runs with fsync off (fast, not crash-safe); one with
    --data-dir keeps fsync on.

    Needs PostgreSQL's server (apt-get install postgresql).

    \b
    Then, in another terminal:
      eventflow server --db postgresql+psycopg://postgres@127.0.0.1:5433/eventflow
      EVENTFLOW_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5433/eventflow pytest

    \b
    Examples:
      eventflow dev postgres --port 5433
      eventflow dev postgres --port 5433 --data-dir /var/tmp/eventflow-postgres
    """
    from eventflow.dev.postgres import LocalPostgres

    postgres = LocalPostgres(port=port, data_dir=data_dir)
    _start_or_exit(postgres)
    _serve_in_foreground(postgres, [
        "PostgreSQL is running.",
        f"  URL (SQLAlchemy): {postgres.url}",
        f"  psql:             psql {postgres.dsn}",
        f"  data directory:   {postgres.data_dir}" + ("" if data_dir else " (temporary, deleted on exit)"),
        f"  server log:       {postgres.log_file}",
        "Use it:",
        f"  eventflow server --db {postgres.url}",
        f"  EVENTFLOW_TEST_POSTGRES_URL={postgres.url} pytest",
    ])
