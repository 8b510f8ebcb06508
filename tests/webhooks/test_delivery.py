"""Deliveries end to end, in process: a real log (embedded or Kafka), the real dispatcher,
real HTTP receivers on 127.0.0.1."""

from __future__ import annotations

import threading
import time

import pytest
from webhook_stack import new_run
from webhook_receiver import InvalidSignature, Receiver, verify
from sqlalchemy import select

from eventflow import commands
from eventflow.server import webhooks_api as api
from eventflow.webhooks.settings import Settings
from eventflow.webhooks.tables import attempts, deliveries


def deliveries_of(runtime, sid):
    return api.list_deliveries(runtime, {"subscription_id": sid, "max_results": 1000})["deliveries"]


def settled(runtime, sid, count, timeout=20.0):
    """The subscription's deliveries once ``count`` of them are finished (answers are
    recorded just after the receiver has them)."""
    deadline = time.monotonic() + timeout
    while True:
        found = deliveries_of(runtime, sid)
        if sum(d["status"] != "PENDING" for d in found) >= count:
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def test_a_failed_run_is_delivered_signed_per_the_spec(runtime):
    with Receiver() as receiver:
        created = api.create_webhook(runtime, {"url": receiver.url, "events": ["run.failed"]})
        secret, sid = created["secret"], created["webhook"]["subscription_id"]
        assert secret.startswith("whsec_") and created["webhook"]["status"] == "ACTIVE"
        run_id = new_run(runtime)
        runtime.write([commands.end_run(run_id, "FAILED", error_message="boom")])
        receiver.wait_for(lambda: len(receiver.received) >= 1)
        got = receiver.received[0]
        verify(secret, got.headers, got.body)  # the independent verifier
        with pytest.raises(InvalidSignature):
            verify(secret, got.headers, got.body + b" ")
        with pytest.raises(InvalidSignature):
            verify("whsec_" + "A" * 44, got.headers, got.body)
        body = got.json
        assert body["type"] == "run.failed" and body["id"] == got.id
        assert body["entity"] == {"type": "run", "id": run_id}
        assert body["data"]["error_message"] == "boom"
        assert got.headers["content-type"] == "application/json"
        # the run's creation did not match run.failed; only one delivery, and it succeeded
        found = settled(runtime, sid, 1)
        time.sleep(0.3)
        assert len(receiver.received) == 1
        assert [(d["event_type"], d["status"], d["attempt_count"]) for d in found] == [("run.failed", "SUCCEEDED", 1)]
        assert found[0]["attempts"][0]["status_code"] == 200 and found[0]["attempts"][0]["latency_ms"] >= 0


def test_three_failures_then_success_keep_one_webhook_id_and_one_success(runtime):
    answers = {1: (500, {}, b"down"), 2: (503, {}, b"busy"), 3: (302, {"location": "http://127.0.0.1:1/"}, b"")}
    with Receiver(lambda got, n: answers.get(n)) as receiver:
        created = api.create_webhook(runtime, {"url": receiver.url, "events": ["run.created"]})
        sid = created["webhook"]["subscription_id"]
        new_run(runtime)
        receiver.wait_for(lambda: len(receiver.received) >= 4)
        settled(runtime, sid, 1)
        time.sleep(0.3)
        ids = receiver.ids()
        assert len(ids) == 4 and len(set(ids)) == 1  # the same webhook-id every time, 302 not followed
        for got in receiver.received:
            verify(created["secret"], got.headers, got.body)
        [delivery] = settled(runtime, sid, 1)
        assert delivery["status"] == "SUCCEEDED" and delivery["event_id"] == ids[0]
        codes = [a["status_code"] for a in delivery["attempts"]]
        assert codes == [500, 503, 302, 200]
        assert "redirect" in delivery["attempts"][2]["error"]
        assert delivery["attempts"][0]["response"] == "down"
        with runtime.engine.connect() as c:
            successes = c.execute(select(attempts).where(attempts.c.delivery_id == delivery["delivery_id"], attempts.c.status_code == 200)).all()
        assert len(successes) == 1
        # Redelivered by hand: sent again with the same id, recorded as a new attempt.
        again = api.redeliver(runtime, {"subscription_id": sid, "delivery_id": delivery["delivery_id"]})["delivery"]
        assert again["status"] == "PENDING"
        receiver.wait_for(lambda: len(receiver.received) >= 5)
        assert receiver.ids()[-1] == ids[0]


