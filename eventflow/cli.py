"""The ``eventflow`` command line."""

from __future__ import annotations

import click

from eventflow import __version__
from eventflow.cli_common import EventflowGroup, checked_tracking_uri
from eventflow.alerts import cli as alerts_cli
from eventflow.jobs import cli as jobs_cli
from eventflow.audit import cli as audit_cli
from eventflow.auth import cli as auth_cli
from eventflow.deploy import cli as deploy_cli
from eventflow.log import cli as log_cli
from eventflow.log import record_cli as log_record_cli
from eventflow.models import cli as models_cli
from eventflow.projects import cli as projects_cli
from eventflow.projects import rerun_cli
from eventflow.registry import cli as registry_cli
from eventflow.sdk import cli as sdk_cli
from eventflow.webhooks import cli as webhooks_cli


@click.group(cls=EventflowGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


# -- the server and the consumers ------------------------------------------------------

def backend_options(function):
    """--home/--kafka/--db/--artifacts: where the log, the views and the artifacts are."""
    options = [
        click.option("--home", envvar="EVENTFLOW_HOME", type=click.Path(file_okay=False), default=None,
                     help="Directory of the embedded default (log, SQLite views, artifacts). [env EVENTFLOW_HOME; default ~/.eventflow]"),
        click.option("--kafka", envvar="EVENTFLOW_KAFKA", metavar="HOST:PORT[,HOST:PORT]", default=None,
                     help="Use this Kafka cluster as the log instead of the embedded one. [env EVENTFLOW_KAFKA]"),
        click.option("--db", envvar="EVENTFLOW_DB", metavar="URL", default=None,
                     help="SQLAlchemy URL of the views, e.g. postgresql+psycopg://user@host/eventflow. [env EVENTFLOW_DB; default SQLite under --home]"),
        click.option("--artifacts", envvar="EVENTFLOW_ARTIFACTS", metavar="DIR", default=None,
                     help="Where artifact files are stored. [env EVENTFLOW_ARTIFACTS; default HOME/artifacts]"),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _export_backend(home, kafka, db, artifacts) -> None:
    """Hand the options to uvicorn's workers, which build their app from the environment."""
    import os

    for name, value in (("EVENTFLOW_HOME", home), ("EVENTFLOW_KAFKA", kafka), ("EVENTFLOW_DB", db), ("EVENTFLOW_ARTIFACTS", artifacts)):
        if value:
            os.environ[name] = value
        else:
            os.environ.pop(name, None)


allow_finite_retention_option = click.option(
    "--allow-finite-retention", envvar="EVENTFLOW_ALLOW_FINITE_RETENTION", is_flag=True,
    help="Run even on Kafka topics that delete records (retention.ms/retention.bytes not -1, or compacted); "
         "without it, eventflow refuses, since the log must keep every event. [env EVENTFLOW_ALLOW_FINITE_RETENTION]")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True, help="Port to listen on.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="Server processes (each runs the API; consumers share the work through their group).")
@click.option("--no-consumers", is_flag=True, help="Run only the API: the projector and the other consumers run apart (eventflow consume NAME).")
@click.option("--allowed-hosts", envvar="EVENTFLOW_ALLOWED_HOSTS", metavar="NAME[,NAME]", default="",
              help="Host names this server answers besides localhost, 127.0.0.1, [::1] and --host (other Host headers get 403: "
                   "DNS rebinding); '*.example.com' allows a domain, '*' any. [env EVENTFLOW_ALLOWED_HOSTS]")
@click.option("--cors-allowed-origins", envvar="EVENTFLOW_CORS_ALLOWED_ORIGINS", metavar="ORIGIN[,ORIGIN]", default="",
              help="Pages on these origins (https://app.example.com) may call the API and open the live socket; "
                   "none by default but the server's own. [env EVENTFLOW_CORS_ALLOWED_ORIGINS]")
@click.option("--auth", envvar="EVENTFLOW_AUTH", is_flag=True,
              help="Require every request to authenticate (HTTP Basic or a bearer token, as MLflow's client sends "
                   "with MLFLOW_TRACKING_USERNAME/_PASSWORD or MLFLOW_TRACKING_TOKEN) and record the authenticated "
                   "user on every event. The first admin comes from EVENTFLOW_ADMIN_USERNAME and "
                   "EVENTFLOW_ADMIN_PASSWORD. Needed to listen on anything but loopback. [env EVENTFLOW_AUTH]")
@click.option("--access-log", is_flag=True, help="Log every request (method, path, status) to stderr. Off by default.")
@click.option("--insecure-no-auth", is_flag=True,
              help="Listen on a non-loopback --host WITHOUT authentication: only behind a proxy of your own that "
                   "authenticates every request and lets nothing else reach this port. Anyone who reaches the "
                   "port can then write, delete and deploy as anyone.")
@backend_options
@allow_finite_retention_option
def server(host, port, workers, no_consumers, allowed_hosts, cors_allowed_origins, auth, access_log, insecure_no_auth,
           home, kafka, db, artifacts, allow_finite_retention) -> None:
    """Run the tracking server: MLflow's REST API 2.0 and eventflow's extensions.

    With no options everything runs in this one process on the embedded default: the
    log, the SQLite views and the artifacts under ~/.eventflow. Point training code at it
    with EVENTFLOW_TRACKING_URI=http://HOST:PORT, or MLflow code with MLFLOW_TRACKING_URI.
    Open http://HOST:PORT/ for the live dashboard (charts move as metrics are logged).
    With EVENTFLOW_DEPLOY_TARGETS='models:/churn@production=8080' it also runs the
    deployer (see eventflow consume --help): promoting a version serves it on that port.

    Authentication is off by default, which is safe only on loopback: a --host other
    than 127.0.0.1/localhost/::1 needs --auth (or, behind a proxy that authenticates,
    --insecure-no-auth), or the server refuses to start.

    \b
    Examples:
      eventflow server
      eventflow server --port 5001 --access-log
      eventflow server --kafka 127.0.0.1:9092 --db postgresql+psycopg://postgres@127.0.0.1/eventflow
      EVENTFLOW_ADMIN_USERNAME=admin EVENTFLOW_ADMIN_PASSWORD=... eventflow server --host 0.0.0.0 --auth
    """
    import os

    import uvicorn

    from eventflow.server.browsers import Policy

    _check_binding(host, auth, insecure_no_auth)
    try:
        Policy.create(allowed_hosts.split(","), [o for o in cors_allowed_origins.split(",") if o.strip()], host)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--cors-allowed-origins") from None
    _export_backend(home, kafka, db, artifacts)
    if db:  # a missing driver is one line here, not a traceback from each worker
        from eventflow.views.db import MissingDriver, check_driver

        try:
            check_driver(db)
        except MissingDriver as error:
            raise click.ClickException(str(error)) from None
    os.environ["EVENTFLOW_SERVER_CONSUMERS"] = "false" if no_consumers else "true"
    os.environ.update(EVENTFLOW_ALLOWED_HOSTS=allowed_hosts, EVENTFLOW_CORS_ALLOWED_ORIGINS=cors_allowed_origins, EVENTFLOW_BIND_HOST=host)
    os.environ["EVENTFLOW_ALLOW_FINITE_RETENTION"] = "true" if allow_finite_retention else "false"
    os.environ["EVENTFLOW_AUTH"] = "true" if auth else "false"  # read by every worker (eventflow/auth)
    if kafka and not allow_finite_retention:  # refuse here, not as a traceback from each worker
        from eventflow.log import LogError
        from eventflow.log.retention import check_kafka

        try:
            check_kafka(kafka)
        except LogError as error:
            raise click.ClickException(str(error)) from None
    if os.environ.get("EVENTFLOW_DEPLOY_TARGETS", "").strip() and not no_consumers:
        if workers > 1:
            raise click.UsageError("EVENTFLOW_DEPLOY_TARGETS needs one server process (its deployer owns the ports): "
                                   "use --workers 1, or run the deployer apart with eventflow consume deployer")
        # The deployer inside this server resolves models:/ URIs through this server.
        local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        os.environ["EVENTFLOW_SERVER_URL"] = f"http://{local}:{port}"
    _refuse_views_being_rebuilt(home, kafka, db)
    _check_port_free(host, port)
    where = f"Kafka {kafka}" if kafka else f"the embedded log in {home or '~/.eventflow'}"
    click.echo(f"eventflow {__version__}: serving {where}; dashboard and API at {_url_of(host, port)}", err=True)
    from eventflow.environment_variables import LIVE_PING_SECONDS

    try:
        ping = LIVE_PING_SECONDS.get()
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    # uvicorn logs requests at info: the access log needs that level, which adds its start-up lines.
    uvicorn.run("eventflow.server.app:app_from_environment", factory=True, host=host, port=port, workers=workers,
                log_level="info" if access_log else "warning", access_log=access_log, ws_ping_interval=ping, ws_ping_timeout=ping)


def _url_of(host: str, port: int) -> str:
    """The URL to open: a wildcard host is reached on this machine through 127.0.0.1."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


def _check_port_free(host: str, port: int) -> None:
    """Bind and let go of ``host:port`` as uvicorn will (SO_REUSEADDR), so that a busy port is
    one error naming it before anything says it serves, not uvicorn's after."""
    import errno
    import socket

    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise click.BadParameter(f"cannot listen on {host!r}: {error.strerror}", param_hint="--host") from None
    family, kind, proto, _, address = addresses[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise click.ClickException(
                    f"port {port} on {host} is already in use (another eventflow server?): stop it, "
                    f"or start this one on another port with --port, e.g. --port {port + 1 if port < 65535 else 5001}"
                ) from None
            raise click.ClickException(f"cannot listen on {host} port {port} ({error.strerror}): pick another with --port") from None


def _refuse_views_being_rebuilt(home, kafka, db) -> None:
    """Say so here, once, rather than as a traceback from each worker."""
    from eventflow.config import Home
    from eventflow.server.runtime import served_views_url
    from eventflow.views.lock import ViewsInUse, hold_views

    try:
        hold_views(served_views_url(Home.resolve(home), kafka, db)).release()
    except ViewsInUse as error:
        raise click.ClickException(str(error)) from None
    except Exception:  # noqa: BLE001 — a database that does not answer: the workers report it, as before
        pass


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` serves this machine only."""
    import ipaddress

    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def _check_binding(host: str, auth: bool, insecure_no_auth: bool) -> None:
    """Refuse to serve the network without authentication, before anything binds."""
    if auth and insecure_no_auth:
        raise click.UsageError("--auth and --insecure-no-auth contradict each other: give one")
    if auth or is_loopback(host):
        return
    if not insecure_no_auth:
        raise click.UsageError(
            f"refusing to listen on {host} without authentication: anyone who can reach it could log, delete and "
            "deploy models as anyone. Start with --auth (the first admin from EVENTFLOW_ADMIN_USERNAME and "
            "EVENTFLOW_ADMIN_PASSWORD), or with --insecure-no-auth if a proxy of your own authenticates every "
            "request before it reaches this port."
        )
    bar = "!" * 78
    click.echo(
        f"{bar}\n!! WARNING: --insecure-no-auth: serving {host} WITHOUT authentication.\n"
        "!! Anyone who can reach this port can write, delete and deploy as anyone, and every\n"
        "!! event names whoever the client claims to be. Only run this behind a proxy that\n"
        f"!! authenticates every request. Use --auth otherwise.\n{bar}",
        err=True,
    )


CONSUMERS = {
    "projector": "builds the SQL views (the tracking database) from the log, exactly once",
    "webhooks": "records a delivery per matching webhook subscription and sends them, signed and retried",
    "deployer": "serves models:/NAME@ALIAS on a port and rolls it to each version the alias moves to",
    "openlineage": "sends each run's START and COMPLETE/FAIL/ABORT, with its datasets and models, to an OpenLineage backend",
    "alerts": "judges metric points against the alert rules: alert.fired once when a rule starts to hold, alert.resolved when it stops",
    "watchdog": "records run.crashed for a run whose training process stopped sending signs of life (EVENTFLOW_RUN_TIMEOUT), "
                "run.stalled for one alive without new metrics (EVENTFLOW_RUN_STALL_TIMEOUT)",
    "scheduler": "turns the jobs' cron ticks and triggering events into job.triggered, exactly one each (eventflow jobs add)",
}


@main.command()
@click.argument("name", type=click.Choice(sorted(CONSUMERS)))
@click.option("--target", "targets", multiple=True, metavar="models:/NAME@ALIAS=PORT",
              help="deployer: serve this alias on this port (repeat for more). [env EVENTFLOW_DEPLOY_TARGETS, comma-separated]")
@click.option("--tracking-uri", callback=checked_tracking_uri, envvar="EVENTFLOW_TRACKING_URI", default=None,
              help="deployer: the eventflow server that resolves models:/ URIs. [env EVENTFLOW_TRACKING_URI]")
@click.option("--url", "lineage_url", envvar="EVENTFLOW_OPENLINEAGE_URL", metavar="URL", default=None,
              help="openlineage: the backend to POST run events to (Marquez: http://HOST:5000). [env EVENTFLOW_OPENLINEAGE_URL]")
@click.option("--file", "lineage_file", envvar="EVENTFLOW_OPENLINEAGE_FILE", type=click.Path(dir_okay=False), default=None,
              help="openlineage: append the run events to this file instead, one JSON per line. [env EVENTFLOW_OPENLINEAGE_FILE]")
@click.option("--namespace", "lineage_namespace", envvar="EVENTFLOW_OPENLINEAGE_NAMESPACE", default="eventflow", show_default=True,
              help="openlineage: the namespace of the jobs (one per experiment). [env EVENTFLOW_OPENLINEAGE_NAMESPACE]")
@backend_options
@allow_finite_retention_option
def consume(name, targets, tracking_uri, lineage_url, lineage_file, lineage_namespace, home, kafka, db, artifacts,
            allow_finite_retention) -> None:
    """Run one consumer on its own, as a member of its consumer group.

    Run more instances to share the work: the log splits the partitions between them.
    Stops cleanly (leaving the group) on Ctrl-C or SIGTERM.

    \b
    Consumers:
      projector  builds the SQL views (the tracking database) from the log, exactly once
      webhooks   records a delivery per matching webhook subscription and sends them,
                 signed and retried (settings: EVENTFLOW_WEBHOOK_* variables, see README)
      deployer   serves models:/NAME@ALIAS on a port; when the alias moves, starts the
                 new version beside the old, health-checks it with its input example,
                 switches traffic without dropping requests, and emits deployment.* events
      openlineage  sends every run to an OpenLineage backend (Marquez...) or a file:
                 START, COMPLETE/FAIL/ABORT with its datasets and models; at-least-once
                 (needs pip install 'eventflow[openlineage]')
      alerts     judges metric points against the alert rules (eventflow alerts add):
                 alert.fired once when a rule starts to hold, alert.resolved when it stops
      watchdog   records run.crashed for a run whose training process stopped sending
                 signs of life for EVENTFLOW_RUN_TIMEOUT seconds (default 300), and
                 run.stalled for one alive without a new metric for
                 EVENTFLOW_RUN_STALL_TIMEOUT seconds (default 0: not judged)
      scheduler  turns the jobs' cron ticks and triggering events (eventflow jobs add)
                 into job.triggered, exactly one each, for agents (eventflow agent) to run

    \b
    Examples:
      eventflow consume projector --kafka 127.0.0.1:9092
      eventflow consume deployer --target 'models:/churn@production=8080' --tracking-uri http://127.0.0.1:5000
      eventflow consume openlineage --url http://127.0.0.1:5000   (Marquez)
    """
    import os
    import signal
    import threading

    from eventflow.consumers.base import ConsumerLoop
    from eventflow.consumers.projector import Projector
    from eventflow.server.runtime import open_runtime

    deployer = None
    if name == "deployer":
        from eventflow.consumers.deployer import parse_target, targets_from_env

        try:
            chosen = [parse_target(spec) for spec in targets] or targets_from_env()
        except ValueError as error:
            raise click.UsageError(str(error)) from None
        if not chosen:
            raise click.UsageError("give the deployer a target: --target 'models:/NAME@ALIAS=PORT' (or EVENTFLOW_DEPLOY_TARGETS)")
        if not (tracking_uri or "").startswith(("http://", "https://")):
            raise click.UsageError("the deployer resolves models:/ URIs through an eventflow server: give --tracking-uri http://HOST:PORT")
        deployer = chosen
    lineage_client = None
    if name == "openlineage":
        from eventflow.consumers.openlineage import MissingExtra, open_client

        if (lineage_url is None) == (lineage_file is None):
            raise click.UsageError("give the OpenLineage consumer one target: --url http://BACKEND or --file PATH")
        try:
            from eventflow.environment_variables import OPENLINEAGE_API_KEY

            lineage_client = open_client(lineage_url, lineage_file, api_key=OPENLINEAGE_API_KEY.get())
        except MissingExtra as error:
            raise click.ClickException(str(error)) from None
    from eventflow.log import LogError
    from eventflow.views.lock import ViewsInUse

    try:
        runtime = open_runtime(home=home, kafka=kafka, db=db, artifacts=artifacts, run_consumers=False,
                               allow_finite_retention=allow_finite_retention)
    except (LogError, ViewsInUse) as error:
        raise click.ClickException(str(error)) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if name == "webhooks":
        from eventflow.consumers.webhooks import Dispatcher

        runner = Dispatcher(runtime.log, runtime.engine, runtime.webhook_settings).run
    elif name == "alerts":
        from eventflow.consumers.alerts import Watcher

        runner = Watcher(runtime.log, runtime.engine).run
    elif name == "scheduler":
        from eventflow.consumers.scheduler import Scheduler

        runner = Scheduler(runtime.log, runtime.engine).run
    elif name == "watchdog":
        from eventflow.consumers.watchdog import Watchdog
        from eventflow.environment_variables import RUN_STALL_TIMEOUT, RUN_TIMEOUT

        runner = Watchdog(runtime.log, runtime.engine, RUN_TIMEOUT.get() or 300.0, RUN_STALL_TIMEOUT.get() or 0.0).run
    elif deployer is not None:
        from eventflow.consumers.deployer import Deployer

        runner = Deployer(runtime.log, deployer, tracking_uri).run
        click.echo("deployer: " + ", ".join(f"{t.name}@{t.alias} on {t.endpoint}" for t in deployer), err=True)
    elif lineage_client is not None:
        from eventflow.consumers.openlineage import LineageConsumer

        runner = LineageConsumer(runtime.log, runtime.engine, lineage_client, lineage_namespace).run
        click.echo(f"openlineage: sending to {lineage_url or lineage_file} (namespace {lineage_namespace})", err=True)
    else:
        runner = ConsumerLoop(runtime.log, Projector(runtime.engine)).run
    click.echo(f"{name}: consuming (Ctrl-C to stop)", err=True)
    runner(stop)
    runtime.stop()
    click.echo(f"{name}: stopped", err=True)


# Each concept's commands live beside it.
main.add_command(models_cli.models)
main.add_command(registry_cli.registry)
main.add_command(deploy_cli.deployments)
main.add_command(webhooks_cli.webhooks)
main.add_command(alerts_cli.alerts)
main.add_command(jobs_cli.jobs)
main.add_command(jobs_cli.agent)
main.add_command(sdk_cli.sync)
main.add_command(log_cli.log_group)
log_record_cli.register(log_cli.log_group)
main.add_command(auth_cli.users)
main.add_command(auth_cli.tokens)
main.add_command(auth_cli.permissions)
main.add_command(audit_cli.audit)
main.add_command(audit_cli.lineage)
registry_cli.registry.add_command(audit_cli.alias_history)
main.add_command(projects_cli.run_command)
main.add_command(rerun_cli.rerun)


@main.group()
def views() -> None:
    """Manage the SQL views (the tracking database built from the log)."""


@views.command("rebuild")
@click.option("--into", metavar="URL", default=None,
              help="Rebuild into this (empty) database instead; required when the views are not the default SQLite file.")
@click.option("--until", metavar="TIME|TOPIC:PARTITION:OFFSET", default=None,
              help="A snapshot of that moment (needs --into; the live views are not touched). See eventflow/audit/snapshot.py.")
@click.option("--force", is_flag=True, default=False,
              help="Rebuild even while a server or consumer uses the views (restart it afterwards).")
@backend_options
def views_rebuild(into, until, force, home, kafka, db, artifacts) -> None:
    """Rebuild the views from offset zero into a fresh database, then swap it in.

    The log is the source of truth: this replays every event through the projector
    into a new database, showing progress and events/s. For the default SQLite views the
    new file replaces the old one at the end; for another database, give an empty one
    with --into and point the server at it afterwards. What the log does not hold
    (secrets, what the webhook dispatcher delivered: eventflow/views/kept.py) is carried
    across. Refused while a server or consumer uses the views (stop it first), unless
    --force.
    """
    import os
    import time
    from pathlib import Path

    from eventflow.config import Home
    from eventflow.consumers.base import ConsumerLoop
    from eventflow.consumers.projector import Projector
    from eventflow.events import LIFECYCLE_TOPICS
    from eventflow.log import open_log
    from eventflow.server.runtime import served_views_url
    from eventflow.views.db import open_views
    from eventflow.views.kept import carry_kept
    from eventflow.views.lock import ViewsHold, ViewsInUse, hold_views

    where = Home.resolve(home)
    if until is not None:
        return audit_cli.snapshot(until, into, where, kafka)
    replaced_url = served_views_url(where, kafka, db)
    swap_file: Path | None = None
    if into is None:
        if db or kafka:
            raise click.UsageError("give --into URL: an empty database to rebuild into")
        current = where.path / "views.db"
        swap_file = where.path / "views.rebuild.db"
        into = f"sqlite:///{swap_file}"
    holds: list[ViewsHold] = []
    try:
        # The rebuild's own new file (swap_file) is no one else's.
        for url in [replaced_url, *([into] if swap_file is None and into != replaced_url else [])]:
            try:
                holds.append(hold_views(url, exclusive=True))
            except ViewsInUse as error:
                if not force:
                    raise click.ClickException(f"{error}. Stop it first: a rebuild meanwhile would lose what it writes, "
                                               "and it would go on using the views it opened. Or give --force.") from None
                click.echo(f"warning: {error}; rebuilding anyway (--force): restart it afterwards.", err=True)
        if swap_file is not None:  # what an interrupted rebuild left; only now, when no other rebuild runs
            for suffix in ("", "-wal", "-shm"):
                Path(f"{swap_file}{suffix}").unlink(missing_ok=True)
        log = open_log(f"kafka://{kafka}" if kafka else str(where.log_dir))
        existing = [t for t in LIFECYCLE_TOPICS if t in log.topics()]
        total = sum(sum(log.end_offsets(t).values()) for t in existing)
        engine = open_views(into)
        loop = ConsumerLoop(log, Projector(engine), join_group=False)
        started = time.perf_counter()
        with click.progressbar(length=total, label="replaying", show_pos=True) as bar:
            loop.catch_up(timeout=float("inf"), on_step=bar.update)
            done = bar.pos
        elapsed = time.perf_counter() - started
        loop.close()
        log.close()
        # Last, so that under --force it misses as little as can be.
        replaced = open_views(replaced_url)
        carried = carry_kept(replaced, engine)
        replaced.dispose()
        engine.dispose()
        click.echo(f"replayed {done:,} events in {elapsed:.1f} s ({done / elapsed if elapsed else 0:,.0f} events/s)")
        if any(carried.values()):
            click.echo("carried over what the log does not hold: " + ", ".join(f"{n:,} rows of {t}" for t, n in carried.items()))
        if swap_file is not None:
            for suffix in ("-wal", "-shm"):
                Path(f"{current}{suffix}").unlink(missing_ok=True)
            os.replace(swap_file, current)
            click.echo(f"swapped the rebuilt views into {current}")
        else:
            click.echo(f"rebuilt into {into}: start the server with --db {into}")
    finally:
        for hold in holds:
            hold.release()
