"""A real PostgreSQL server from the machine's PostgreSQL packages, no Docker, no service.

    with LocalPostgres() as pg:
        engine = sqlalchemy.create_engine(pg.url)   # postgresql+psycopg://postgres@127.0.0.1:PORT/eventflow

What it does: finds ``initdb`` and ``postgres`` (``$EVENTFLOW_POSTGRES_BIN``, then PATH, then
the newest ``/usr/lib/postgresql/*/bin``), creates a cluster with ``initdb`` (trust
authentication for local connections, UTF8), runs ``postgres`` on a free 127.0.0.1 port
with a private Unix-socket directory, waits until it accepts connections and creates the
database ``eventflow``.

PostgreSQL refuses to run as root. When this runs as root, the server runs as the
``postgres`` user made by Debian's package (or a system user ``eventflow-pg`` created on
the fly), and the data directory is handed over to that user.

Needs PostgreSQL's server binaries (``apt-get install postgresql``); without them
``start()`` raises :class:`ServiceUnavailable` saying so.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from eventflow.dev._process import (
    ChildService,
    ServiceError,
    ServiceUnavailable,
    free_port,
    port_is_free,
    progress,
    register,
    start_watchdog,
    stop_stale,
    tail,
)

__all__ = ["LocalPostgres", "ServiceError", "ServiceUnavailable", "find_postgres_bin"]

INSTALL_HINT = "install PostgreSQL's server: apt-get install postgresql"
DATABASE = "eventflow"
SUPERUSER = "postgres"
_FALLBACK_OS_USER = "eventflow-pg"
_TOOLS = ("initdb", "postgres")


def _version_key(path: str) -> tuple:
    return tuple(int(part) for part in re.findall(r"\d+", path))


def find_postgres_bin() -> Path:
    """The directory holding PostgreSQL's server programs (``initdb``, ``postgres``)."""
    candidates: list[Path] = []
    env = os.environ.get("EVENTFLOW_POSTGRES_BIN")
    if env:
        candidates.append(Path(env).expanduser())
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).resolve().parent)
    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/opt/homebrew/opt/postgresql@*/bin"):
        candidates.extend(Path(p) for p in sorted(glob.glob(pattern), key=_version_key, reverse=True))
    candidates.append(Path("/usr/local/pgsql/bin"))
    for directory in candidates:
        if all(os.access(directory / tool, os.X_OK) for tool in _TOOLS):
            return directory
    where = "$EVENTFLOW_POSTGRES_BIN, PATH, /usr/lib/postgresql/*/bin"
    raise ServiceUnavailable(f"PostgreSQL's server programs (initdb, postgres) were not found in {where}; {INSTALL_HINT}")


