"""The dispatcher as its own process: kill -9 mid-flight loses nothing; two instances in
one group split the work without sending anything twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from webhook_stack import FAST, running_runtime
from webhook_receiver import Receiver
from sqlalchemy import create_engine, func, select

from eventflow import commands
from eventflow.consumers.webhooks import Dispatcher
from eventflow.log import open_log
from eventflow.log.event_log import EventLog
from eventflow.server import webhooks_api as api
from eventflow.webhooks.settings import Settings
from eventflow.webhooks.tables import attempts, deliveries


def _consume(log_uri: str, home, env: dict[str, str]) -> subprocess.Popen:
    backend = ["--kafka", log_uri.removeprefix("kafka://"), "--db", f"sqlite:///{home / 'views.db'}"] if log_uri.startswith("kafka://") else []
    out = open(home / f"consume-{time.time_ns()}.out", "w")
    return subprocess.Popen(
        [sys.executable, "-m", "eventflow", "consume", "webhooks", "--home", str(home), *backend],
        stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env},
    )


def _statuses_of(engine, sid):
    with engine.connect() as c:
        return dict(c.execute(select(deliveries.c.status, func.count()).where(deliveries.c.subscription_id == sid).group_by(deliveries.c.status)).all())


def _statuses(home, sid):
    engine = create_engine(f"sqlite:///{home / 'views.db'}")
    try:
        return _statuses_of(engine, sid)
    finally:
        engine.dispose()


def test_a_dispatcher_killed_mid_flight_loses_nothing(log_uri, tmp_path):
    home = tmp_path
    # The embedded default keeps its log in HOME/log; the runtime here uses the same.
    log_uri = log_uri if log_uri.startswith("kafka://") else str(home / "log")
    env = {**FAST, "EVENTFLOW_WEBHOOK_GROUP": f"webhooks-{uuid.uuid4().hex[:8]}", "EVENTFLOW_WEBHOOK_LEASE": "6"}

    def slowly(got, n):
        time.sleep(0.03)  # slow enough that the kill lands mid-flight

    with Receiver(slowly) as receiver:
        with running_runtime(log_uri, home, env) as runtime:
            sid = api.create_webhook(runtime, {"url": receiver.url, "events": ["run.tags_set"]})["webhook"]["subscription_id"]
            runs = [commands.new_run_id() for _ in range(30)]
            events = [commands.set_tags(runs[i % 30], {"n": str(i)}) for i in range(300)]
        # The runtime (and its dispatcher) is gone: the events wait on the log.
        with open_log(log_uri) as log:
            EventLog(log).append_many(events)
        first = _consume(log_uri, home, env)
        try:
            receiver.wait_for(lambda: len(receiver.received) >= 60, timeout=120)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        assert len(set(receiver.ids())) < 300, "killed too late to prove anything"
        second = _consume(log_uri, home, env)
        try:
            wanted = {e.event_id for e in events}
            receiver.wait_for(lambda: wanted <= set(receiver.ids()), timeout=120)
            deadline = time.monotonic() + 30
            while _statuses(home, sid) != {"SUCCEEDED": 300}:
                assert time.monotonic() < deadline, _statuses(home, sid)
                time.sleep(0.1)
        finally:
            second.terminate()
            second.wait(timeout=30)
        # At least once: an attempt in flight at the kill may come twice, with the same id.
        assert len(receiver.ids()) - 300 <= Settings.from_env({**env}).workers


def test_two_dispatchers_in_one_group_never_send_twice(log_uri, tmp_path, webhook_env):
    with Receiver() as receiver, running_runtime(log_uri, tmp_path, webhook_env) as runtime:
        second = Dispatcher(runtime.log, runtime.engine, Settings.from_env(webhook_env))
        stop = threading.Event()
        thread = threading.Thread(target=second.run, args=(stop,), daemon=True)
        thread.start()
        try:
            sid = api.create_webhook(runtime, {"url": receiver.url, "events": ["run.tags_set"]})["webhook"]["subscription_id"]
            runs = [commands.new_run_id() for _ in range(40)]
            events = [commands.set_tags(runs[i % 40], {"n": str(i)}) for i in range(400)]
            EventLog(runtime.log).append_many(events)
            receiver.wait_for(lambda: len(receiver.received) >= 400, timeout=120)
            deadline = time.monotonic() + 30
            while _statuses_of(runtime.engine, sid) != {"SUCCEEDED": 400}:
                assert time.monotonic() < deadline, _statuses_of(runtime.engine, sid)
                time.sleep(0.1)
            ids = receiver.ids()
            assert sorted(ids) == sorted(e.event_id for e in events)  # each exactly once
            with runtime.engine.connect() as c:
                senders = {row[0] for row in c.execute(
                    select(func.distinct(attempts.c.dispatcher)).join(deliveries, deliveries.c.delivery_id == attempts.c.delivery_id)
                    .where(deliveries.c.subscription_id == sid))}
                by_status = dict(c.execute(select(deliveries.c.status, func.count()).where(deliveries.c.subscription_id == sid).group_by(deliveries.c.status)).all())
            assert by_status == {"SUCCEEDED": 400}
            assert len(senders) == 2  # both instances did part of the sending
        finally:
            stop.set()
            thread.join(timeout=30)


@pytest.mark.kafka
@pytest.mark.postgres
def test_kafka_and_postgresql_two_dispatchers_retries_and_order(kafka_bootstrap, postgres_url, tmp_path, webhook_env):
    """The distributed setup: leases and the outbox on PostgreSQL, the log on Kafka."""
    answers = {1: (500, {}, b""), 2: (503, {"retry-after": "0"}, b"")}
    log_uri = f"kafka://{kafka_bootstrap}"
    with Receiver(lambda got, n: answers.get(n)) as receiver, running_runtime(log_uri, tmp_path, webhook_env, postgres_url) as runtime:
        second = Dispatcher(runtime.log, runtime.engine, Settings.from_env(webhook_env))
        stop = threading.Event()
        thread = threading.Thread(target=second.run, args=(stop,), daemon=True)
        thread.start()
        try:
            created = api.create_webhook(runtime, {"url": receiver.url, "events": ["run.tags_set"]})
            sid = created["webhook"]["subscription_id"]
            runs = [commands.new_run_id() for _ in range(10)]
            events = [commands.set_tags(runs[i % 10], {"n": str(i)}) for i in range(200)]
            EventLog(runtime.log).append_many(events)
            receiver.wait_for(lambda: {e.event_id for e in events} <= set(receiver.ids()), timeout=120)
            deadline = time.monotonic() + 30
            while _statuses_of(runtime.engine, sid) != {"SUCCEEDED": 200}:
                assert time.monotonic() < deadline, _statuses_of(runtime.engine, sid)
                time.sleep(0.1)
            ids = receiver.ids()
            assert len(ids) == 202  # the two failed attempts were retried; nothing else twice
            for run_id in runs:
                got = [int(r.json["data"]["tags"][0]["value"]) for r in receiver.received if r.json["entity"]["id"] == run_id]
                assert sorted(set(got)) == sorted(set(got), key=got.index)  # first arrivals in log order
        finally:
            stop.set()
            thread.join(timeout=30)
