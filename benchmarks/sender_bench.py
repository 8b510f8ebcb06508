"""What the SDK's background sender costs per metric point, in CPU time, and what the bulk
column encoder saves against fastavro's item-by-item writer.

    python benchmarks/sender_bench.py

The sender shares the GIL with the training loop: each microsecond it spends per point is
a microsecond a ``log_metric`` call may wait. Measured in the thread's own CPU time (best
of five rounds of 400,000 points: 10 keys, a new step every 10 points, a new millisecond
every 20), so that other load on the machine moves the figures less than wall time would.
"""

from __future__ import annotations

import platform
import time

from eventflow.codec import binary, encode
from eventflow.sdk.sender import Sender

POINTS = 400_000
ROUNDS = 5


def queue_points(sender: Sender, first_step: int) -> None:
    keys = [f"metric_{k}" for k in range(10)]
    for step in range(first_step, first_step + POINTS // 10):
        for key in keys:
            sender._queue.append(("a" * 32, key, 0.5, 1_764_000_000_000 + step // 2, step))


def main() -> None:
    print(f"machine: {platform.machine()}, Python {platform.python_version()}; {POINTS:,} points, best of {ROUNDS}")
    sender = Sender(lambda events: None)
    sender._handover.acquire()  # its thread stays out: this thread drains
    drain = bulk = itemwise = float("inf")
    for round_ in range(ROUNDS):
        queue_points(sender, 100_000 + round_ * POINTS)
        started = time.thread_time()
        events = []
        while sender._queue:
            events += sender._drain()[0]
        drain = min(drain, time.thread_time() - started)
        started = time.thread_time()
        for event in events:
            encode(event)
        bulk = min(bulk, time.thread_time() - started)
        columns, binary._COLUMNS = binary._COLUMNS, set()  # fastavro alone, as before codec/columns.py
        started = time.thread_time()
        for event in events:
            encode(event)
        itemwise = min(itemwise, time.thread_time() - started)
        binary._COLUMNS = columns
    per = 1e6 / POINTS
    print(f"  drain the queue into events        {drain * per:6.3f} µs/point")
    print(f"  encode, bulk columns               {bulk * per:6.3f} µs/point")
    print(f"  encode, fastavro item by item      {itemwise * per:6.3f} µs/point   (bulk is {itemwise / bulk:.1f}× faster)")
    print(f"  sender total (drain + bulk encode) {(drain + bulk) * per:6.3f} µs/point")


if __name__ == "__main__":
    main()
