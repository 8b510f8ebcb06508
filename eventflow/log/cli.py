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
@_log_options
def verify(home: str | None, kafka: str | None) -> None:
    """Read every record of every topic and report each one that cannot be trusted.

    On the embedded log each record's checksum is checked, its headers decoded, and the
    offsets of each partition checked for holes; records appended before checksums
    existed are counted as unchecked (not bad). On Kafka the client checks each batch's
    CRC-32C as it reads. Exits 1 when any record is bad, listing each with its position
    (topic[partition]@offset) and what is wrong; consumers dead-letter such records and go on.
    """
    log = _open(home, kafka)
    try:
        topics = log.topics()
        ends = {TopicPartition(topic, p): end for topic in topics for p, end in log.end_offsets(topic).items()}
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
    _report(bad)


def _report(bad: list[tuple[str, str]]) -> None:
    if not bad:
        click.echo("no bad record")
        return
    click.echo(f"{len(bad)} bad record{'s' if len(bad) != 1 else ''}:")
    for where, reason in bad:
        click.echo(f"  {where}: {reason}")
    click.echo("Consumers dead-letter these and go on ('eventflow log dead-letters' lists what they skipped).", err=True)
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
