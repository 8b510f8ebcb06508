"""The live dashboard: how soon a logged point is in the browser's chart, and how much the
server pushes to many clients.

    python benchmarks/dashboard_bench.py            # embedded default
    python benchmarks/dashboard_bench.py --kafka    # and on Kafka (a local broker is started)
    python benchmarks/dashboard_bench.py --auth     # also with auth on: the clients are a user
                                                    # with READ on the experiment only (push
                                                    # throughput; every event is checked)

1. Latency: a training process calls ``eventflow.log_metric`` 1,000 times (every 10 ms,
   the value being the wall-clock time of the call); headless Chromium shows the run page,
   and a MutationObserver notes when each point is in the chart's Plotly data. p50/p99.
2. Push throughput: 20 websocket clients subscribe to one run while a training process
   logs 50,000 points/s (``log_metrics`` of 10 keys per step) for 10 s; how many points
   per second the server delivers to the clients in total, and how far behind they end.

The training process writes to the log directly (the embedded log file, or Kafka), as
training code does on the embedded default; the server tails it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

from servers import eventflow_server

LATENCY_POINTS = 1000
CLIENTS = 20
RATE = 50_000
SECONDS = 10
KEYS = 10

TRAINING = textwrap.dedent(
    """
    import sys, time
    import eventflow

    mode, points, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    with eventflow.start_run(run_name=mode) as run:
        eventflow.flush()
        print(run.run_id, flush=True)
        sys.stdin.readline()  # go
        started = time.perf_counter()
        if mode == "latency":
            for step in range(points):
                eventflow.log_metric("probe", time.time() * 1000, step=step)
                time.sleep(max(0.0, started + (step + 1) / rate - time.perf_counter()))
        else:
            keys = int(sys.argv[4])
            for step in range(points // keys):
                eventflow.log_metrics({f"m{k}": step * 0.5 + k for k in range(keys)}, step=step)
                ahead = started + (step + 1) * keys / rate - time.perf_counter()
                if ahead > 0.001:
                    time.sleep(ahead)
        eventflow.flush()
        print(time.perf_counter() - started, flush=True)
    """
)

OBSERVER = """
() => {
  window.__latency = [];
  let seen = 0;
  new MutationObserver(() => {
    const gd = document.querySelector('[data-metric="probe"]');
    if (!gd || !gd.data || !gd.data.length) return;
    const now = performance.timeOrigin + performance.now();
    const y = gd.data[0].y;
    for (let i = seen; i < y.length; i++) window.__latency.push(now - y[i]);
    seen = y.length;
  }).observe(document.getElementById("charts"), { attributes: true, subtree: true, attributeFilter: ["data-points"] });
}
"""


def training(directory: str, tracking_uri: str, env: dict[str, str], *args: object) -> subprocess.Popen:
    script = os.path.join(directory, "train.py")
    with open(script, "w") as out:
        out.write(TRAINING)
    return subprocess.Popen(
        [sys.executable, script, *map(str, args)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, **env, "EVENTFLOW_TRACKING_URI": tracking_uri, "EVENTFLOW_CAPTURE_ENV": "false"},
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def latency(url: str, directory: str, tracking_uri: str, env: dict[str, str]) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    executable = os.environ.get("EVENTFLOW_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    process = training(directory, tracking_uri, env, "latency", LATENCY_POINTS, 100)
    run_id = process.stdout.readline().strip()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page()
        page.goto(f"{url}/#/runs/{run_id}")
        page.wait_for_selector('#status [data-status="RUNNING"]')
        page.evaluate(OBSERVER)
        process.stdin.write("go\n")
        process.stdin.flush()
        page.wait_for_function(f"() => window.__latency.length >= {LATENCY_POINTS}", timeout=120_000)
        values = page.evaluate("window.__latency")
        browser.close()
    process.wait(timeout=60)
    return {"p50 (ms)": statistics.median(values), "p99 (ms)": percentile(values, 0.99), "max (ms)": max(values), "points": len(values)}


async def clients(url: str, run_id: str, total: int, started: asyncio.Event, done_logging: list[float],
                  headers: dict[str, str] | None = None) -> dict[str, float]:
    from websockets.asyncio.client import connect

    received = [0] * CLIENTS
    delivered = [0] * CLIENTS  # points sent to the client, snapshots after a reset included
    frames = [0] * CLIENTS
    resets = [0] * CLIENTS
    finished_at = [0.0] * CLIENTS

    async def one(i: int, ready: asyncio.Event) -> None:
        async with connect(url.replace("http://", "ws://") + "/api/2.0/eventflow/live", max_size=None, additional_headers=headers) as ws:
            await ws.send(json.dumps({"op": "subscribe", "sub": "r", "kind": "runs", "run_ids": [run_id]}))
            while True:
                message = json.loads(await ws.recv())
                if message["type"] == "snapshot":
                    ready.set()
                    # After a reset the snapshot holds every point so far.
                    received[i] = sum(len(s["step"]) for run in message["data"]["runs"] for s in run["history"].values())
                    delivered[i] += received[i]
                elif message["type"] == "events":
                    frames[i] += 1
                    count = sum(len(s["step"]) for chunk in message["points"] for s in chunk["series"].values())
                    received[i] += count
                    delivered[i] += count
                elif message["type"] == "reset":
                    resets[i] += 1
                if received[i] >= total:
                    finished_at[i] = time.perf_counter()
                    return

    readies = [asyncio.Event() for _ in range(CLIENTS)]
    tasks = [asyncio.create_task(one(i, readies[i])) for i in range(CLIENTS)]
    for ready in readies:
        await ready.wait()
    started.set()
    begin = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=600)
    end = max(finished_at)
    return {
        "points delivered, all clients (points/s)": sum(delivered) / (end - begin),
        "per client (points/s)": sum(delivered) / (end - begin) / CLIENTS,
        "frames per client per second": sum(frames) / (end - begin) / CLIENTS,
        "slow-client resets (fresh snapshots), all clients": sum(resets),
        "training logged (points/s)": total / done_logging[0] if done_logging else 0.0,
        "last client done after the training (s)": end - begin - (done_logging[0] if done_logging else 0.0),
    }


def throughput(url: str, directory: str, tracking_uri: str, env: dict[str, str], headers: dict[str, str] | None = None) -> dict[str, float]:
    total = RATE * SECONDS
    process = training(directory, tracking_uri, env, "throughput", total, RATE, KEYS)
    run_id = process.stdout.readline().strip()
    done_logging: list[float] = []

    async def main() -> dict[str, float]:
        started = asyncio.Event()
        task = asyncio.create_task(clients(url, run_id, total, started, done_logging, headers))
        await started.wait()
        process.stdin.write("go\n")
        process.stdin.flush()
        done_logging.append(float(await asyncio.to_thread(process.stdout.readline)))
        return await task

    result = asyncio.run(main())
    process.wait(timeout=60)
    return result


def bench(name: str, home: str, options: list[str], tracking_uri: str, env: dict[str, str]) -> None:
    print(f"\n{name}")
    with eventflow_server(home, *options) as url:
        for label, value in latency(url, home, tracking_uri, env).items():
            print(f"  log_metric → browser chart, {label:<44} {value:>10,.1f}")
        for label, value in throughput(url, home, tracking_uri, env).items():
            print(f"  {CLIENTS} clients, {RATE:,} points/s: {label:<40} {value:>12,.1f}")


AUTH_ENV = {"EVENTFLOW_AUTH": "true", "EVENTFLOW_ADMIN_USERNAME": "admin", "EVENTFLOW_ADMIN_PASSWORD": "bench-admin",
            "EVENTFLOW_AUTH_DEFAULT_PERMISSION": "NO_PERMISSIONS"}


def basic(username: str, password: str) -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def bench_auth(name: str, home: str, tracking_uri: str, env: dict[str, str]) -> None:
    """Push throughput with auth on, to a user who may READ the Default experiment only."""
    import httpx

    print(f"\n{name}")
    saved = {key: os.environ.get(key) for key in AUTH_ENV}
    os.environ.update(AUTH_ENV)
    try:
        with eventflow_server(home) as url:
            admin = basic("admin", "bench-admin")
            for path, body in (("users/create", {"username": "viewer", "password": "bench-viewer"}),
                               ("experiments/permissions/create", {"experiment_id": "0", "username": "viewer", "permission": "READ"})):
                httpx.post(f"{url}/api/2.0/mlflow/{path}", json=body, headers=admin, timeout=30).raise_for_status()
            for label, value in throughput(url, home, tracking_uri, env, basic("viewer", "bench-viewer")).items():
                print(f"  {CLIENTS} clients, {RATE:,} points/s: {label:<40} {value:>12,.1f}")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kafka", action="store_true", help="also run on Kafka (starts a local broker)")
    parser.add_argument("--auth", action="store_true", help="also with auth on (push throughput to a non-admin user)")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as directory:
        home = os.path.join(directory, "embedded")
        bench("embedded default (training → embedded log file → server → browser)", home, [], home, {"EVENTFLOW_HOME": home})
        if args.auth:
            home = os.path.join(directory, "embedded-auth")
            bench_auth("embedded default, auth on (the clients: a user with READ on the experiment)", home, home, {"EVENTFLOW_HOME": home})
        if args.kafka:
            from eventflow.dev.kafka import LocalKafka

            with contextlib.ExitStack() as stack:
                bootstrap = stack.enter_context(LocalKafka(data_dir=os.path.join(directory, "kafka"))).bootstrap
                home = os.path.join(directory, "kafka-home")
                bench("Kafka (training → Kafka → server → browser; views in SQLite)", home, ["--kafka", bootstrap],
                      f"kafka://{bootstrap}", {"EVENTFLOW_HOME": home})


if __name__ == "__main__":
    main()
