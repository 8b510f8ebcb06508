"""``eventflow log ...``: check the log itself, and see what its consumers skipped."""

from __future__ import annotations

import sys
import time

import click

from eventflow.log.base import Log, LogError, TopicPartition


def _log_options(function):
    function = click.option("--kafka", envvar="EVENTFLOW_KAFKA", metavar="HOST:PORT[,HOST:PORT]", default=None,
                            help="Read this Kafka cluster's log instead of the embedded one. [env EVENTFLOW_KAFKA]")(function)
    return click.option("--home", envvar="EVENTFLOW_HOME", type=click.Path(file_okay=False), default=None,
                        help="Directory of the embedded log (HOME/log). [env EVENTFLOW_HOME; default ~/.eventflow]")(function)


def _open(home: str | None, kafka: str | None) -> Log:
    """The log to read; never creates an embedded one where there is none."""
    from eventflow.config import DEFAULT_HOME
    from eventflow.log import open_log

    if kafka:
        return open_log(f"kafka://{kafka}")
    import os
    from pathlib import Path

    directory = Path(home or os.environ.get("EVENTFLOW_HOME") or DEFAULT_HOME).expanduser() / "log"
    if not (directory / "log.db").exists():
        raise click.UsageError(f"there is no embedded log at {directory}: give the home that holds it (--home DIR) or --kafka HOST:PORT")
    return open_log(str(directory))


@click.group("log")
def log_group() -> None:
    """The log itself: verify its records, list its dead letters."""


@log_group.command("verify")
@click.option("--log", "log_uri", metavar="URI", default=None,
              help="The log to verify: kafka://HOST:PORT or a directory (a home or a log directory); instead of --home/--kafka.")
@click.option("--topic", "topics", multiple=True, metavar="TOPIC", help="Only this topic (repeatable). Default: every topic.")
@click.option("--export", "export_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Verify this export instead (its files against the manifest, their chains); with --log, "
                   "--home or --kafka also against that log, record by record.")
@_log_options
def verify(log_uri: str | None, topics: tuple[str, ...], export_dir: str | None, home: str | None, kafka: str | None) -> None:
    """Read every record of every topic and report each one that cannot be trusted.

    On the embedded log each record's checksum is checked, its headers decoded, and the
    offsets of each partition checked for holes; records appended before checksums
    existed are counted as unchecked (not bad). On Kafka the client checks each batch's
    CRC-32C as it reads. Exits 1 when any record is bad, listing each with its position
    (topic[partition]@offset) and what is wrong; consumers dead-letter such records and go on.

    The tamper-evidence chain is recomputed too: against the digest each embedded record
    carries, and against the seals of 'eventflow log seal' (Kafka). The first position
    where a partition's chain breaks is reported, and exits 1.
    """
    from eventflow.log.chain import ChainCheck
    from eventflow.log.record_cli import open_source
    from eventflow.log.seals import read_seals

    if export_dir is not None:
        _verify_export(export_dir, log_uri, home, kafka)
        return
    log = open_source(log_uri, home, kafka)
    try:
        existing = log.topics()
        unknown = [t for t in topics if t not in existing]
        if unknown:
            raise click.UsageError(f"no such topic on the log: {', '.join(unknown)}")
        topics = list(topics) or existing
        ends = {TopicPartition(topic, p): end for topic in topics for p, end in log.end_offsets(topic).items()}
        seals = read_seals(log)
        checks = {tp: ChainCheck(tp.topic, tp.partition, seals.get(tp)) for tp in ends}
        bad: list[tuple[str, str]] = []
        read = 0
        started = time.perf_counter()
        if topics:
            with log.consumer(topics) as consumer, click.progressbar(
                length=sum(ends.values()), label="verifying", show_pos=True, file=sys.stderr
            ) as bar:
                while any(consumer.position(tp) < end for tp, end in ends.items() if tp in consumer.assignment()):
                    try:
                        records = consumer.poll(timeout=0.5, max_records=10_000)
                    except LogError as error:  # Kafka: a batch failed its CRC, nothing past it reads
                        bad.append(("(from the current positions)", str(error)))
                        break
                    for record in records:
                        if ends.get(record.tp, 0) <= record.offset:
                            continue  # appended since we started
                        read += 1
                        if record.error is not None:
                            bad.append((f"{record.topic}[{record.partition}]@{record.offset}", record.error))
                        checks[record.tp].feed(record)
                    bar.update(len(records))
        elapsed = time.perf_counter() - started
        # Only the embedded log keeps its own checksums (Kafka's are per batch, always there).
        unchecked = log.unchecked() if hasattr(log, "unchecked") else None
    finally:
        log.close()
    summary = f"read {read:,} records in {len(topics)} topic{'s' if len(topics) != 1 else ''} in {elapsed:.1f} s"
    if unchecked:
        summary += f"; {unchecked:,} unchecked (appended before records carried a checksum)"
    click.echo(summary)
    breaks = [check.finish() for check in checks.values()]
    click.echo(_chain_summary(list(checks.values())))
    _report(bad, [b for b in breaks if b is not None])


