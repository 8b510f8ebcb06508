"""The sender: works through pending deliveries, one attempt at a time per entity.

Claiming: a row is due when it is PENDING, its ``next_attempt_time`` has come, its
subscription is active, it is not leased, and it is the oldest pending row of its
(subscription, entity) — so one entity's events reach an endpoint in order, and a
failing one holds back only that entity's later events at that endpoint. A claim is a
compare-and-set ``UPDATE … WHERE lease is free``: the same SQL on SQLite and PostgreSQL,
and two dispatcher instances never send one row while its lease runs (the lease outlasts
an attempt's timeouts). A dispatcher killed mid-attempt leaves a lease that expires, and
the row is sent again (at least once: the same ``webhook-id``, for the receiver to dedupe).

Sending: resolve and check the target (``guard``), POST the stored body with fresh
Standard Webhooks headers, read at most ``max_response_bytes`` of the answer within the
response timeout, never follow a redirect, and record the attempt and the row's new
state in one transaction. 2xx is success; 410 Gone ends the delivery and disables the
subscription; anything else retries with exponential backoff and jitter (or the
receiver's ``Retry-After``, when longer) until ``retry_window`` after the delivery was
recorded. ``max_failures`` consecutive failed attempts disable a subscription; the
dispatcher says so on the log with a ``webhook.disabled`` event.

Fairness: a subscription may have ``in_flight_cap`` attempts in flight at most (half the
workers by default), so a slow or dead endpoint occupies a bounded share of the workers
and the others go on.
"""

from __future__ import annotations

import email.utils
import logging
import queue
import random
import ssl
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import Connection, Engine, Select, bindparam, func, insert, or_, select, update

from eventflow.events import Event, now_ms
from eventflow.log import Log
from eventflow.log.event_log import EventLog
from eventflow.views.db import reading
from eventflow.webhooks import guard, mlflow, signing
from eventflow.webhooks.settings import Settings
from eventflow.webhooks.tables import attempts, create_tables, deliveries, secrets, subscriptions

logger = logging.getLogger(__name__)

SNIPPET = 1024
USER_AGENT = "eventflow-webhooks/1"


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    latency_ms: int
    error: str | None
    response: str
    retry_after: float | None = None
    time: int = 0  # when the attempt started, ms since the epoch

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), if any."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def backoff(settings: Settings, failed_attempts: int) -> float:
    """Exponential, capped, with ±25 % jitter so a recovering endpoint is not hit in waves."""
    delay = min(settings.first_retry * 2 ** max(0, failed_attempts - 1), settings.max_retry_delay)
    return delay * random.uniform(0.75, 1.25)


def _due_heads() -> Select:
    """Due rows that head their (subscription, entity), in id order along the
    (status, delivery_id) index, so the scan stops after a few due heads instead of
    ranking every pending row."""
    d, s = deliveries, subscriptions
    h = deliveries.alias("h")
    now = bindparam("b_now")
    head = (
        select(func.min(h.c.delivery_id))
        .where(h.c.subscription_id == d.c.subscription_id, h.c.entity_key == d.c.entity_key, h.c.status == "PENDING")
        .scalar_subquery()
    )
    return (
        select(d, s.c.url, s.c.flavor)
        .join(s, s.c.subscription_id == d.c.subscription_id)
        .where(
            d.c.status == "PENDING",
            d.c.next_attempt_time <= now,
            or_(d.c.lease_until.is_(None), d.c.lease_until < now),
            s.c.status == "ACTIVE",
            s.c.deleted.is_(False),
            d.c.delivery_id == head,
        )
        .order_by(d.c.delivery_id)
        .limit(bindparam("b_scan"))
    )


# Built once: the sender looks for due rows every few milliseconds, and building and
# keying these statements cost more than running them (tests/webhooks/test_sender_cost.py).
_DUE_HEADS = _due_heads()
_LEASE = (
    update(deliveries)
    .where(
        deliveries.c.delivery_id == bindparam("b_id"), deliveries.c.status == "PENDING",
        deliveries.c.next_attempt_time <= bindparam("b_now"),
        or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < bindparam("b_now")),
    )
    .values(lease_owner=bindparam("b_owner"), lease_until=bindparam("b_until"))
)
_SECRETS = (
    select(secrets.c.subscription_id, secrets.c.secret)
    .where(
        secrets.c.subscription_id.in_(bindparam("b_ids", expanding=True)),
        or_(secrets.c.expires_time.is_(None), secrets.c.expires_time > bindparam("b_now")),
    )
    .order_by(secrets.c.expires_time.is_not(None), secrets.c.created_time.desc())
)


class Claimed:
    """A leased delivery row, with its subscription's URL and signing secrets."""

    __slots__ = ("row", "url", "keys")

    def __init__(self, row: Any, url: str, keys: list[str]):
        self.row, self.url, self.keys = row, url, keys

    def __getattr__(self, name: str) -> Any:
        return getattr(self.row, name)


