"""A full export and import of a large log (issue 15), events/s.

    python benchmarks/log_export_bench.py                       # 1,000,000 events, embedded → embedded
    python benchmarks/log_export_bench.py --events 200000       # fewer, on a slow machine
    python benchmarks/log_export_bench.py --kafka HOST:PORT     # also import into (an empty) Kafka

The source is an embedded log of real events — per run: run.created, params, and
run.metrics_logged events of 10 points — filled with synchronous=NORMAL (setting up is
not what is measured). Measured, each line printed as it finishes:

- export: every record into Avro OCF files (deflate), each event decoded with its writer
  schema into the file's union, plus the manifest's SHA-256 of each file;
- import into a new embedded log (synchronous=FULL): files checked against the manifest,
  the target scanned for event ids, every record appended;
- import again: the idempotent pass (everything skipped);
- verify: the target's chain recomputed.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import uuid

from eventflow import commands
from eventflow.log import open_log
from eventflow.log.base import Message
from eventflow.log.embedded import EmbeddedLog
from eventflow.log.event_log import to_message
from eventflow.log.export import export_log
from eventflow.log.replay import import_export
from eventflow.log.seals import verify


def _fresh(message: Message) -> Message:
    """The same event with a new event id: the id is the body's first field (a 36-byte
    string after the 10-byte header and its 1-byte length), so it is replaced in place —
    far cheaper than encoding a million events, and as valid."""
    event_id = str(uuid.uuid4()).encode()
    value = message.value[:11] + event_id + message.value[47:]
    return Message(message.topic, message.key, value, (("event_type", message.headers[0][1]), ("event_id", event_id)))


def fill(log: EmbeddedLog, events: int, batch: int = 5000) -> None:
    now = int(time.time() * 1000)
    pending: list[Message] = []
    written = step = 0
    metrics = None
    while written < events:
        if step % 100 == 0:
            run_id = uuid.uuid4().hex
            pending.append(to_message(commands.create_run(run_id, "0", run_name="bench", user_id="b", artifact_uri="file:///a")))
            pending.append(to_message(commands.log_params(run_id, {"lr": 0.01, "depth": 6})))
            metrics = to_message(commands.log_metrics(run_id, commands.metric_columns(
                (f"m{i}", 0.5 * i + step, now, step) for i in range(10))))
            written += 2
        pending.append(_fresh(metrics))
        written += 1
        step += 1
        if len(pending) >= batch:
            log.append_batch(pending)
            pending = []
    if pending:
        log.append_batch(pending)


def line(label: str, count: int, seconds: float) -> None:
    print(f"  {label:<58} {count / seconds:11,.0f} events/s  ({count:,} in {seconds:.1f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--kafka", help="bootstrap servers of an empty broker to import into as well")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
          f"Python {platform.python_version()}", flush=True)
    with tempfile.TemporaryDirectory() as home:
        source = EmbeddedLog(f"{home}/source", sync="NORMAL")
        started = time.perf_counter()
        fill(source, args.events)
        count = sum(sum(source.end_offsets(t).values()) for t in source.topics())
        print(f"source: {count:,} events on the embedded log (filled in {time.perf_counter() - started:.0f} s)", flush=True)

        started = time.perf_counter()
        manifest = export_log(source, f"{home}/export")
        line("export to Avro OCF + manifest", manifest["records"], time.perf_counter() - started)
        size = sum(f["bytes"] for f in manifest["files"])
        print(f"  (export: {len(manifest['files'])} files, {size / 1e6:,.0f} MB, {size / count:.0f} B/event)", flush=True)
        source.close()

        target = EmbeddedLog(f"{home}/target")
        started = time.perf_counter()
        report = import_export(f"{home}/export", target)
        line("import into a new embedded log (synchronous=FULL)", report.appended, time.perf_counter() - started)
        started = time.perf_counter()
        again = import_export(f"{home}/export", target)
        assert again.appended == 0
        line("import again: nothing to add (idempotent pass)", again.skipped, time.perf_counter() - started)
        started = time.perf_counter()
        checks = verify(target)
        assert all(c.broken is None for c in checks.values())
        line("verify the target's chain", sum(c.checked for c in checks.values()), time.perf_counter() - started)
        target.close()

        if args.kafka:
            kafka = open_log(f"kafka://{args.kafka}")
            started = time.perf_counter()
            report = import_export(f"{home}/export", kafka)
            line(f"import into Kafka ({args.kafka}, acks=all)", report.appended, time.perf_counter() - started)
            kafka.close()


if __name__ == "__main__":
    main()