def test_retry_after_is_honoured(runtime):
    with Receiver(lambda got, n: (429, {"retry-after": "1"}, b"") if n == 1 else None) as receiver:
        api.create_webhook(runtime, {"url": receiver.url, "events": ["run.created"]})
        new_run(runtime)
        receiver.wait_for(lambda: len(receiver.received) >= 2)
        first, second = receiver.received[:2]
        assert second.time - first.time >= 0.95  # the backoff alone would be 0.05 s


def test_410_disables_the_subscription_and_says_so_on_the_log(runtime):
    with Receiver(lambda got, n: (410, {}, b"gone")) as receiver:
        created = api.create_webhook(runtime, {"url": receiver.url, "events": ["run.*"]})
        sid = created["webhook"]["subscription_id"]
        new_run(runtime)
        receiver.wait_for(lambda: len(receiver.received) >= 1)
        deadline = time.monotonic() + 20
        while api.get_webhook(runtime, {"subscription_id": sid})["webhook"]["status"] != "DISABLED":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        webhook = api.get_webhook(runtime, {"subscription_id": sid})["webhook"]
        assert "410" in webhook["disabled_reason"]
        new_run(runtime)
        time.sleep(0.5)
        assert len(receiver.received) == 1  # nothing more is sent, and nothing retried
        [delivery] = deliveries_of(runtime, sid)
        assert delivery["status"] == "FAILED" and delivery["attempts"][0]["status_code"] == 410
        from eventflow.server.events_api import read_events

        seen = read_events(runtime, {"type": ["webhook.disabled"], "topic": ["eventflow.webhooks"]})["events"]
        assert any(e["event"]["payload"]["subscription_id"] == sid for e in seen)


@pytest.mark.parametrize("webhook_env", [{"EVENTFLOW_WEBHOOK_MAX_FAILURES": "3"}], indirect=False)
def test_n_consecutive_failures_disable_a_subscription(log_uri, tmp_path, webhook_env):
    from webhook_stack import FAST, running_runtime

    env = {**FAST, **webhook_env, "EVENTFLOW_WEBHOOK_GROUP": f"webhooks-{time.time_ns()}"}
    with running_runtime(log_uri, tmp_path, env) as runtime, Receiver(lambda got, n: (500, {}, b"")) as receiver:
        sid = api.create_webhook(runtime, {"url": receiver.url, "events": ["run.created"]})["webhook"]["subscription_id"]
        new_run(runtime)
        deadline = time.monotonic() + 20
        while api.get_webhook(runtime, {"subscription_id": sid})["webhook"]["status"] != "DISABLED":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "3 consecutive failed attempts" in api.get_webhook(runtime, {"subscription_id": sid})["webhook"]["disabled_reason"]
        assert len(receiver.received) == 3


def test_filters_experiment_model_and_condition(runtime):
    from eventflow.server.runtime import DEFAULT_EXPERIMENT_ID

    other = "4242"
    runtime.write([commands.create_experiment(other, f"other-{time.time_ns()}", "file:///tmp")])
    with Receiver() as receiver:
        by_experiment = api.create_webhook(runtime, {"url": receiver.url + "/exp", "events": ["run.*"], "experiment_id": other})
        by_condition = api.create_webhook(runtime, {"url": receiver.url + "/acc", "events": ["*"], "condition": "metrics.accuracy > 0.9"})
        in_default = new_run(runtime, DEFAULT_EXPERIMENT_ID)
        in_other = new_run(runtime, other)
        columns = commands.metric_columns([("accuracy", 0.5, 1, 0), ("loss", 2.0, 1, 0)])
        runtime.write([commands.log_metrics(in_default, columns)])
        columns = commands.metric_columns([("accuracy", 0.95, 2, 1)])
        runtime.write([commands.log_metrics(in_other, columns), commands.end_run(in_other, "FINISHED")])
        exp_sid = by_experiment["webhook"]["subscription_id"]
        acc_sid = by_condition["webhook"]["subscription_id"]
        deadline = time.monotonic() + 20
        while len([d for d in deliveries_of(runtime, exp_sid) if d["status"] == "SUCCEEDED"]) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)
        exp_types = sorted((d["event_type"], d["entity"]) for d in deliveries_of(runtime, exp_sid))
        assert exp_types == sorted([("run.created", in_other), ("run.metrics_logged", in_other), ("run.finished", in_other)])
        acc = deliveries_of(runtime, acc_sid)
        assert [(d["event_type"], d["entity"]) for d in acc] == [("run.metrics_logged", in_other)]
        body = next(r.json for r in receiver.received if r.id == acc[0]["event_id"])
        assert body["data"]["metrics"] == [{"key": "accuracy", "value": 0.95, "step": 1, "timestamp": 2}]