class Sender:
    def __init__(self, engine: Engine, log: Log | None, settings: Settings, name: str | None = None):
        self.engine = engine
        self.events = EventLog(log) if log is not None else None
        self.settings = settings
        self.name = name or f"sender-{uuid.uuid4().hex[:12]}"
        self.client = self._new_client()
        # HTTPS connections are pooled per server name: the pool knows only the pinned
        # address, and a connection verified for one name must not carry another's request.
        self._tls_clients: dict[str, httpx.Client] = {}
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._done: queue.Queue[tuple[Any, Outcome]] = queue.Queue()
        create_tables(engine)

    def _new_client(self) -> httpx.Client:
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=self.settings.ca_file) if self.settings.ca_file else True
        return httpx.Client(
            verify=verify,
            timeout=httpx.Timeout(self.settings.response_timeout, connect=self.settings.connect_timeout),
            follow_redirects=False,
            trust_env=False,  # a proxy from the environment would connect where the guard did not look
            limits=httpx.Limits(max_connections=self.settings.workers * 2, max_keepalive_connections=self.settings.workers),
        )

    def _client_for(self, url: str, server_name: str) -> httpx.Client:
        if not url.lower().startswith("https"):
            return self.client
        with self._lock:
            client = self._tls_clients.get(server_name)
            if client is None:
                if len(self._tls_clients) >= 256:  # forget the oldest endpoint's connections
                    self._tls_clients.pop(next(iter(self._tls_clients))).close()
                client = self._tls_clients[server_name] = self._new_client()
            return client

    def close(self) -> None:
        self.client.close()
        with self._lock:
            for client in self._tls_clients.values():
                client.close()
            self._tls_clients.clear()

    # -- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Claim, send and record until ``stop``; database errors are logged and retried.

        Workers only POST; this thread records the outcomes that came back and claims new
        rows, all in one transaction per turn, so a burst costs one commit per turn
        rather than two per delivery (each commit is an fsync on SQLite). A row stays
        leased until its outcome is recorded; a crash in between means it is sent again
        (at least once).
        """
        with ThreadPoolExecutor(self.settings.workers, thread_name_prefix="eventflow-webhook") as pool:
            idle = 0.002
            while not stop.is_set():
                done = self._drain()
                try:
                    free = self.settings.workers - sum(self._in_flight.values()) + len(done)
                    claimed = self.cycle(done, free)
                except Exception:
                    # The outcomes are kept and recorded next turn: dropping them would
                    # send those deliveries again once their leases expire.
                    for item in done:
                        self._done.put(item)
                    logger.exception("webhook sender: the database failed; retrying in 1 s")
                    stop.wait(1.0)
                    continue
                for row in claimed:
                    pool.submit(self._send, row)
                if claimed or done:
                    idle = 0.002
                    continue
                self._wake.wait(idle)
                self._wake.clear()
                idle = min(idle * 2, self.settings.poll_interval)
            pool.shutdown(wait=True)
            leftover = self._drain()
            if leftover:
                try:
                    self.record_many(leftover)
                except Exception:
                    logger.exception("webhook sender: could not record the last outcomes; their leases will expire")
        self.close()

    def wake(self) -> None:
        """New rows are due: look now rather than at the next poll."""
        self._wake.set()

    def _send(self, row: Any) -> None:
        try:
            outcome = self.post(row.url, row.event_id, row.body, row.keys, row.flavor)
        except Exception as error:  # post() never raises by design; belt and braces
            logger.exception("webhook sender: delivery %s failed unexpectedly", row.delivery_id)
            outcome = Outcome(None, 0, f"internal error: {error}", "")
        self._done.put((row, outcome))
        self._wake.set()

    def _drain(self) -> list[tuple[Any, Outcome]]:
        done = []
        while True:
            try:
                done.append(self._done.get_nowait())
            except queue.Empty:
                return done

    def _release(self, done: list[tuple[Any, Outcome]]) -> None:
        with self._lock:
            for row, _ in done:
                self._in_flight[row.subscription_id] -= 1
                if not self._in_flight[row.subscription_id]:
                    del self._in_flight[row.subscription_id]

    def cycle(self, done: list[tuple[Any, Outcome]], free: int) -> list[Claimed]:
        """One turn of the loop: record ``done`` and claim up to ``free`` rows, in one transaction."""
        if not done and free <= 0:
            return []
        # Candidates are read before the transaction, which then only writes: on SQLite a
        # transaction that reads first cannot take the write lock once another writer
        # has committed (it fails at once instead of waiting); the lease update re-checks.
        candidates = self._candidates(free) if free > 0 else []
        if not done and not candidates:
            return []  # an idle turn: nothing to write, no transaction
        with self.engine.begin() as c:
            disabled = self._record(c, done) if done else []
            claimed = self._lease(c, candidates)
        if done:
            self._release(done)  # recorded: not in flight any more
        self._announce(disabled)
        return self._leased(claimed)

    def claim(self, limit: int) -> list[Claimed]:
        """Lease up to ``limit`` due rows, each the head of its (subscription, entity)."""
        candidates = self._candidates(limit)
        with self.engine.begin() as c:
            claimed = self._lease(c, candidates)
        return self._leased(claimed)

    def _leased(self, claimed: list[Any]) -> list[Claimed]:
        with self._lock:
            for row in claimed:
                self._in_flight[row.subscription_id] = self._in_flight.get(row.subscription_id, 0) + 1
        keys = self.signing_secrets({row.subscription_id for row in claimed}) if claimed else {}
        return [Claimed(row, row.url, keys[row.subscription_id]) for row in claimed]

    def _candidates(self, limit: int) -> list[Any]:
        """Up to ``limit`` due heads, within the per-subscription cap (read, not leased)."""
        # Autocommit reads (``reading``): on PostgreSQL a read in a transaction ends in a
        # ROLLBACK, which makes psycopg drop the connection's prepared statements — the
        # projector's among them, on a pooled connection it uses next.
        with reading(self.engine).connect() as c:
            candidates = c.execute(_DUE_HEADS, {"b_now": now_ms(), "b_scan": limit * 4}).all()
        chosen, per_subscription = [], dict(self._in_flight)
        for row in candidates:
            if len(chosen) < limit and per_subscription.get(row.subscription_id, 0) < self.settings.in_flight_cap:
                per_subscription[row.subscription_id] = per_subscription.get(row.subscription_id, 0) + 1
                chosen.append(row)
        return chosen

    def _lease(self, c: Connection, chosen: list[Any]) -> list[Any]:
        """Lease the rows still free (another instance may have taken some meanwhile)."""
        now = now_ms()
        until = now + int(self.settings.lease * 1000)
        return [
            row for row in chosen
            if c.execute(_LEASE, {"b_id": row.delivery_id, "b_now": now, "b_owner": self.name, "b_until": until}).rowcount
        ]

    # -- one attempt ----------------------------------------------------------------------

    def signing_secrets(self, subscription_ids: Iterable[str]) -> dict[str, list[str]]:
        """Per subscription: the current secret, then any rotated-out one still in its
        grace period. Read once per claim, for all the claimed rows."""
        now = now_ms()
        found: dict[str, list[str]] = {sid: [] for sid in subscription_ids}
        with reading(self.engine).connect() as c:
            rows = c.execute(_SECRETS, {"b_ids": list(found), "b_now": now})
            for row in rows:
                found[row.subscription_id].append(row.secret)
        return found

    def post(self, url: str, event_id: str, body: str, keys: Sequence[str], flavor: str | None = None) -> Outcome:
        """One POST, bounded in time and in what it reads; never raises. ``flavor``
        "mlflow" sends MLflow's ``X-MLflow-*`` headers instead of Standard Webhooks'."""
        started = time.monotonic()
        deadline = started + self.settings.response_timeout
        began = now_ms()

        def took() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            target = guard.resolve(url, self.settings.allow_networks, self.settings.connect_timeout)
        except guard.Refused as refused:
            return Outcome(None, took(), str(refused), "", time=began)
        if not keys and flavor != mlflow.FLAVOR:
            return Outcome(None, took(), "the subscription has no signing secret (rotate it to make one)", "", time=began)
        stamp = int(time.time())
        data = body.encode()
        headers = {
            "host": target.host_header,
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "accept-encoding": "identity",  # the kept snippet is the answer as sent, and its size is bounded on the wire
        }
        if flavor == mlflow.FLAVOR:
            headers.update(mlflow.headers(list(keys), event_id, stamp, data))
        else:
            headers.update({
                "webhook-id": event_id,
                "webhook-timestamp": str(stamp),
                "webhook-signature": signing.signature_header(keys, event_id, stamp, data),
            })
        extensions = {"sni_hostname": target.server_name} if url.lower().startswith("https") else {}
        try:
            with self._client_for(url, target.server_name).stream("POST", target.url, content=data, headers=headers, extensions=extensions) as response:
                kept = bytearray()
                for chunk in response.iter_raw():
                    kept += chunk
                    if len(kept) >= self.settings.max_response_bytes or time.monotonic() > deadline:
                        break
                text = bytes(kept[:SNIPPET]).decode("utf-8", "replace")
                error = None
                if 300 <= response.status_code < 400:
                    error = f"redirect to {response.headers.get('location', '?')[:200]} not followed"
                elif time.monotonic() > deadline and not 200 <= response.status_code < 300:
                    error = "the answer took longer than the response timeout"
                return Outcome(response.status_code, took(), error, text, retry_after(response.headers.get("retry-after"), time.time()), began)
        except httpx.TimeoutException as error:
            return Outcome(None, took(), f"timed out: {type(error).__name__}", "", time=began)
        except httpx.HTTPError as error:
            return Outcome(None, took(), f"{type(error).__name__}: {error}"[:500], "", time=began)

    def deliver(self, row: Any, url: str, flavor: str | None = None) -> Outcome:
        """Attempt a row leased by the caller now and record what happened (the API's
        test message)."""
        claimed = Claimed(row, url, self.signing_secrets([row.subscription_id])[row.subscription_id])
        outcome = self.post(url, row.event_id, row.body, claimed.keys, flavor)
        self.record_many([(claimed, outcome)])
        return outcome

    def _row_values(self, row: Any, outcome: Outcome, now: int) -> tuple[dict[str, Any], str | None]:
        """The row's new state after an attempt, and why to disable its subscription (410)."""
        values: dict[str, Any] = {
            "b_id": row.delivery_id, "attempts": row.attempts + 1, "last_status_code": outcome.status_code,
            "last_error": outcome.error, "lease_owner": None, "lease_until": None, "status": "PENDING",
            "completed_time": None, "next_attempt_time": row.next_attempt_time,
        }
        if outcome.succeeded:
            values.update(status="SUCCEEDED", completed_time=now)
            return values, None
        if outcome.status_code == 410:
            values.update(status="FAILED", completed_time=now)
            return values, "the endpoint answered 410 Gone"
        wait = backoff(self.settings, row.attempts + 1)
        if outcome.retry_after is not None:
            wait = max(wait, outcome.retry_after)
        give_up_at = row.created_time + int(self.settings.retry_window * 1000)
        if now >= give_up_at:
            values.update(status="FAILED", completed_time=now)
        else:
            values.update(next_attempt_time=min(now + int(wait * 1000), give_up_at))
        return values, None

    def record_many(self, done: list[tuple[Any, Outcome]]) -> None:
        with self.engine.begin() as c:
            disabled = self._record(c, done)
        self._announce(disabled)

    def _announce(self, disabled: list[Event]) -> None:
        if disabled and self.events is not None:
            # The table changed at once (no more attempts); the log says so for everyone.
            self.events.append_many(disabled)

    def _record(self, c: Connection, done: list[tuple[Any, Outcome]]) -> list[Event]:
        """Record attempts and the rows' new states; disable the subscriptions that
        answered 410 or failed ``max_failures`` times in a row (returns those events)."""
        now = now_ms()
        d, s = deliveries, subscriptions
        # Rows locked in one order (deliveries by id, then subscriptions by id) by every
        # instance, so two dispatchers recording at once never deadlock on PostgreSQL.
        done = sorted(done, key=lambda item: item[0].delivery_id)
        reasons: dict[str, str] = {}
        streak: dict[str, tuple[bool, int]] = {}  # per subscription: (a success seen, failures after the last one)
        c.execute(
            insert(attempts),
            [
                {"delivery_id": row.delivery_id, "time": o.time or now, "status_code": o.status_code, "latency_ms": o.latency_ms,
                 "error": o.error, "response": o.response, "dispatcher": self.name}
                for row, o in done
            ],
        )
        changes = []
        for row, outcome in done:
            values, reason = self._row_values(row, outcome, now)
            changes.append(values)
            if reason:
                reasons.setdefault(row.subscription_id, reason)
            reset, failed = streak.get(row.subscription_id, (False, 0))
            streak[row.subscription_id] = (True, 0) if outcome.succeeded else (reset, failed + 1)
        c.execute(update(d).where(d.c.delivery_id == bindparam("b_id")), changes)
        for sid, (reset, failed) in sorted(streak.items()):
            if failed == 0:
                c.execute(update(s).where(s.c.subscription_id == sid, s.c.consecutive_failures != 0).values(consecutive_failures=0))
                continue
            before = 0 if reset else s.c.consecutive_failures
            c.execute(update(s).where(s.c.subscription_id == sid).values(consecutive_failures=before + failed))
            total = c.execute(select(s.c.consecutive_failures).where(s.c.subscription_id == sid)).scalar()
            if total is not None and total >= self.settings.max_failures:
                reasons.setdefault(sid, f"{total} consecutive failed attempts")
        disabled = []
        for sid, reason in reasons.items():
            changed = c.execute(
                update(s).where(s.c.subscription_id == sid, s.c.status == "ACTIVE").values(status="DISABLED", disabled_reason=reason)
            ).rowcount
            if changed:
                disabled.append(Event("webhook.disabled", {"subscription_id": sid, "reason": reason}))
        return disabled
