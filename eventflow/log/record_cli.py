"""``eventflow log export|import|copy|seal``: the log as a portable, checkable record."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import click

from eventflow.log.base import Log, LogError


def open_uri(uri: str) -> Log:
    """A log by URI: ``kafka://host:port[,…]``, or a directory — an eventflow home (the
    log in HOME/log, as ``--from ~/.eventflow``) or a log directory itself (holding log.db).
    A directory that holds neither becomes a home with a new log."""
    from eventflow.log import open_log

    if uri.startswith("kafka://"):
        return open_log(uri)
    path = Path(uri.removeprefix("file://")).expanduser()
    if (path / "log.db").exists():
        return open_log(str(path))
    return open_log(str(path / "log"))


def _total(log: Log, topics: Sequence[str]) -> int:
    existing = set(log.topics())
    return sum(sum(log.end_offsets(t).values()) for t in topics if t in existing)


def _bar(length: int, label: str):  # type: ignore[no-untyped-def]
    return click.progressbar(length=length, label=label, show_pos=True, show_eta=True, file=sys.stderr)


def _source_options(function):  # type: ignore[no-untyped-def]
    function = click.option("--log", "log_uri", metavar="URI", default=None,
                            help="The log: kafka://HOST:PORT or a directory (an eventflow home or a log directory). "
                                 "Default: the embedded log of --home.")(function)
    function = click.option("--kafka", envvar="EVENTFLOW_KAFKA", metavar="HOST:PORT[,HOST:PORT]", default=None,
                            help="Read this Kafka cluster's log. [env EVENTFLOW_KAFKA]")(function)
    return click.option("--home", envvar="EVENTFLOW_HOME", type=click.Path(file_okay=False), default=None,
                        help="Directory of the embedded log (HOME/log). [env EVENTFLOW_HOME; default ~/.eventflow]")(function)


def open_source(log_uri: str | None, home: str | None, kafka: str | None) -> Log:
    """The log named by --log, else --kafka, else the embedded log of --home (which must exist)."""
    if log_uri:
        if not log_uri.startswith("kafka://"):
            path = Path(log_uri.removeprefix("file://")).expanduser()
            if not (path / "log.db").exists() and not (path / "log" / "log.db").exists():
                raise click.UsageError(f"there is no eventflow log at {path}")
        return open_uri(log_uri)
    from eventflow.log.cli import _open

    return _open(home, kafka)


@click.command("export")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="A new or empty directory for the files.")
@click.option("--since", default=None, metavar="TIME", help="Only records appended at or after TIME (ms since the epoch, or ISO 8601).")
@click.option("--topic", "topics", multiple=True, metavar="TOPIC", help="Only this topic (repeatable). Default: every topic.")
@_source_options
def export(out: str, since: str | None, topics: tuple[str, ...], log_uri: str | None, home: str | None, kafka: str | None) -> None:
    """Write the log as Avro Object Container Files, one per topic and partition, and a manifest.

    Each file embeds its schema and every writer schema of its topic; any Avro reader
    (fastavro, avro-tools tojson, Spark) reads every event's fields from it with no
    eventflow code. manifest.json lists each file with its record count, its SHA-256 and
    its last chain digest. Check an export with 'eventflow log verify --export DIR'.
    """
    from eventflow.log.export import export_log, parse_since

    try:
        since_ms = parse_since(since)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--since") from None
    log = open_source(log_uri, home, kafka)
    try:
        chosen = list(topics) or log.topics()
        started = time.perf_counter()
        with _bar(_total(log, chosen), "exporting") as bar:
            manifest = export_log(log, out, topics=topics or None, since_ms=since_ms,
                                  source=log_uri or (f"kafka://{kafka}" if kafka else "embedded"), on_step=bar.update)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    finally:
        log.close()
    elapsed = time.perf_counter() - started
    count = manifest["records"]
    click.echo(f"exported {count:,} records of {len(manifest['topics'])} topics into {len(manifest['files'])} files "
               f"in {elapsed:.1f} s ({count / elapsed if elapsed else 0:,.0f} records/s): {out}")


@click.command("import")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--to", "to", required=True, metavar="URI", help="The log to import into: kafka://HOST:PORT or a directory.")
def import_(directory: str, to: str) -> None:
    """Replay an export into another log, keeping event ids, keys, headers and per-key order.

    Idempotent: records the target already holds (by event id; by content for records
    that are no event) are skipped, so importing twice, or again after an interruption,
    adds nothing twice. The files are checked against the manifest first.
    """
    from eventflow.log.export import read_manifest
    from eventflow.log.replay import import_export

    try:
        total = read_manifest(directory)["records"]
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    target = open_uri(to)
    started = time.perf_counter()
    try:
        with _bar(total, "importing") as bar:
            report = import_export(directory, target, on_step=bar.update, on_skip=bar.update)
    except (ValueError, LogError) as error:
        raise click.ClickException(str(error)) from None
    finally:
        target.close()
    _report_import(report, time.perf_counter() - started)


def _report_import(report, elapsed: float) -> None:  # type: ignore[no-untyped-def]
    click.echo(f"appended {report.appended:,} records, skipped {report.skipped:,} already on the target"
               + (f", {report.unreadable:,} unreadable in the source (not replayed)" if report.unreadable else "")
               + f" in {elapsed:.1f} s ({report.read / elapsed if elapsed else 0:,.0f} records/s)")


@click.command("copy")
@click.option("--from", "source", required=True, metavar="URI", help="The log to copy: a home (~/.eventflow), a log directory or kafka://…")
@click.option("--to", "to", required=True, metavar="URI", help="The log to copy into: kafka://HOST:PORT or a directory.")
@click.option("--work", type=click.Path(file_okay=False), default=None,
              help="Keep the intermediate export here (default: a temporary directory, removed after).")
def copy(source: str, to: str, work: str | None) -> None:
    """Move an installation's log to another log (e.g. the embedded one to Kafka).

    An export then an import, the same code as those commands: afterwards
    'eventflow views rebuild' on the target gives the views of the source. Safe to run
    again: what the target holds already is skipped. The source is left as it was.
    """
    from eventflow.log.replay import copy_log

    if source.rstrip("/") == to.rstrip("/"):
        raise click.UsageError("--from and --to are the same log")
    origin = open_source(source, None, None)
    target = open_uri(to)
    started = time.perf_counter()
    try:
        total = _total(origin, origin.topics())
        # One bar for both halves: every record is exported, then imported (or skipped).
        with _bar(2 * total, "copying (export, then import)") as bar:
            manifest, report = copy_log(origin, target, work=work, source_name=source,
                                        on_export=bar.update, on_import=bar.update, on_skip=bar.update)
    except (ValueError, LogError) as error:
        raise click.ClickException(str(error)) from None
    finally:
        origin.close()
        target.close()
    click.echo(f"copied {manifest['records']:,} records of {len(manifest['topics'])} topics from {source} to {to}")
    _report_import(report, time.perf_counter() - started)
    if report.already > report.skipped:
        click.echo(f"note: the target held {report.already - report.skipped:,} records that are not from the source", err=True)


@click.command("seal")
@click.option("--every", type=click.IntRange(1), default=10_000, show_default=True, help="Records between two seals of a partition.")
@click.option("--topic", "topics", multiple=True, metavar="TOPIC", help="Only this topic (repeatable). Default: every topic.")
@click.option("--follow", is_flag=True, help="Keep sealing what is appended, every --interval seconds, until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(0.1), default=10.0, show_default=True)
@_source_options
def seal(every: int, topics: tuple[str, ...], follow: bool, interval: float, log_uri: str | None, home: str | None, kafka: str | None) -> None:
    """Seal the log's chain where appenders cannot chain it (Kafka).

    Reads each partition from its last seal, computes the tamper-evidence chain and
    appends seals (the digest at an offset) to the topic eventflow.chain-seals; 'eventflow
    log verify' then finds any sealed record changed since. Run one sealer per cluster.
    """
    from eventflow.log.seals import seal as seal_log

    log = open_source(log_uri, home, kafka)
    try:
        while True:
            written = seal_log(log, topics or None, every=every)
            covered = len({(s.topic, s.partition) for s in written})
            click.echo(f"wrote {len(written):,} seals on {covered} partitions")
            if not follow:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        log.close()


def register(group: click.Group) -> None:
    """Add these commands to the ``eventflow log`` group."""
    for command in (export, import_, copy, seal):
        group.add_command(command)
