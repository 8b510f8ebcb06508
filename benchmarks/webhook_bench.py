"""Webhook delivery: deliveries/s to a local receiver, and the delay from event to delivery.

    python benchmarks/webhook_bench.py                      # embedded log, 3,000 + 1,000 events
    python benchmarks/webhook_bench.py --kafka HOST:PORT    # the same on Kafka (SQLite views)

A real ``eventflow server`` (projector + webhook dispatcher, default 16 sending workers)
and a receiver (uvicorn, its own process, answering 200 at once and noting when each
``webhook-id`` arrived). Events (``run.tags_set`` over 300 runs) are appended straight
to the log, so the figures are the dispatcher's: read, match and record each delivery
with its offsets, claim it, sign it, POST it, record the attempt.

1. Throughput: a burst of ``--events`` events; deliveries/s from the first append to the
   last arrival.
2. Delay: ``--paced`` events at ``--rate`` per second; for each, arrival time minus the
   event's time (p50, p99). Both ends run on this machine's clock.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

sys.path.insert(0, os.path.dirname(__file__))

from servers import eventflow_server, free_port  # noqa: E402


def receiver_app():
    """The receiver: notes (id, event time, arrival ms); GET /stats returns them."""
    seen: list[tuple[str, int, int]] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] == "GET":
            answer = json.dumps(seen).encode()
        else:
            arrived = time.time_ns() // 1_000_000
            headers = dict(scope["headers"])
            seen.append((headers[b"webhook-id"].decode(), json.loads(body)["time"], arrived))
            answer = b"ok"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})

    return app


def split(home: str, kafka: str | None, ids: set[str]) -> tuple[list[int], list[int]]:
    """From the server's tables: event -> delivery recorded, and recorded -> first attempt."""
    from sqlalchemy import create_engine, func, select

    from eventflow.webhooks.tables import attempts, deliveries

    engine = create_engine(f"sqlite:///{os.path.join(home, 'kafka-views.db' if kafka else 'views.db')}")
    first = select(attempts.c.delivery_id, func.min(attempts.c.time).label("sent")).group_by(attempts.c.delivery_id).subquery()
    query = select(deliveries.c.event_id, deliveries.c.event_time, deliveries.c.created_time, first.c.sent).join(
        first, first.c.delivery_id == deliveries.c.delivery_id
    )
    with engine.connect() as c:
        rows = [r for r in c.execute(query) if r.event_id in ids]
    engine.dispose()
    return [r.created_time - r.event_time for r in rows], [r.sent - r.created_time for r in rows]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000, help="events in the burst")
    parser.add_argument("--paced", type=int, default=1000, help="events sent at --rate for the delay figures")
    parser.add_argument("--rate", type=float, default=100.0, help="events per second in the paced phase")
    parser.add_argument("--workers", type=int, default=32, help="sending workers of the dispatcher")
    parser.add_argument("--kafka", default=None, metavar="HOST:PORT")
    parser.add_argument("--receiver", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        import uvicorn

        uvicorn.run(receiver_app(), host="127.0.0.1", port=args.receiver, log_level="warning", access_log=False)
        return

    from eventflow import commands
    from eventflow.log import open_log
    from eventflow.log.event_log import EventLog
    from eventflow.sdk.client import Client

    os.environ.update({
        "EVENTFLOW_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
        "EVENTFLOW_WEBHOOK_WORKERS": str(args.workers),
        "EVENTFLOW_WEBHOOK_GROUP": f"webhooks-bench-{os.getpid()}",
    })
    port = free_port()
    receiver = subprocess.Popen([sys.executable, __file__, "--receiver", str(port)])
    home = tempfile.mkdtemp(prefix="eventflow-webhook-bench-")
    options = ["--kafka", args.kafka] if args.kafka else []
    try:
        stats_url = f"http://127.0.0.1:{port}/stats"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(stats_url, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with eventflow_server(home, *options) as url:
            Client(url).webhooks.create(f"http://127.0.0.1:{port}/hook", ["run.tags_set"])
            log = open_log(f"kafka://{args.kafka}" if args.kafka else os.path.join(home, "log"))
            events = EventLog(log)
            runs = [commands.new_run_id() for _ in range(300)]

            def arrived() -> list[tuple[str, int, int]]:
                return [tuple(x) for x in httpx.get(stats_url, timeout=30).json()]

            def wait_for(count: int) -> list[tuple[str, int, int]]:
                deadline = time.monotonic() + 600
                while True:
                    got = arrived()
                    if len({g[0] for g in got}) >= count:
                        return got
                    if time.monotonic() > deadline:
                        raise SystemExit(f"only {len(got)} of {count} deliveries arrived")
                    time.sleep(0.2)

            # 1. burst
            burst = [commands.set_tags(runs[i % 300], {"i": str(i)}) for i in range(args.events)]
            started = time.time()
            for at in range(0, len(burst), 500):
                events.append_many(burst[at : at + 500])
            got = wait_for(args.events)
            last = max(g[2] for g in got) / 1000
            throughput = args.events / (last - started)
            burst_delays = [g[2] - g[1] for g in got]

            # 2. paced
            paced_ids = set()
            interval = 1.0 / args.rate
            next_at = time.monotonic()
            for i in range(args.paced):
                event = commands.set_tags(runs[i % 300], {"p": str(i)})
                paced_ids.add(event.event_id)
                events.append(event)
                next_at += interval
                pause = next_at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            got = wait_for(args.events + args.paced)
            delays = [g[2] - g[1] for g in got if g[0] in paced_ids]
            log.close()
            recording, sending = split(home, args.kafka, paced_ids)
    finally:
        receiver.terminate()
        receiver.wait()
    backend = f"Kafka {args.kafka} + SQLite views" if args.kafka else "embedded log + SQLite views"
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}")
    print(f"backend: {backend}; {args.workers} sending workers; receiver: uvicorn on 127.0.0.1")
    print(f"burst:  {args.events:,} events -> {throughput:,.0f} deliveries/s (event-to-delivery p50 {statistics.median(burst_delays):,.0f} ms, p99 {percentile(burst_delays, 99):,.0f} ms)")
    print(f"paced:  {args.paced:,} events at {args.rate:g}/s -> event-to-delivery p50 {statistics.median(delays):,.0f} ms, p99 {percentile(delays, 99):,.0f} ms")
    print(f"        of which event -> delivery recorded p50 {statistics.median(recording):,.0f} ms, p99 {percentile(recording, 99):,.0f} ms; "
          f"recorded -> attempt p50 {statistics.median(sending):,.0f} ms, p99 {percentile(sending, 99):,.0f} ms")


if __name__ == "__main__":
    main()