def test_one_entity_keeps_its_order_and_a_dead_endpoint_delays_no_one(runtime):
    with Receiver() as fast, Receiver(lambda got, n: (500, {}, b"")) as dead:
        api.create_webhook(runtime, {"url": dead.url, "events": ["run.*"]})
        sid = api.create_webhook(runtime, {"url": fast.url, "events": ["run.*"]})["webhook"]["subscription_id"]
        run_id = new_run(runtime)
        for i in range(20):
            runtime.write([commands.set_tags(run_id, {"i": str(i)})])
        fast.wait_for(lambda: len(fast.received) >= 21, timeout=20)
        tags = [r.json["data"]["tags"][0]["value"] for r in fast.received if r.json["type"] == "run.tags_set"]
        assert tags == [str(i) for i in range(20)]
        assert all(d["status"] == "SUCCEEDED" for d in settled(runtime, sid, 21))
        # the dead endpoint only ever saw the head of the run's events (order kept there too)
        assert {r.json["type"] for r in dead.received} == {"run.created"}


def test_subscription_changes_are_events_and_apply(runtime):
    from eventflow.server.events_api import read_events

    with Receiver() as receiver:
        created = api.create_webhook(runtime, {"url": receiver.url, "events": ["run.created"]})
        sid = created["webhook"]["subscription_id"]
        updated = api.update_webhook(runtime, {"subscription_id": sid, "events": ["run.finished"]})["webhook"]
        assert updated["events"] == ["run.finished"] and updated["url"] == receiver.url
        run_id = new_run(runtime)
        runtime.write([commands.end_run(run_id, "FINISHED")])
        receiver.wait_for(lambda: len(receiver.received) >= 1)
        assert [r.json["type"] for r in receiver.received] == ["run.finished"]
        assert sid in [w["subscription_id"] for w in api.list_webhooks(runtime, {})["webhooks"]]
        api.delete_webhook(runtime, {"subscription_id": sid})
        assert sid not in [w["subscription_id"] for w in api.list_webhooks(runtime, {})["webhooks"]]
        runtime.write([commands.end_run(new_run(runtime), "FINISHED")])
        time.sleep(0.5)
        assert len(receiver.received) == 1
    types = [e["event"]["type"] for e in read_events(runtime, {"topic": ["eventflow.webhooks"], "max_results": 10000})["events"]
             if e["event"]["payload"]["subscription_id"] == sid]
    assert types == ["webhook.created", "webhook.updated", "webhook.deleted"]
    assert all("secret" not in str(e) for e in read_events(runtime, {"topic": ["eventflow.webhooks"], "max_results": 10000})["events"]
               if e["event"]["payload"]["subscription_id"] == sid)
    assert created["secret"] not in str(read_events(runtime, {"topic": ["eventflow.webhooks"], "max_results": 10000}))


def test_rotation_sends_both_signatures_then_only_the_new(runtime):
    with Receiver() as receiver:
        created = api.create_webhook(runtime, {"url": receiver.url, "events": ["run.created"]})
        sid, old = created["webhook"]["subscription_id"], created["secret"]
        new = api.rotate_secret(runtime, {"subscription_id": sid})["secret"]
        new_run(runtime)
        receiver.wait_for(lambda: len(receiver.received) >= 1)
        got = receiver.received[0]
        assert len(got.headers["webhook-signature"].split(" ")) == 2
        verify(old, got.headers, got.body)
        verify(new, got.headers, got.body)
        newer = api.rotate_secret(runtime, {"subscription_id": sid, "expire_in_seconds": 0})["secret"]
        new_run(runtime)
        receiver.wait_for(lambda: len(receiver.received) >= 2)
        got = receiver.received[1]
        verify(newer, got.headers, got.body)
        for stale in (old, new):
            with pytest.raises(InvalidSignature):
                verify(stale, got.headers, got.body)
    from eventflow.server.events_api import read_events

    logged = read_events(runtime, {"topic": ["eventflow.webhooks"], "type": ["webhook.secret_rotated"], "max_results": 10000})
    mine = [e["event"]["payload"] for e in logged["events"] if e["event"]["payload"]["subscription_id"] == sid]
    assert len(mine) == 2 and not any(secret in str(logged) for secret in (old, new, newer))