def _chain_summary(checks: list) -> str:  # type: ignore[type-arg]
    chained = sum(c.checked for c in checks)
    sealed = sum(c.sealed for c in checks)
    unchained = sum(c.unchained for c in checks)
    parts = [f"chain: {chained:,} record digests checked", f"{sealed:,} seals matched"]
    if unchained:
        parts.append(f"{unchained:,} records carry no digest (appended before the chain, or on Kafka: "
                     f"covered only up to a seal, see 'eventflow log seal')")
    return ", ".join(parts)


def _verify_export(directory: str, log_uri: str | None, home: str | None, kafka: str | None) -> None:
    from eventflow.log.export import verify_export
    from eventflow.log.record_cli import open_source

    log = open_source(log_uri, home, kafka) if (log_uri or home or kafka) else None
    try:
        read, problems = verify_export(directory, log)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    finally:
        if log is not None:
            log.close()
    against = " against the log" if log is not None else ""
    click.echo(f"read {read:,} exported records{against}")
    if not problems:
        click.echo("the export is intact" + (" and matches the log" if log is not None else ""))
        return
    click.echo(f"{len(problems)} problem{'s' if len(problems) != 1 else ''}:")
    for problem in problems:
        click.echo(f"  {problem}")
    sys.exit(1)


def _report(bad: list[tuple[str, str]], breaks: list | None = None) -> None:  # type: ignore[type-arg]
    if not bad:
        click.echo("no bad record")
    else:
        click.echo(f"{len(bad)} bad record{'s' if len(bad) != 1 else ''}:")
        for where, reason in bad:
            click.echo(f"  {where}: {reason}")
        click.echo("Consumers dead-letter these and go on ('eventflow log dead-letters' lists what they skipped).", err=True)
    if breaks:
        click.echo(f"the chain breaks in {len(breaks)} partition{'s' if len(breaks) != 1 else ''} (first position in each):")
        for found in breaks:
            click.echo(f"  {found}")
    else:
        click.echo("no chain break")
    if bad or breaks:
        sys.exit(1)


@log_group.command("dead-letters")
@_log_options
def dead_letters(home: str | None, kafka: str | None) -> None:
    """List the records consumers skipped: where each was, why, and who skipped it."""
    from eventflow.consumers.dead_letters import read_dead_letters

    log = _open(home, kafka)
    try:
        letters = read_dead_letters(log)
    finally:
        log.close()
    for letter in letters:
        click.echo(f"{letter.topic}[{letter.partition}]@{letter.offset}: {letter.reason} (skipped by {', '.join(letter.consumers)})")
    click.echo(f"{len(letters)} dead letter{'s' if len(letters) != 1 else ''}")
