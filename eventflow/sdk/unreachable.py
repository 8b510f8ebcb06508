"""One answer for a server that cannot be reached, from the SDK and from every command.

httpx's ``ConnectError: [Errno 111] Connection refused`` names neither the URL nor what
to check; ``ServerUnreachable`` says both in one line, and the CLI prints just that line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

WHAT_TO_CHECK = "is eventflow server running? Check --tracking-uri / EVENTFLOW_TRACKING_URI"


class ServerUnreachable(ConnectionError):
    """The eventflow server at ``url`` did not answer (refused, unknown host, timed out)."""

    def __init__(self, url: str, reason: object):
        self.url = url
        super().__init__(f"cannot reach the eventflow server at {url} ({reason}): {WHAT_TO_CHECK}")


@contextlib.contextmanager
def reaching(url: str) -> Iterator[None]:
    """Calls to the server at ``url`` inside: a transport failure becomes ``ServerUnreachable``."""
    import httpx  # here: the CLI's commands that never call a server must not pay for httpx

    try:
        yield
    except httpx.TransportError as error:
        raise ServerUnreachable(url.rstrip("/"), error) from None