def test_the_test_message_answers_at_once(runtime):
    with Receiver(lambda got, n: (201, {}, b"hello")) as receiver:
        sid = api.create_webhook(runtime, {"url": receiver.url, "events": ["run.failed"]})["webhook"]["subscription_id"]
        delivery = api.test_webhook(runtime, {"subscription_id": sid})["delivery"]
        assert delivery["status"] == "SUCCEEDED" and delivery["attempts"][0]["status_code"] == 201
        assert delivery["attempts"][0]["response"] == "hello"
        assert receiver.received[0].json["type"] == "webhook.test"


def test_a_receiver_down_while_1000_events_happen_gets_all_of_them(runtime):
    from eventflow.log.event_log import EventLog

    with Receiver() as probe:
        port = probe.port
    # Nothing listens on the port now: every attempt is refused.
    with Receiver() as placeholder:
        url = f"http://127.0.0.1:{port}/hook"
        sid = api.create_webhook(runtime, {"url": url, "events": ["run.tags_set"]})["webhook"]["subscription_id"]
        del placeholder
    runs = [commands.new_run_id() for _ in range(20)]
    events = [commands.set_tags(runs[i % 20], {"n": str(i)}) for i in range(1000)]
    EventLog(runtime.log).append_many(events)
    deadline = time.monotonic() + 60
    while True:
        with runtime.engine.connect() as c:
            recorded = c.execute(select(deliveries.c.delivery_id).where(deliveries.c.subscription_id == sid)).all()
            failed_attempts = c.execute(select(attempts.c.attempt_id).join(deliveries, deliveries.c.delivery_id == attempts.c.delivery_id).where(deliveries.c.subscription_id == sid)).all()
        if len(recorded) == 1000 and len(failed_attempts) >= 20:
            break
        assert time.monotonic() < deadline, (len(recorded), len(failed_attempts))
        time.sleep(0.1)
    with Receiver(port=port) as receiver:  # back up
        receiver.wait_for(lambda: len(set(receiver.ids())) >= 1000, timeout=120)
        assert set(receiver.ids()) == {e.event_id for e in events}
        # per run, in order
        for run_id in runs[:3]:
            got = [int(r.json["data"]["tags"][0]["value"]) for r in receiver.received if r.json["entity"]["id"] == run_id]
            assert got == sorted(got)


def test_a_slow_endpoint_does_not_hold_up_a_fast_one(request, log_uri, webhook_env):
    # The slow endpoint answers nothing until the fast one has had all 40: a condition,
    # not a clock, so a loaded machine cannot make the slow one finish first. Its attempts
    # never time out meanwhile, so its in-flight count is exactly what the dispatcher allows.
    webhook_env.update(EVENTFLOW_WEBHOOK_TIMEOUT="300", EVENTFLOW_WEBHOOK_LEASE="600")
    runtime = request.getfixturevalue("runtime")
    gate = threading.Event()
    lock = threading.Lock()
    in_flight = [0, 0]  # now, most at once

    def slowly(got, n):
        with lock:
            in_flight[0] += 1
            in_flight[1] = max(in_flight)
        gate.wait(120)
        with lock:
            in_flight[0] -= 1

    with Receiver(slowly) as slow, Receiver() as fast:
        api.create_webhook(runtime, {"url": slow.url, "events": ["run.created"]})
        sid = api.create_webhook(runtime, {"url": fast.url, "events": ["run.created"]})["webhook"]["subscription_id"]
        try:
            for _ in range(40):  # 40 runs: 40 entities, all due at once at the slow endpoint
                new_run(runtime)
            fast.wait_for(lambda: len(fast.received) >= 40, timeout=120)
            assert len(settled(runtime, sid, 40)) == 40
            # The slow one holds no more than its share of the workers.
            assert 1 <= in_flight[1] <= Settings.from_env(webhook_env).in_flight_cap
        finally:
            gate.set()


def test_answers_are_read_within_bounds(runtime):
    big = b"x" * (5 * 1024 * 1024)
    with Receiver(lambda got, n: (200, {}, big)) as receiver:
        sid = api.create_webhook(runtime, {"url": receiver.url, "events": ["run.created"]})["webhook"]["subscription_id"]
        new_run(runtime)
        [delivery] = settled(runtime, sid, 1)
        attempt = delivery["attempts"][0]
        assert attempt["status_code"] == 200 and len(attempt["response"]) == 1024
