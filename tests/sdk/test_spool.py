"""Training code is never held hostage by an unreachable server or broker.

Real processes throughout: a training script logs to a target that is down, is stopped
(SIGTERM, or a normal exit bounded by EVENTFLOW_FLUSH_TIMEOUT), spools what it had not
sent, and a real server or broker later receives every point through `eventflow sync`
or the next process that logs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
from serving import free_port, running_process  # noqa: E402

import eventflow  # noqa: E402

POINTS = 3000


def value(step: int) -> float:
    return 1.0 / (step + 1)


TRAIN = """
import os, sys, time
from pathlib import Path
import eventflow

run = eventflow.start_run()
print(run.run_id, flush=True)
eventflow.log_params({"depth": 3})
go = Path(sys.argv[1])
first = int(sys.argv[2])
for step in range(first):
    eventflow.log_metric("loss", 1.0 / (step + 1), step=step)
if first:
    eventflow.flush()
print("first", flush=True)
while not go.exists():
    time.sleep(0.05)
for step in range(first, %d):
    eventflow.log_metric("loss", 1.0 / (step + 1), step=step)
print("ready", flush=True)
if sys.argv[3] == "wait":
    time.sleep(600)
""" % POINTS


def start_training(tmp_path: Path, env: dict[str, str], first: int = 0, mode: str = "wait") -> tuple[subprocess.Popen, str, Path]:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(TRAIN))
    go = tmp_path / "go"
    process = subprocess.Popen(
        [sys.executable, str(script), str(go), str(first), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    run_id = process.stdout.readline().strip()
    assert process.stdout.readline().strip() == "first", process.communicate(timeout=30)
    return process, run_id, go


def stop_within(process: subprocess.Popen, seconds: float, signum: int = signal.SIGTERM) -> str:
    """Signal the script (SIGTERM, or SIGINT as Ctrl-C); it must exit within ``seconds``. Returns its stderr."""
    process.send_signal(signum)
    started = time.monotonic()
    try:
        _, stderr = process.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"the script ignored signal {signum} for {seconds + 30:.0f} s")
    elapsed = time.monotonic() - started
    assert elapsed < seconds, f"the script took {elapsed:.1f} s to exit after signal {signum}:\n{stderr}"
    return stderr


def spool_files(home: Path) -> list[Path]:
    return sorted(p for p in (home / "spool").rglob("*.events"))


def sync(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "eventflow", "sync", "--home", str(home), *args],
        capture_output=True, text=True, timeout=180, env={**os.environ, "EVENTFLOW_CAPTURE_ENV": "false"},
    )


def server_on(port: int, home: Path):
    os.makedirs(home, exist_ok=True)
    command = [sys.executable, "-m", "eventflow", "server", "--port", str(port), "--home", str(home)]
    return running_process(command, port, "/health", str(home / "server.out"), what="server")


def rest_history(url: str, run_id: str) -> list[dict]:
    points, token = [], None
    while True:
        params = {"run_id": run_id, "metric_key": "loss", **({"page_token": token} if token else {})}
        found = httpx.get(f"{url}/api/2.0/mlflow/metrics/get-history", params=params, timeout=60).json()
        points += found.get("metrics", [])
        token = found.get("next_page_token")
        if not token:
            return points


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_stop_with_the_server_down_exits_at_once_and_sync_delivers_every_point(tmp_path, signum):
    port = free_port()  # nothing listens here for the whole run
    url = f"http://127.0.0.1:{port}"
    home = tmp_path / "client-home"
    env = {"EVENTFLOW_HOME": str(home), "EVENTFLOW_TRACKING_URI": url, "EVENTFLOW_EXPERIMENT_ID": "0",
           "EVENTFLOW_CAPTURE_ENV": "false"}
    process, run_id, go = start_training(tmp_path, env)
    go.touch()
    assert process.stdout.readline().strip() == "ready"
    stderr = stop_within(process, 8, signum)
    assert "eventflow sync" in stderr and str(home / "spool") in stderr, stderr
    assert spool_files(home), "what was not sent is on disk"

    # The target is still down: sync says so, fails, and keeps the spool.
    before = [p.read_bytes() for p in spool_files(home)]
    down = sync(home)
    assert down.returncode != 0 and url in down.stderr and "unreachable" in down.stderr, down
    assert [p.read_bytes() for p in spool_files(home)] == before

    with server_on(port, tmp_path / "server-home") as served:
        done = sync(home)
        assert done.returncode == 0, done.stderr
        assert url in done.stdout and "sent" in done.stdout, done.stdout
        assert spool_files(home) == []
        run = httpx.get(f"{served}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=60).json()["run"]
        assert run["info"]["status"] == "KILLED"
        assert {p["key"]: p["value"] for p in run["data"]["params"]} == {"depth": "3"}
        history = rest_history(served, run_id)
        assert sorted((p["step"], p["value"]) for p in history) == [(s, value(s)) for s in range(POINTS)]
        again = sync(home)
        assert again.returncode == 0 and "nothing" in again.stdout.lower(), again


def test_a_normal_exit_spools_after_the_flush_timeout_and_the_next_process_sends_it(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    home = tmp_path / "client-home"
    env = {"EVENTFLOW_HOME": str(home), "EVENTFLOW_TRACKING_URI": url, "EVENTFLOW_EXPERIMENT_ID": "0",
           "EVENTFLOW_CAPTURE_ENV": "false", "EVENTFLOW_FLUSH_TIMEOUT": "2"}
    process, run_id, go = start_training(tmp_path, env, mode="exit")
    go.touch()
    assert process.stdout.readline().strip() == "ready"
    started = time.monotonic()
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("a normal exit waited more than 60 s for an unreachable server")
    assert time.monotonic() - started < 8, "the exit waits about EVENTFLOW_FLUSH_TIMEOUT, not more"
    assert process.returncode == 0, stderr
    assert "eventflow sync" in stderr and spool_files(home), stderr

    with server_on(port, tmp_path / "server-home") as served:
        # The next process that logs to the same target sends the spool first.
        later = subprocess.run(
            [sys.executable, "-c", "import eventflow\nwith eventflow.start_run() as r:\n    eventflow.log_metric('x', 1.0)\nprint(r.run_id)"],
            capture_output=True, text=True, timeout=120, env={**os.environ, **env},
        )
        assert later.returncode == 0, later.stderr
        assert spool_files(home) == []
        run = httpx.get(f"{served}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=60).json()["run"]
        assert run["info"]["status"] == "FINISHED"
        history = rest_history(served, run_id)
        assert sorted((p["step"], p["value"]) for p in history) == [(s, value(s)) for s in range(POINTS)]
        second = later.stdout.strip().splitlines()[-1]  # after the "View run ..." lines
        assert httpx.get(f"{served}/api/2.0/mlflow/runs/get", params={"run_id": second}, timeout=60).json()["run"]["info"]["status"] == "FINISHED"


def test_sigterm_during_the_exits_wait_for_the_log_ends_it_at_once(tmp_path):
    port = free_port()
    home = tmp_path / "client-home"
    env = {"EVENTFLOW_HOME": str(home), "EVENTFLOW_TRACKING_URI": f"http://127.0.0.1:{port}", "EVENTFLOW_EXPERIMENT_ID": "0",
           "EVENTFLOW_CAPTURE_ENV": "false", "EVENTFLOW_FLUSH_TIMEOUT": "300"}
    process, run_id, go = start_training(tmp_path, env, mode="exit")
    go.touch()
    assert process.stdout.readline().strip() == "ready"
    time.sleep(1)  # the script is at its end now, waiting up to 300 s for the server
    stderr = stop_within(process, 8)
    assert "eventflow sync" in stderr and spool_files(home), stderr


@pytest.mark.kafka
def test_sigterm_with_the_broker_stopped_spools_and_sync_delivers_after_restart(tmp_path, kafka_bootstrap):
    from eventflow.dev.kafka import LocalKafka

    data = tmp_path / "kafka"
    broker = LocalKafka(data_dir=data, quiet=True).start()
    port = broker.port
    uri = f"kafka://{broker.bootstrap}"
    home = tmp_path / "client-home"
    env = {"EVENTFLOW_HOME": str(home), "EVENTFLOW_TRACKING_URI": uri, "EVENTFLOW_CAPTURE_ENV": "false",
           "EVENTFLOW_DB": f"sqlite:///{tmp_path / 'views.db'}"}
    restarted = None
    try:
        process, run_id, go = start_training(tmp_path, env, first=500)
        broker.stop()
        go.touch()
        assert process.stdout.readline().strip() == "ready"
        stderr = stop_within(process, 10)
        assert "eventflow sync" in stderr and spool_files(home), stderr
        restarted = LocalKafka(port=port, data_dir=data, quiet=True).start()
        done = subprocess.run(
            [sys.executable, "-m", "eventflow", "sync", "--home", str(home), "--tracking-uri", uri],
            capture_output=True, text=True, timeout=240, env={**os.environ, **env},
        )
        assert done.returncode == 0, done.stderr
        assert spool_files(home) == []
        os.environ["EVENTFLOW_DB"] = env["EVENTFLOW_DB"]
        client = eventflow.Client(uri)
        history = client.get_metric_history(run_id, "loss")
        assert sorted((p["step"], p["value"]) for p in history) == [(s, value(s)) for s in range(POINTS)]
        assert client.get_run(run_id)["info"]["status"] == "KILLED"
        client.close()
    finally:
        os.environ.pop("EVENTFLOW_DB", None)
        broker.stop()
        if restarted is not None:
            restarted.stop()


# -- a home that cannot be written -------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path):
    """A small real tmpfs, so a read-only or full home is a real one (root ignores chmod)."""
    mounted = []

    def mount(options: str) -> Path:
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
        if result.returncode != 0:
            if os.environ.get("CI") == "true":
                pytest.fail(f"cannot mount a tmpfs here: {result.stderr}")
            pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    eventflow.set_tracking_uri(None)  # close what the SDK holds open there
    for where in mounted:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)  # still busy: detach it


@pytest.fixture
def sdk(monkeypatch):
    monkeypatch.setenv("EVENTFLOW_CAPTURE_ENV", "false")
    monkeypatch.delenv("EVENTFLOW_TRACKING_URI", raising=False)
    yield
    while eventflow.active_run():
        eventflow.end_run()
    eventflow.set_tracking_uri(None)


def home_error(call) -> str:
    """The error ``call`` raises: eventflow's, naming the problem, not a raw OSError or SQLite's."""
    with pytest.raises(Exception) as caught:
        call()
    text = str(caught.value)
    assert "EVENTFLOW_HOME" in text, f"a raw error, not one that says what to do: {caught.value!r}"
    from eventflow.sdk.stores import HomeUnavailable

    assert isinstance(caught.value, HomeUnavailable)
    return text


def test_a_read_only_home_is_a_clear_error_at_start_run(tmpfs, sdk, monkeypatch):
    home = tmpfs("ro,size=1m")
    monkeypatch.setenv("EVENTFLOW_HOME", str(home))
    text = home_error(eventflow.start_run)
    assert str(home) in text and "read-only" in text


def test_a_home_made_read_only_after_use_is_a_clear_error_at_start_run(tmpfs, sdk, monkeypatch):
    home = tmpfs("size=8m")
    monkeypatch.setenv("EVENTFLOW_HOME", str(home))
    with eventflow.start_run():
        eventflow.log_metric("m", 1.0)
    eventflow.set_tracking_uri(None)
    subprocess.run(["mount", "-o", "remount,ro", str(home)], check=True)
    text = home_error(eventflow.start_run)
    assert str(home) in text and "read-only" in text


def test_a_full_home_is_a_clear_error_at_start_run(tmpfs, sdk, monkeypatch):
    home = tmpfs("size=64k")
    fd = os.open(home / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    monkeypatch.setenv("EVENTFLOW_HOME", str(home))
    text = home_error(eventflow.start_run)
    assert str(home) in text and "full" in text and "free space" in text


# -- the sender and the spool, in process, on a real embedded log ----------------------


def read_runs(log) -> list:
    from eventflow.codec import decode

    with log.consumer(["eventflow.runs"]) as consumer:
        records = []
        while batch := consumer.poll(timeout=0.2, max_records=10_000):
            records += batch
    return [decode(r.value) for r in sorted(records, key=lambda r: (r.partition, r.offset))]


class DownLog:
    """A real embedded log that refuses appends while ``down`` is set (a stopped broker)."""

    def __init__(self, log):
        import threading

        from eventflow.log.event_log import EventLog

        self.events = EventLog(log)
        self.down = threading.Event()

    def append(self, events):
        from eventflow.log import LogError

        if self.down.is_set():
            raise LogError("broker unreachable")
        return self.events.append_many(events)


def test_a_runs_spooled_events_go_before_its_later_ones_and_a_stop_is_prompt(tmp_path):
    from eventflow import commands
    from eventflow.events import metric_points
    from eventflow.log.embedded import EmbeddedLog
    from eventflow.sdk import spool
    from eventflow.sdk.sender import SendError, Sender

    log = EmbeddedLog(tmp_path / "log")
    target = DownLog(log)
    target.down.set()
    run = commands.new_run_id()
    first = Sender(target.append, retry_max=5.0)
    first.event(commands.create_run(run, "0", run_name="r", user_id="u", artifact_uri="file:///x"))
    for step in range(1500):
        first.metric(run, "loss", value(step), 1000 + step, step)
    with pytest.raises(TimeoutError):
        first.flush(timeout=0.5)
    started = time.monotonic()
    unsent = first.take_unsent()
    assert time.monotonic() - started < 3, "stopping does not wait out the retry backoff"
    with pytest.raises(SendError, match="spool"):
        first.flush(timeout=1)  # a flush after the stop does not claim the events are durable
    root = tmp_path / "spool"
    spool.write(root, "kafka://somewhere:9092", unsent)
    where = spool.directory(root, "kafka://somewhere:9092/")
    assert spool.count(where) == len(unsent) and len(unsent) >= 2

    # The next process: its sender sends the spool before the run's later events.
    target.down.clear()
    second = Sender(target.append, before=lambda s: spool.send(where, target.append, stop=lambda: s.stopping))
    for step in range(1500, 2000):
        second.metric(run, "loss", value(step), 1000 + step, step)
    second.event(commands.end_run(run, "FINISHED"))
    second.flush(timeout=60)
    second.close()
    events = [e for e in read_runs(log) if e.payload["run_id"] == run]
    assert events[0].type == "run.created" and events[-1].type == "run.finished"
    steps = [p.step for e in events if e.type == "run.metrics_logged" for p in metric_points(e.payload)]
    assert steps == list(range(2000)), "every point once, spooled ones first"
    assert spool.files(where) == []
    log.close()


def test_one_sender_at_a_time_and_a_file_is_kept_until_sent(tmp_path):
    from eventflow import commands
    from eventflow.log.embedded import EmbeddedLog
    from eventflow.sdk import spool

    log = EmbeddedLog(tmp_path / "log")
    target = DownLog(log)
    root = tmp_path / "spool"  # the spool of the home tmp_path
    run = commands.new_run_id()
    spool.write(root, "http://h:1", [commands.set_tags(run, {"a": 1})])
    where = spool.directory(root, "http://h:1")
    with spool.locked(where) as held:
        assert held
        with pytest.raises(spool.SpoolBusy):
            spool.send(where, target.append, lock_wait=0.5)
        busy = sync(tmp_path, "--tracking-uri", "http://h:1", "--wait", "1")  # another process: the lock is per file, not per process
        assert busy.returncode != 0 and "another eventflow process" in busy.stderr, busy
    assert len(spool.files(where)) == 1
    target.down.set()
    with pytest.raises(Exception, match="unreachable"):
        spool.send(where, target.append)
    assert len(spool.files(where)) == 1, "a failed send keeps the file"
    target.down.clear()
    assert spool.send(where, target.append) == 1
    assert spool.files(where) == [] and read_runs(log)[0].payload["run_id"] == run
    log.close()


def test_a_spool_file_sent_twice_is_applied_once(tmp_path, monkeypatch):
    """A send that died after the append but before removing the file: the resend is harmless."""
    from eventflow import commands
    from eventflow.sdk import spool
    from eventflow.sdk.stores import open_store

    home = tmp_path / "home"
    monkeypatch.setenv("EVENTFLOW_HOME", str(home))
    store = open_store(str(home))
    run = commands.new_run_id()
    store.append([commands.create_experiment("0", "Default", store.experiment_artifact_location("0"))])
    events = [commands.create_run(run, "0", run_name="r", user_id="u", artifact_uri="file:///x")]
    columns = commands.Columns()
    for step in range(100):
        columns.add("loss", value(step), 1000 + step, step)
    events.append(commands.log_metrics(run, columns.columns))
    where = spool.directory(spool.root(), str(home))
    spool.write(spool.root(), str(home), events)
    store.append(events)  # the first send: appended, then the process died
    assert spool.send(where, store.append) == 2
    history = store.metric_history(run, "loss")
    assert sorted((p["step"], p["value"]) for p in history) == [(s, value(s)) for s in range(100)]
    store.close()