def _service_user() -> tuple[int, int] | None:
    """The (uid, gid) to run PostgreSQL as, or None to run as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    for name in (SUPERUSER, _FALLBACK_OS_USER):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid != 0:
            return entry.pw_uid, entry.pw_gid
    useradd = shutil.which("useradd")
    if useradd is None:
        raise ServiceUnavailable(
            "PostgreSQL refuses to run as root and there is no 'postgres' user to run it as "
            f"(nor useradd to create one); create an unprivileged user named {SUPERUSER!r}"
        )
    result = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", _FALLBACK_OS_USER],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 and "already exists" not in result.stderr:
        raise ServiceUnavailable(f"could not create the system user {_FALLBACK_OS_USER!r} for PostgreSQL: {result.stderr.strip()}")
    entry = pwd.getpwnam(_FALLBACK_OS_USER)
    return entry.pw_uid, entry.pw_gid


def _unreachable_parent(path: Path, uid: int, gid: int) -> Path | None:
    """The first ancestor of ``path`` that user ``uid`` cannot traverse, if any."""
    for parent in reversed(path.parents):
        try:
            st = parent.stat()
        except OSError:
            return parent
        if st.st_uid == uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid == gid:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return parent
    return None


class LocalPostgres(ChildService):
    """A PostgreSQL server on 127.0.0.1, run as a child process.

    ``port`` is the TCP port, free by default. ``data_dir`` is eventflow's directory for
    this server: it holds the cluster (``pgdata/``) and the server log (``postgres.log``).
    By default it is a temporary directory removed by ``stop()``; a given directory is
    initialised on first use and reused afterwards.

    ``durable`` (default: True for a given data directory, False for a temporary one)
    keeps fsync on; a throwaway test server runs faster without it.
    """

    stop_signal = signal.SIGINT

    def __init__(
        self,
        port: int | None = None,
        data_dir: str | os.PathLike | None = None,
        *,
        database: str = DATABASE,
        durable: bool | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
        quiet: bool = False,
    ) -> None:
        self.requested_port = port
        self.requested_data_dir = Path(data_dir).expanduser().resolve() if data_dir is not None else None
        self.database = database
        self.durable = durable if durable is not None else data_dir is not None
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.quiet = quiet
        self.port: int | None = None
        self.data_dir: Path | None = None
        self.socket_dir: Path | None = None
        self.bin_dir: Path | None = None
        self._user: tuple[int, int] | None = None
        self._proc: subprocess.Popen | None = None
        self._watchdog: subprocess.Popen | None = None
        self._temporary = data_dir is None

    # -- public ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The SQLAlchemy URL (psycopg 3): ``postgresql+psycopg://postgres@127.0.0.1:PORT/eventflow``."""
        if self.port is None:
            raise RuntimeError("PostgreSQL is not started")
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{self.database}"

    @property
    def dsn(self) -> str:
        """A libpq connection string for ``psql`` or ``psycopg.connect``."""
        if self.port is None:
            raise RuntimeError("PostgreSQL is not started")
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{self.database}"

    @property
    def pgdata(self) -> Path | None:
        return self.data_dir / "pgdata" if self.data_dir else None

    @property
    def log_file(self) -> Path | None:
        return self.data_dir / "postgres.log" if self.data_dir else None

    def log_tail(self, lines: int = 40) -> str:
        if self.data_dir is None:
            return "(no data directory)"
        return f"--- {self.log_file} ---\n{tail(self.log_file, lines)}"

    def start(self) -> "LocalPostgres":
        """Initialise (once) and start the server, wait for it, create the database."""
        if self.running:
            return self
        self.bin_dir = find_postgres_bin()
        self._user = _service_user()
        try:
            self._prepare_dirs()
            self._initdb()
            attempts = 1 if self.requested_port is not None else 3
            for attempt in range(1, attempts + 1):
                try:
                    self._start_once()
                    break
                except _PortTaken:
                    self._cleanup_process()
                    if attempt == attempts:
                        raise ServiceError(f"PostgreSQL could not bind a port:\n{self.log_tail()}") from None
                    self.port = None
            self._create_database()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> int | None:
        """Stop the server (fast shutdown, then SIGKILL); safe to repeat, works after kill -9.

        A temporary data directory is removed. Returns the server's exit status.
        """
        status = self._cleanup_process()
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.socket_dir = None
        self._remove_temporary_data_dir()
        return status

    def __repr__(self) -> str:
        state = f"running at 127.0.0.1:{self.port}" if self.running else "stopped"
        return f"<LocalPostgres {state} data_dir={self.data_dir}>"

    # -- internals -------------------------------------------------------------------

    def _run_as(self) -> dict:
        """Keyword arguments for subprocess that drop to the service user when root."""
        if self._user is None:
            return {}
        uid, gid = self._user
        return {"user": uid, "group": gid, "extra_groups": []}

    def _env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        if self._user is not None:
            env["HOME"] = str(self.data_dir)
        return env

    def _own(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, *self._user)

    def _prepare_dirs(self) -> None:
        if self.requested_data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="eventflow-postgres-", dir=_shared_tmp()))
        else:
            self.data_dir = self.requested_data_dir
            self.data_dir.mkdir(parents=True, exist_ok=True)
        # A short path: a Unix socket's path is limited to about 100 bytes.
        self.socket_dir = Path(tempfile.mkdtemp(prefix="efpg-", dir=_shared_tmp()))
        self._own(self.data_dir)
        self._own(self.socket_dir)
        if self._user is not None:
            blocked = _unreachable_parent(self.data_dir, *self._user)
            if blocked is not None:
                raise ServiceError(
                    f"PostgreSQL runs as an unprivileged user (uid {self._user[0]}) because this runs as root, "
                    f"and that user cannot enter {blocked}; choose a data directory under /tmp or /var/tmp"
                )
        pgdata = self.data_dir / "pgdata"
        # A server left running on this data directory by an owner that vanished.
        stop_stale(pgdata / "postmaster.pid", str(pgdata), signal.SIGINT)

    def _initdb(self) -> None:
        pgdata = self.data_dir / "pgdata"
        if (pgdata / "PG_VERSION").exists():
            return
        if pgdata.exists() and any(pgdata.iterdir()):
            raise ServiceError(f"{pgdata} exists, is not empty and is not a PostgreSQL cluster")
        if not self.quiet:
            progress(f"initialising a PostgreSQL cluster in {pgdata} ...")
        cmd = [
            str(self.bin_dir / "initdb"), "-D", str(pgdata), "-U", SUPERUSER,
            "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync",
        ]
        result = subprocess.run(
            cmd, capture_output=True, text=True, cwd=self.data_dir, env=self._env(),
            stdin=subprocess.DEVNULL, **self._run_as(),
        )
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
            shutil.rmtree(pgdata, ignore_errors=True)
            raise ServiceError(f"initdb failed (exit {result.returncode}):\n{output}")

    def _start_once(self) -> None:
        started = time.monotonic()
        self.port = self.requested_port or free_port()
        if not port_is_free(self.port):
            raise ServiceError(
                f"cannot start PostgreSQL on 127.0.0.1:{self.port}: the port is in use"
                + ("" if self.requested_port is None else "; choose another with --port")
            )
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "logging_collector": "off",
            "max_connections": "200",
        }
        if not self.durable:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        cmd = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir / "pgdata")]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        log = self.data_dir / "postgres.log"
        with open(log, "ab") as out:
            self._own(log)
            self._proc = subprocess.Popen(
                cmd, cwd=self.data_dir, env=self._env(), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, **self._run_as(),
            )
        # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions and stop.
        self._watchdog = start_watchdog(
            self._proc.pid, signal.SIGINT, self.stop_timeout, self.data_dir if self._temporary else None
        )
        register(self, self.stop)
        if not self.quiet:
            progress(f"starting PostgreSQL on 127.0.0.1:{self.port} (data in {self.data_dir}) ...")
        self._wait_ready(started)
        if not self.quiet:
            progress(f"PostgreSQL is up on 127.0.0.1:{self.port} after {time.monotonic() - started:.1f} s")

    def _connect(self, dbname: str, timeout: int = 2):
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, dbname=dbname, connect_timeout=timeout, autocommit=True
        )

    def _wait_ready(self, started: float) -> None:
        import psycopg

        deadline = started + self.start_timeout
        last_error: Exception | None = None
        while True:
            if self._proc.poll() is not None:
                log = self.log_tail()
                if "could not bind" in log or "Address already in use" in log:
                    raise _PortTaken()
                raise ServiceError(f"PostgreSQL exited with status {self._proc.returncode} while starting:\n{log}")
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"PostgreSQL did not accept connections on 127.0.0.1:{self.port} within "
                    f"{self.start_timeout:.0f} s (last error: {last_error}):\n{self.log_tail()}"
                )
            try:
                with self._connect("postgres") as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.Error as exc:
                last_error = exc
            time.sleep(0.1)

    def _create_database(self) -> None:
        from psycopg import sql

        with self._connect("postgres", timeout=10) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))



class _PortTaken(Exception):
    """Another process took the port between choosing it and PostgreSQL binding it."""


def _shared_tmp() -> str:
    """A temporary directory's parent that another user can traverse (not a 0700 one)."""
    base = tempfile.gettempdir()
    try:
        if os.stat(base).st_mode & stat.S_IXOTH:
            return base
    except OSError:
        pass
    return "/tmp"
