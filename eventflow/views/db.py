"""Opening the views' database, and the one upsert both dialects share."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Table, create_engine, event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.dialects import postgresql, sqlite

from eventflow.views.tables import metadata


class MissingDriver(RuntimeError):
    """The views URL names a database whose driver is not installed."""


def check_driver(url: str) -> None:
    """PostgreSQL's driver comes with ``eventflow[postgres]``: without it, say that, not
    SQLAlchemy's ``No module named 'psycopg'`` from deep inside a worker."""
    if url.startswith("postgresql+psycopg:") or url.startswith("postgresql+psycopg://"):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise MissingDriver(f"the views database {url.split('@')[-1]!r} is PostgreSQL, and its driver (psycopg) "
                                "is not installed: pip install 'eventflow[postgres]'") from None


def open_views(url: str) -> Engine:
    """An engine on the views, with every table created.

    SQLite runs in WAL mode with ``synchronous=NORMAL``, PostgreSQL with
    ``synchronous_commit=off``: the views are derived from the durable log and the
    projector's offsets commit with its rows, so a crash can only take them back to an
    earlier consistent state that the projector replays (its fence sees the offsets go
    back). What the log cannot rebuild (eventflow/views/kept.py ``SECRETS``) is made
    durable at its own commit (``_secrets_durable_at_commit``).
    """
    check_driver(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, begin transactions: pysqlite's own handling
            # breaks SAVEPOINT, which the projector uses to reject one event of a batch.
            dbapi_connection.isolation_level = None
            from eventflow.log.embedded import enable_wal

            cursor = dbapi_connection.cursor()
            enable_wal(cursor)  # several processes may open a new views database at once
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            # MLflow's LIKE is case-sensitive (ILIKE is not), as PostgreSQL's is; SQLite's
            # ignores ASCII case unless told otherwise.
            cursor.execute("PRAGMA case_sensitive_like=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN " + connection.get_execution_options().get(SQLITE_BEGIN, ""))

    else:
        # The same reasoning as SQLite's NORMAL: a commit of derived rows need not wait for
        # its WAL flush (WAL order keeps a crash to an earlier consistent state, offsets
        # included); a commit writing a secret turns it back on for itself.
        engine = create_engine(url, connect_args={"options": "-c synchronous_commit=off"} if url.startswith("postgresql") else {})
        _ping_when_idle(engine)
    _secrets_durable_at_commit(engine)
    from eventflow.auth.tables import metadata as access_metadata
    from eventflow.jobs.tables import metadata as jobs_metadata

    with schema_lock(engine) as connection:
        metadata.create_all(connection)
        access_metadata.create_all(connection)
        jobs_metadata.create_all(connection)
        _identify_metric_points(connection)
    return engine


_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _secrets_durable_at_commit(engine: Engine) -> None:
    """A transaction that writes a table the log cannot rebuild (kept.SECRETS) is as
    durable as before the views stopped flushing every commit. SQLite: the WAL is
    fsynced once the commit returns (``PRAGMA synchronous`` cannot change inside a
    transaction; the WAL is appended in order, so one fsync covers every commit before
    it). PostgreSQL: ``SET LOCAL synchronous_commit TO on`` before the write."""
    import os
    import re

    from eventflow.views.kept import SECRETS

    writes_secret = re.compile(rf"^\s*({'|'.join(_WRITES)})\b[^(]*?\b({'|'.join(SECRETS)})\b", re.IGNORECASE)
    seen: dict[str, bool] = {}  # statements are few and cached: decide each once
    sqlite = engine.dialect.name == "sqlite"
    if not sqlite and engine.dialect.name != "postgresql":
        return

    @event.listens_for(engine, "before_cursor_execute")
    def _note(connection: Connection, cursor: Any, statement: str, *_rest: Any) -> None:
        wrote = seen.get(statement)
        if wrote is None:
            wrote = seen[statement] = bool(writes_secret.match(statement))
        if not wrote:
            return
        info = connection.connection.info
        if sqlite:
            info["fsync_at_commit"] = True
        elif not info.get("synchronous_commit"):
            cursor.connection.execute("SET LOCAL synchronous_commit TO on")
            info["synchronous_commit"] = True

    def noted(dbapi_connection: Any) -> bool:
        # The pool also rolls back connections that carry no info (its first connect).
        try:
            info = dbapi_connection.info
        except (AttributeError, NotImplementedError):
            return False
        info.pop("synchronous_commit", None)
        return bool(info.pop("fsync_at_commit", False))

    dialect = engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback
    wal = f"{engine.url.database}-wal"

    def do_commit(dbapi_connection: Any) -> None:
        commit(dbapi_connection)
        if noted(dbapi_connection):
            descriptor = os.open(wal, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)

    def do_rollback(dbapi_connection: Any) -> None:
        noted(dbapi_connection)
        rollback(dbapi_connection)

    dialect.do_commit, dialect.do_rollback = do_commit, do_rollback  # this engine's dialect only


def _identify_metric_points(connection: Connection) -> None:
    """Views made before metric points had an identity (a unique index) get one: their
    repeated points (a retried request stored twice) are dropped, keeping the first."""
    from sqlalchemy import inspect

    from eventflow.views.tables import METRIC_IDENTITY

    if any(index["name"] == METRIC_IDENTITY for index in inspect(connection).get_indexes("metrics")):
        return
    columns = "run_id, key, step, timestamp, value, is_nan"
    connection.execute(text(f"DELETE FROM metrics WHERE id NOT IN (SELECT MIN(id) FROM metrics GROUP BY {columns})"))
    connection.execute(text(f"CREATE UNIQUE INDEX IF NOT EXISTS {METRIC_IDENTITY} ON metrics ({columns})"))
    connection.execute(text("DROP INDEX IF EXISTS metrics_history"))


# Execution option naming the kind of SQLite BEGIN (DEFERRED when absent).
SQLITE_BEGIN = "eventflow_sqlite_begin"
# The advisory lock every eventflow process takes to create tables on PostgreSQL.
SCHEMA_LOCK_KEY = 0x6576_656E_7466_6C77  # "eventflw"


@contextlib.contextmanager
def schema_lock(engine: Engine) -> Iterator[Connection]:
    """A transaction in which no other eventflow process changes the schema.

    ``create_all`` looks for each table, then creates the missing ones: two processes
    starting at once on an empty database both see a table missing and the second
    CREATE fails (PostgreSQL: ``UniqueViolation pg_type_typname_nsp_index``). Under this
    lock the second one waits, then finds the tables there. PostgreSQL: a
    transaction-scoped advisory lock (DDL is transactional, so the tables appear to
    others at the same commit that frees the lock). SQLite: ``BEGIN IMMEDIATE`` takes
    the database's write lock before the first look, waiting through busy_timeout.
    """
    if engine.dialect.name == "sqlite":
        with engine.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"}).begin() as connection:
            yield connection
        return
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        yield connection


# A pooled connection unused for longer than this is pinged before it is handed out.
IDLE_BEFORE_PING = 2.0


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled PostgreSQL connection only when it has been idle a while.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: a round trip per read, which
    under load cost the server as much as the reads themselves. A connection in steady use
    has just proven itself; one that sat idle may have been cut (a database restart,
    a proxy timeout), and the pool replaces it when the ping fails.
    """

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        record.info["returned"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("returned", 0.0) < IDLE_BEFORE_PING:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise DisconnectionError(f"a pooled connection did not answer a ping: {error}") from error


def reading(engine: Engine) -> Engine:
    """The engine for reads that change nothing. On PostgreSQL it runs in autocommit: a
    read inside a transaction costs a BEGIN and a ROLLBACK round trip for nothing under
    READ COMMITTED, where every statement takes its own snapshot anyway. (SQLite's
    transaction does give one snapshot to every statement, and costs no round trip.)"""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


def _insert(connection: Connection, table: Table) -> Any:
    return (postgresql if connection.dialect.name == "postgresql" else sqlite).insert(table)


# Statements built once per (dialect, table, shape): building one, and SQLAlchemy keying it
# for its compiled cache, cost a projector batch more than running it (a key is memoized
# on the statement object, so only a reused object skips it).
_STATEMENTS: dict[tuple[Any, ...], Any] = {}


# Given the row offered (``excluded``), whether it replaces the row there.
Replaces = Callable[[Any], ColumnElement[bool]]


def _upsert_statement(connection: Connection, table: Table, keys: tuple[str, ...], only_if: Replaces | None) -> Any:
    cached = (connection.dialect.name, table, "upsert", keys, only_if)
    statement = _STATEMENTS.get(cached)
    if statement is None:
        statement = _insert(connection, table)
        updates = {c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys}
        where = None if only_if is None else only_if(statement.excluded)
        statement = _STATEMENTS[cached] = statement.on_conflict_do_update(index_elements=list(keys), set_=updates, where=where)
    return statement


def _insert_new_statement(connection: Connection, table: Table, key: str | None) -> Any:
    cached = (connection.dialect.name, table, "insert_new", (key,) if key else ())
    statement = _STATEMENTS.get(cached)
    if statement is None:
        statement = _insert(connection, table).on_conflict_do_nothing()
        statement = _STATEMENTS[cached] = statement if key is None else statement.returning(table.c[key])
    return statement


def upsert(
    connection: Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str], only_if: Replaces | None = None
) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE SET every other column, on SQLite or PostgreSQL;
    with ``only_if`` (a module-level function: statements are cached by it), a row there
    is replaced only where it says so, decided by the database in the same statement."""
    if not rows:
        return
    connection.execute(_upsert_statement(connection, table, tuple(keys), only_if), list(rows))


def insert_new(connection: Connection, table: Table, rows: Sequence[dict[str, Any]], key: str | None = None) -> set[Any]:
    """INSERT … ON CONFLICT DO NOTHING, rows in order; with ``key``, the values of that
    column for the rows actually inserted (the others were there already): one
    statement where a check first would be two."""
    if not rows:
        return set()
    statement = _insert_new_statement(connection, table, key)
    if key is None:
        connection.execute(statement, list(rows))
        return set()
    return set(connection.execute(statement, list(rows)).scalars())
