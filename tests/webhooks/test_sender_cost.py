"""What the webhook sender's idle turn costs, on real SQLite and PostgreSQL.

The sender looks for due rows every few milliseconds while a server runs. Building its
candidate query anew each turn (a correlated subquery, a join, SQLAlchemy's cache key)
cost more CPU than running it, and an idle server's turns compete with the requests
for the GIL."""

from __future__ import annotations

import pytest
from sqlalchemy import event
from sqlalchemy.sql import cache_key

from eventflow.events import now_ms
from eventflow.views.db import open_views
from eventflow.webhooks.sender import Sender
from eventflow.webhooks.settings import Settings
from eventflow.webhooks.tables import deliveries, subscriptions


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'views.db'}"
    else:
        url = request.getfixturevalue("new_postgres_database")("sendercost")
    engine = open_views(url)
    yield engine
    engine.dispose()


def one_due_delivery(engine, delivery_id: int) -> None:
    now = now_ms()
    with engine.begin() as c:
        if delivery_id == 1:
            c.execute(subscriptions.insert().values(
                subscription_id="s1", url="http://127.0.0.1:9/hook", events="*", status="ACTIVE", deleted=False,
                created_time=now, updated_time=now,
            ))
        c.execute(deliveries.insert().values(
            delivery_id=delivery_id, subscription_id="s1", entity_key=f"run:r{delivery_id}", event_id=f"e{delivery_id}", event_type="run.created",
            event_time=now, body="{}", status="PENDING", next_attempt_time=now - 1, created_time=now, attempts=0,
        ))


def test_an_idle_claim_builds_no_statement(engine, monkeypatch):
    """Once warm, a turn that finds nothing due, and one that leases a row, reuse
    prebuilt statements: no statement is built (no cache key generated)."""
    sender = Sender(engine, None, Settings(), name="cost")
    try:
        one_due_delivery(engine, 1)
        assert [row.delivery_id for row in sender.claim(4)] == [1]  # warm: each statement keyed once
        built = []
        generate = cache_key.HasCacheKey._generate_cache_key
        monkeypatch.setattr(cache_key.HasCacheKey, "_generate_cache_key", lambda self: built.append(type(self).__name__) or generate(self))
        sent: list[str] = []
        event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_: sent.append(statement))
        for _ in range(5):
            assert sender.claim(4) == []
            assert sender.cycle([], 4) == []
        assert built == [], f"statements built in idle turns: {built}"
        assert sent, "the idle turns did query the database"
        one_due_delivery(engine, 2)
        built.clear()
        claimed = sender.claim(4)
        assert [row.delivery_id for row in claimed] == [2], "the prebuilt query still finds a due row and leases it"
        assert sender.claim(4) == [], "a leased row is not claimed twice"
        assert built == [], f"statements built to lease a row and read its secrets: {built}"
    finally:
        sender.close()
