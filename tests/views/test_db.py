"""The views' connection pool on PostgreSQL: a connection the server cut while it sat idle
is replaced before a request sees it (pinged only after a pause, not on every checkout)."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from eventflow.views import db, queries
from eventflow.views.db import open_views, reading


def backend_pid(engine) -> int:
    with reading(engine).connect() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar_one()


def test_an_idle_connection_the_server_cut_is_replaced_unseen(new_postgres_database, monkeypatch):
    url = new_postgres_database("pool")
    engine = open_views(url)
    before = backend_pid(engine)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": before}).scalar_one()
    admin.dispose()
    monkeypatch.setattr(db, "IDLE_BEFORE_PING", 0.0)  # it has been idle "long enough"
    with reading(engine).connect() as connection:
        assert queries.get_experiment(connection, "0") is None  # answered on a fresh connection
    assert backend_pid(engine) != before
    engine.dispose()


def test_a_connection_in_steady_use_is_not_pinged(new_postgres_database, monkeypatch):
    engine = open_views(new_postgres_database("pool"))
    backend_pid(engine)
    pings = []
    monkeypatch.setattr(engine.dialect, "do_ping", lambda dbapi_connection: pings.append(1) or True)
    for _ in range(5):
        backend_pid(engine)
    assert pings == []
    monkeypatch.setattr(db, "IDLE_BEFORE_PING", 0.0)
    backend_pid(engine)
    assert pings == [1]
    engine.dispose()


def test_reads_on_postgresql_leave_no_transaction_open(new_postgres_database):
    engine = open_views(new_postgres_database("pool"))
    with reading(engine).connect() as connection:
        connection.execute(text("SELECT 1"))
        # Autocommit: no BEGIN went before it (a round trip), nor a ROLLBACK after.
        assert connection.connection.dbapi_connection.info.transaction_status.name == "IDLE"
    with engine.connect() as connection:  # the engine itself still opens transactions
        connection.execute(text("SELECT 1"))
        assert connection.connection.dbapi_connection.info.transaction_status.name == "INTRANS"
    engine.dispose()
