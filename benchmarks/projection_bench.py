"""Projection speed: metric points/s from the log into the SQL views, SQLite and PostgreSQL.

    python benchmarks/projection_bench.py                 # starts a throw-away PostgreSQL itself
    python benchmarks/projection_bench.py --postgres URL  # an existing database (must be empty)

200 ``run.metrics_logged`` events of 1,000 points each are appended to an embedded log,
then one projector replays them into fresh views: the clock runs from the first poll
to the last commit (rows, latest values and offsets, in one transaction per batch).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import ExitStack

from eventflow import commands
from eventflow.consumers.base import ConsumerLoop
from eventflow.consumers.projector import Projector
from eventflow.log import open_log
from eventflow.log.event_log import EventLog
from eventflow.views.db import open_views

EVENTS = 200
POINTS = 1000


def fill(log_dir: str) -> int:
    with open_log(log_dir) as log:
        events = EventLog(log)
        run = commands.new_run_id()
        events.append(commands.create_run(run, "0", run_name="bench", user_id="bench", artifact_uri="file:///tmp"))
        for e in range(EVENTS):
            columns = commands.metric_columns((f"m{p % 10}", p * 0.5, 1_700_000_000_000 + e, e * POINTS + p) for p in range(POINTS))
            events.append(commands.log_metrics(run, columns))
    return EVENTS * POINTS


def project(log_dir: str, url: str) -> float:
    engine = open_views(url)
    with open_log(log_dir) as log:
        loop = ConsumerLoop(log, Projector(engine), join_group=False)
        started = time.perf_counter()
        loop.catch_up(timeout=600)
        elapsed = time.perf_counter() - started
        loop.close()
    engine.dispose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", help="URL of an empty PostgreSQL database (default: start one)")
    args = parser.parse_args()
    with ExitStack() as stack:
        home = stack.enter_context(tempfile.TemporaryDirectory())
        points = fill(f"{home}/log")
        postgres = args.postgres
        if postgres is None:
            from eventflow.dev.postgres import LocalPostgres

            # durable: fsync on, as a production server runs (the test fixtures turn it off)
            postgres = stack.enter_context(LocalPostgres(durable=True)).url
        for name, url in (("SQLite (WAL, synchronous=FULL)", f"sqlite:///{home}/views.db"), ("PostgreSQL", postgres)):
            seconds = project(f"{home}/log", url)
            print(f"{name:<34} {points:,} points in {seconds:6.2f} s = {points / seconds:>10,.0f} points/s")


if __name__ == "__main__":
    main()
