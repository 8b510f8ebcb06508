"""A small client of the live websocket protocol, for tests and the benchmark."""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from typing import Any

from websockets.sync.client import connect

PATH = "/api/2.0/eventflow/live"


class LiveClient:
    """One websocket connection; remembers each subscription's points and positions."""

    def __init__(self, url: str, headers: dict[str, str] | None = None):
        """``headers``: sent with the handshake, e.g. ``Authorization`` when auth is on."""
        self.ws = connect(url.replace("http://", "ws://") + PATH, max_size=None, open_timeout=10, additional_headers=headers).__enter__()
        self.points: dict[str, Counter] = {}  # sub -> Counter of (run_id, key, step)
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.positions: dict[str, list[list[Any]]] = {}
        self.messages: list[dict[str, Any]] = []

    def subscribe(self, sub: str, kind: str, **spec: Any) -> None:
        self.points.setdefault(sub, Counter())
        self.events.setdefault(sub, [])
        self.ws.send(json.dumps({"op": "subscribe", "sub": sub, "kind": kind, **spec}))

    def receive(self, timeout: float) -> dict[str, Any] | None:
        try:
            message = json.loads(self.ws.recv(timeout=timeout))
        except TimeoutError:
            return None
        self.messages.append(message)
        sub = message.get("sub")
        kind = message["type"]
        if kind == "reset":  # a fresh snapshot follows: start over
            self.points[sub].clear()
            self.events[sub].clear()
        if kind == "snapshot":
            self.snapshots[sub] = message["data"]
            for run in message["data"].get("runs", ()):
                if "history" in run:
                    run_id = run["run"]["info"]["run_id"]
                    for key, series in run["history"].items():
                        self.points[sub].update((run_id, key, step) for step in series["step"])
            self.events[sub].extend(message["data"].get("events", ()))
        if kind in ("snapshot", "resumed", "events"):
            self.positions[sub] = message["positions"]
        if kind == "events":
            self.events[sub].extend(message["events"])
            for chunk in message["points"]:
                for key, series in chunk["series"].items():
                    self.points[sub].update((chunk["run_id"], key, step) for step in series["step"])
        return message

    def until(self, predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {len(self.messages)} messages; last: {[m.get('type') for m in self.messages[-5:]]}")
            self.receive(min(left, 0.5))

    def drain(self, quiet: float = 0.5) -> None:
        """Read until nothing comes for ``quiet`` seconds."""
        while self.receive(quiet) is not None:
            pass

    def close(self) -> None:
        self.ws.close()


class RawLiveClient(LiveClient):
    """A websocket client on a bare socket: it reads only when told to, so a test can
    make it a truly slow reader (a library client keeps reading in its own thread)."""

    def __init__(self, url: str):
        import base64
        import os

        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        self.sock.connect((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert b" 101 " in head.split(b"\r\n")[0], head
        self.points, self.events, self.snapshots, self.positions, self.messages = {}, {}, {}, {}, []
        self.ws = self  # send() and recv() below

    def _frame(self, opcode: int, payload: bytes) -> bytes:
        import os
        import struct

        mask = os.urandom(4)
        size = len(payload)
        head = bytes([0x80 | opcode])
        if size < 126:
            head += bytes([0x80 | size])
        elif size < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", size)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", size)
        return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    def send(self, text: str) -> None:
        self.sock.sendall(self._frame(0x1, text.encode()))

    def _read(self, count: int, deadline: float) -> bytes:
        while len(self.buffer) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                raise TimeoutError from None
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buffer += chunk
        out, self.buffer = self.buffer[:count], self.buffer[count:]
        return out

    def recv(self, timeout: float) -> str:
        import struct

        deadline = time.monotonic() + max(timeout, 0.001)
        message = b""
        while True:
            first, second = self._read(2, deadline)
            size = second & 0x7F
            if size == 126:
                (size,) = struct.unpack(">H", self._read(2, deadline + 30))
            elif size == 127:
                (size,) = struct.unpack(">Q", self._read(8, deadline + 30))
            payload = self._read(size, deadline + 30)
            opcode = first & 0x0F
            if opcode == 0x9:  # ping: answer, as a browser does
                self.sock.sendall(self._frame(0xA, payload))
                continue
            if opcode == 0x8:
                raise ConnectionError("the server closed the websocket")
            message += payload
            if first & 0x80:
                return message.decode()

    def close(self) -> None:
        self.sock.close()
