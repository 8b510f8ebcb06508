"""A server on 127.0.0.1 for one project run, so MLflow code logs into it on the embedded log.

MLflow's client speaks only HTTP, while ``eventflow run`` on the embedded default (or a
``kafka://`` tracking URI) writes straight to the log. The launcher therefore serves that
same home over loopback for as long as the entry point runs, and tells the child where
(``MLFLOW_TRACKING_URI``) with a token of its own (``MLFLOW_TRACKING_TOKEN``), so another
user of the machine who finds the port cannot write into the home through it.

The socket is bound before the child starts, so its address can go in the child's
environment at once; the app is built at the first connection (most entry points never
make one), which comes after the run is on the log: meanwhile the kernel holds the
child's connections in the listen queue, and the app's first answer already sees the run
(the runtime catches up with the log before it serves).

MLflow code usually ends the run itself (``with mlflow.start_run()``), which freezes its
files; ``before_end`` is called before such a request goes through, so the launcher can
store the output up to then as ``project/stdout.txt``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import select
import socket
import threading
from pathlib import Path
from typing import Any, Callable

ENDED = ("FINISHED", "FAILED", "KILLED")

BACKLOG = 128


class LoopbackServer:
    """``url`` and ``token`` are known at once; ``start`` serves the home, ``stop`` ends it."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(BACKLOG)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self.token = secrets.token_urlsafe(32)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.before_end: Callable[[], None] | None = None
        self._stopping = threading.Event()

    def child_variables(self) -> dict[str, str]:
        """What MLflow's client in the child needs to log here (and nothing that would
        send it elsewhere: a username/password of the caller's would win over the token)."""
        return {"MLFLOW_TRACKING_URI": self.url, "MLFLOW_TRACKING_TOKEN": self.token}

    def start(self, log_uri: str, views_url: str, artifacts: Path) -> None:
        """Serve the home (its log, views and artifacts) in a daemon thread; returns at once."""
        self._thread = threading.Thread(target=self._serve, args=(log_uri, views_url, artifacts),
                                        name="eventflow-loopback", daemon=True)
        self._thread.start()

    def _serve(self, log_uri: str, views_url: str, artifacts: Path) -> None:
        import uvicorn

        from eventflow.log import open_log
        from eventflow.server.app import create_app
        from eventflow.server.runtime import Runtime

        try:
            if not self._first_connection():
                return  # the entry point never called: it cost nothing
            runtime = Runtime(open_log(log_uri), views_url, artifacts, projector_only=True)
            app = TokenGate(create_app(runtime, auth=False), self.token, self._before_end)
            config = uvicorn.Config(app, log_level="warning", lifespan="on")
            self._server = uvicorn.Server(config)
            if self._stopping.is_set():  # stop() came while this was being built
                runtime.log.close()
                return
            self._server.run(sockets=[self._socket])
        except BaseException as error:  # the child's MLflow calls then fail: say why once
            self.error = error
            import sys

            print(f"eventflow: the loopback server for MLflow code in this run stopped: {error}", file=sys.stderr, flush=True)
        finally:
            self._socket.close()

    def _first_connection(self) -> bool:
        """Wait until a client connects (True) or ``stop`` is called (False): most entry
        points never use MLflow's client, and they should not pay for a server."""
        while not self._stopping.is_set():
            readable, _, _ = select.select([self._socket], [], [], 0.2)
            if readable:
                return True
        return False

    def _before_end(self) -> None:
        if self.before_end is not None:
            self.before_end()

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._socket.close()


class TokenGate:
    """Every HTTP request must carry ``Authorization: Bearer <token>``; anything else is 401.
    A ``runs/update`` that ends a run first calls ``before_end`` (in a worker thread)."""

    def __init__(self, app: Any, token: str, before_end: Callable[[], None]):
        self.app = app
        self._expected = f"Bearer {token}".encode()
        self._before_end = before_end

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not secrets.compare_digest(given, self._expected):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                body = json.dumps({"error_code": "UNAUTHENTICATED",
                                   "message": "this server serves one project run: send its MLFLOW_TRACKING_TOKEN"}).encode()
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].endswith("/mlflow/runs/update"):
            receive = await self._ending(receive)
        await self.app(scope, receive, send)

    async def _ending(self, receive: Any) -> Any:
        """Read the request; if it ends the run, call ``before_end``; hand the body on."""
        messages, more = [], True
        while more:
            message = await receive()
            messages.append(message)
            more = message.get("type") == "http.request" and message.get("more_body", False)
        body = b"".join(m.get("body", b"") for m in messages if m.get("type") == "http.request")
        try:
            ends = json.loads(body or b"{}").get("status") in ENDED
        except (ValueError, AttributeError):
            ends = False  # the app answers the malformed request itself
        if ends:
            await asyncio.to_thread(self._before_end)
        queued = iter(messages)

        async def replay() -> Any:
            return next(queued, None) or await receive()

        return replay
