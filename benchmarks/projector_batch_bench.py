"""The projector's cost per batch as a sync ``log_metric`` makes it: one one-point
``run.metrics_logged`` event per batch, SQLite and PostgreSQL.

    python benchmarks/projector_batch_bench.py                 # starts a throw-away PostgreSQL itself
    python benchmarks/projector_batch_bench.py --events 1000

Prints wall and process CPU time per batch and the statements each sends (BEGIN on
SQLite counted, psycopg's BEGIN and COMMIT not).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import ExitStack

from sqlalchemy import event

from eventflow import commands
from eventflow.consumers.base import ConsumerLoop
from eventflow.consumers.projector import Projector
from eventflow.log import open_log
from eventflow.log.event_log import EventLog
from eventflow.views.db import open_views

WARM = 20


def per_batch(url: str, events: int) -> tuple[float, float, float]:
    """(wall ms, CPU ms, statements) per batch, after a warm-up."""
    engine = open_views(url)
    sent = [0]
    event.listen(engine, "before_cursor_execute", lambda *_: sent.__setitem__(0, sent[0] + 1))
    run = commands.new_run_id()
    with tempfile.TemporaryDirectory() as directory, open_log(directory) as log:
        appended = EventLog(log)
        appended.append(commands.create_run(run, "0", run_name="bench", user_id="bench", artifact_uri="file:///tmp"))
        for step in range(WARM + events):
            appended.append(commands.log_metrics(run, commands.metric_columns([("loss", step * 0.1, 1_700_000_000_000 + step, step)])))
            if step == WARM:
                loop = ConsumerLoop(log, Projector(engine, "bench"), join_group=False, max_batch=1)
                loop.catch_up(timeout=300)
                sent[0] = 0
                cpu, wall = time.process_time(), time.perf_counter()
        loop.catch_up(timeout=300)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        loop.close()
    engine.dispose()
    batches = events - 1
    return wall / batches * 1e3, cpu / batches * 1e3, sent[0] / batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--postgres", metavar="URL", help="an existing, empty database (default: a throw-away server)")
    args = parser.parse_args()
    with ExitStack() as stack, tempfile.TemporaryDirectory() as directory:
        postgres = args.postgres
        if postgres is None:
            from eventflow.dev.postgres import LocalPostgres

            postgres = stack.enter_context(LocalPostgres(durable=True, quiet=True)).url
        for name, url in (("SQLite", f"sqlite:///{directory}/views.db"), ("PostgreSQL", postgres)):
            wall, cpu, statements = per_batch(url, args.events)
            print(f"{name:<11} {wall:6.2f} ms wall, {cpu:6.2f} ms CPU, {statements:4.1f} statements per batch", flush=True)


if __name__ == "__main__":
    main()
