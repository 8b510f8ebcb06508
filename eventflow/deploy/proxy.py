"""The stable address of a target: a small reverse proxy on the target's port that
forwards every request to the current backend.

Switching versions is swapping one pointer. Each request takes the backend it will use
and counts itself in on that backend under one lock, so the deployer can wait until the
old backend has no request in flight before stopping it: a client never sees a request
dropped by a switch. Clients keep their connections to the proxy across switches.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import httpx
import uvicorn

from eventflow.deploy.backend import Backend

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length"}


class Proxy:
    """An ASGI app forwarding to ``current``; ``serve_in_thread`` runs it with uvicorn."""

    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port
        self.current: Backend | None = None
        self._lock = threading.Lock()
        self._clients: dict[int, httpx.AsyncClient] = {}
        self._loop: asyncio.AbstractEventLoop | None = None  # uvicorn's, where the clients live
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- switching (called from the deployer's thread) ------------------------------------

    def switch(self, backend: Backend | None) -> Backend | None:
        """Send new requests to ``backend``; returns the one that had them."""
        with self._lock:
            previous, self.current = self.current, backend
        return previous

    def drain(self, backend: Backend, timeout: float = 60.0) -> bool:
        """Wait until no request is in flight on ``backend`` (True), or the timeout (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if backend.inflight == 0:
                    client = self._clients.pop(id(backend), None)
                    if client is not None and self._loop is not None and self._loop.is_running():
                        asyncio.run_coroutine_threadsafe(client.aclose(), self._loop)
                    return True
            time.sleep(0.01)
        return False

    # -- serving --------------------------------------------------------------------------

    def _acquire(self) -> Backend | None:
        with self._lock:
            backend = self.current
            if backend is not None:
                backend.inflight += 1
            return backend

    def _release(self, backend: Backend) -> None:
        with self._lock:
            backend.inflight -= 1

    def _client(self, backend: Backend) -> httpx.AsyncClient:
        client = self._clients.get(id(backend))
        if client is None:
            self._loop = asyncio.get_running_loop()
            client = self._clients[id(backend)] = httpx.AsyncClient(base_url=backend.url, timeout=60)
        return client

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        backend = self._acquire()
        if backend is None:
            await _answer(send, 503, json.dumps({"error_code": "TEMPORARILY_UNAVAILABLE",
                                                 "message": "no model version is deployed on this target yet"}).encode(),
                          [(b"content-type", b"application/json")])
            return
        try:
            headers = [(k, v) for k, v in scope["headers"] if k.decode().lower() not in HOP_BY_HOP]
            path = scope["path"] + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
            try:
                answer = await self._client(backend).request(scope["method"], path, content=body, headers=headers)
            except httpx.HTTPError as error:
                await _answer(send, 502, json.dumps({"error_code": "INTERNAL_ERROR",
                                                     "message": f"the scoring backend did not answer: {error}"}).encode(),
                              [(b"content-type", b"application/json")])
                return
            out = [(k.encode(), v.encode()) for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP]
            out.append((b"x-eventflow-model-version", backend.version.encode()))
            await _answer(send, answer.status_code, answer.content, out)
        finally:
            self._release(backend)

    def serve_in_thread(self) -> None:
        """Listen on host:port in a daemon thread; returns once it accepts connections."""
        config = uvicorn.Config(self, host=self.host, port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"eventflow-proxy-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"cannot listen on {self.host}:{self.port} (is the port taken?)")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


async def _answer(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

