"""A real HTTP receiver on 127.0.0.1 for webhook tests, and a signature verifier written
from the Standard Webhooks specification (not by calling eventflow's signer).

The specification, as implemented here: the signed content is
``{webhook-id}.{webhook-timestamp}.{body}``; the key is the base64-decoded part of the
secret after the ``whsec_`` prefix; the signature is the base64 of the HMAC-SHA256 of
the signed content; ``webhook-signature`` holds space-delimited ``v1,<signature>``
entries, any of which may match; receivers compare in constant time and reject
timestamps too far from now.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class InvalidSignature(Exception):
    pass


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> None:
    msg_id = headers["webhook-id"]
    stamp = headers["webhook-timestamp"]
    if abs(time.time() - int(stamp)) > tolerance:
        raise InvalidSignature("timestamp outside the tolerance")
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret.split("_", 1)[1])
    content = msg_id.encode() + b"." + stamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest())
    for entry in headers["webhook-signature"].split(" "):
        version, _, signature = entry.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return
    raise InvalidSignature("no signature matches")


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    time: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


# What to answer a request: (status, headers, body); None means 200.
Responder = Callable[[Received, int], "tuple[int, dict[str, str], bytes] | None"]


class Receiver:
    """Records every POST; ``respond`` decides each answer (the int is the request's number)."""

    def __init__(self, respond: Responder | None = None, port: int = 0, tls: "ssl.SSLContext | None" = None):
        self.received: list[Received] = []
        self.respond = respond
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                got = Received({k.lower(): v for k, v in self.headers.items()}, body, time.time())
                with outer.lock:
                    outer.received.append(got)
                    number = len(outer.received)
                answer = outer.respond(got, number) if outer.respond else None
                status, headers, text = answer or (200, {}, b"ok")
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.server_names: list[str | None] = []
        if tls is not None:
            tls.sni_callback = lambda sock, name, context: self.server_names.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def ids(self) -> list[str]:
        with self.lock:
            return [r.id for r in self.received]

    def wait_for(self, condition: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; received {len(self.received)} requests")
            time.sleep(0.02)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "Receiver":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
