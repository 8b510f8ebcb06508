"""The event backbone's speed: codec µs per event, and appends/consumption per log.

    python benchmarks/log_bench.py                     # embedded log, and a local Kafka broker it starts
    python benchmarks/log_bench.py --kafka HOST:PORT   # an existing broker
    python benchmarks/log_bench.py --no-kafka          # embedded only

Every appended event is a real ``run.metrics_logged`` event (10 points) going through
the codec; "durable" means ``append`` returned: fsynced for the embedded log
(synchronous=FULL), acknowledged by all in-sync replicas for Kafka (acks=all).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import timeit
import uuid
from contextlib import ExitStack

from eventflow import commands
from eventflow.codec import decode, encode
from eventflow.events import Event
from eventflow.log import Log, open_log
from eventflow.log.event_log import EventLog, to_message


def metrics_event(run_id: str, step: int, points: int = 10) -> Event:
    now = int(time.time() * 1000)
    return commands.log_metrics(run_id, commands.metric_columns((f"m{i}", 0.5 * i + step, now, step) for i in range(points)))


def run_created() -> Event:
    return Event(
        "run.created",
        {
            "run_id": uuid.uuid4().hex,
            "experiment_id": "0",
            "run_name": "bench",
            "user_id": "bench",
            "start_time": int(time.time() * 1000),
            "parent_run_id": None,
            "tags": [{"key": "mlflow.source.name", "value": "bench.py"}],
            "artifact_uri": "file:///tmp/artifacts",
        },
    )


def per_call_us(function, number: int) -> float:
    runs = timeit.repeat(function, number=number, repeat=5)
    return min(runs) / number * 1e6


def bench_codec() -> list[tuple[str, float]]:
    rows = []
    for label, event in (
        ("run.created", run_created()),
        ("run.metrics_logged, 10 points", metrics_event("r", 1, 10)),
        ("run.metrics_logged, 1000 points", metrics_event("r", 1, 1000)),
    ):
        data = encode(event)
        number = 200 if "1000" in label else 5000
        rows.append((f"encode {label} ({len(data)} B)", per_call_us(lambda: encode(event), number)))
        rows.append((f"decode {label}", per_call_us(lambda: decode(data), number)))
    return rows


def bench_chain() -> list[tuple[str, float]]:
    """The tamper-evidence chain's share of an embedded append: one SHA-256 link per record."""
    from eventflow.log.chain import GENESIS, link

    message = to_message(metrics_event("r", 1, 10))
    return [(f"chain digest of one record ({len(message.value)} B value, SHA-256)",
             per_call_us(lambda: link(GENESIS, message.topic, 0, 12345, 1_700_000_000_000, message.key, message.value, message.headers), 20000))]


def bench_log(log: Log, singles: int, batches: int, batch_size: int) -> dict[str, float]:
    events = EventLog(log)
    run_id = uuid.uuid4().hex
    # Warm up: topic creation and connections are not what is measured.
    events.append(metrics_event(run_id, -1))
    started = time.perf_counter()
    for step in range(singles):
        events.append(metrics_event(run_id, step))
    single_rate = singles / (time.perf_counter() - started)

    prepared = [[metrics_event(run_id, b * batch_size + i) for i in range(batch_size)] for b in range(batches)]
    started = time.perf_counter()
    for batch in prepared:
        events.append_many(batch)
    batch_rate = batches * batch_size / (time.perf_counter() - started)

    topic = to_message(metrics_event(run_id, 0)).topic
    total = sum(log.end_offsets(topic).values())
    read = decoded = 0
    with log.consumer([topic]) as consumer:
        started = time.perf_counter()
        while read < total:
            records = consumer.poll(timeout=2.0, max_records=5000)
            if not records:
                break
            read += len(records)
            for record in records:
                decode(record.value)
                decoded += 1
        consume_rate = read / (time.perf_counter() - started)
    return {
        "appended one at a time, durable (events/s)": single_rate,
        f"appended in batches of {batch_size}, durable (events/s)": batch_rate,
        "consumed and decoded (events/s)": consume_rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kafka", help="bootstrap servers of an existing broker")
    parser.add_argument("--no-kafka", action="store_true", help="measure the embedded log only")
    parser.add_argument("--singles", type=int, default=2000, help="events appended one at a time")
    parser.add_argument("--batches", type=int, default=40, help="batches appended")
    parser.add_argument("--batch-size", type=int, default=500, help="events per batch")
    args = parser.parse_args()

    print(f"machine: {platform.machine()}, {platform.system()} {platform.release()}, Python {platform.python_version()}")
    print("\ncodec (best of 5)")
    for label, us in bench_codec() + bench_chain():
        print(f"  {label:<52} {us:9.1f} µs")

    with ExitStack() as stack:
        targets: list[tuple[str, str]] = []
        home = stack.enter_context(tempfile.TemporaryDirectory())
        targets.append(("embedded (SQLite, synchronous=FULL)", f"{home}/full"))
        if not args.no_kafka:
            bootstrap = args.kafka
            if bootstrap is None:
                from eventflow.dev.kafka import LocalKafka

                bootstrap = stack.enter_context(LocalKafka(data_dir=f"{home}/kafka")).bootstrap
            targets.append((f"Kafka ({bootstrap}, acks=all, idempotent)", f"kafka://{bootstrap}"))
        for name, uri in targets:
            with open_log(uri) as log:
                figures = bench_log(log, args.singles, args.batches, args.batch_size)
            print(f"\n{name}")
            for label, rate in figures.items():
                print(f"  {label:<52} {rate:11,.0f}")


if __name__ == "__main__":
    main()
