"""The SSRF guard: a delivery may only connect to a public address, unless allowed.

A webhook URL is chosen by whoever creates the subscription, and the dispatcher runs
inside the operator's network: without a guard, a subscription to
``http://169.254.169.254/`` or ``http://10.0.0.5:8080/admin`` makes the server a proxy
into it. So every delivery resolves the host itself, refuses when *any* address is not
globally routable (loopback, private, link-local — the cloud metadata service —, CGNAT,
multicast, reserved, IPv4-mapped forms of those) and is not inside a network the
operator allowed, and then connects to exactly the address it checked (the URL's host
goes in the ``Host`` header and TLS SNI). Resolving again at connect time, as a plain
client would, lets a DNS answer change between the check and the connection (DNS
rebinding); connecting to the checked address closes that gap.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import urlsplit

from eventflow.webhooks.settings import Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """The target is not one a delivery may reach; the message says why."""


def _kind(address: Address) -> str:
    for name in ("loopback", "link_local", "private", "multicast", "unspecified", "reserved"):
        if getattr(address, f"is_{name}"):
            return name.replace("_", "-")
    return "non-public"


def check_address(address: Address, allowed: Sequence[Network]) -> None:
    """Refuse an address that is not public, unless an allowed network holds it."""
    mapped = getattr(address, "ipv4_mapped", None)
    effective: Address = mapped if mapped is not None else address
    if any(effective in network for network in allowed if network.version == effective.version):
        return
    if not effective.is_global:
        hint = f"{effective}/{effective.max_prefixlen}"
        raise Refused(
            f"refused to connect to {address} ({_kind(effective)} address); an operator can allow it "
            f"with EVENTFLOW_WEBHOOK_ALLOW_NETWORKS={hint}"
        )


def check_url(url: str) -> str:
    """A webhook URL must be http(s) with a host and no credentials; the message says what is wrong."""
    if not isinstance(url, str) or not url or len(url) > 2000:
        raise Refused("a webhook URL must be an http:// or https:// URL of at most 2000 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise Refused(f"{url!r} is not a valid URL: {error}") from None
    # MLflow's wording (its tests and its users match on it).
    if parts.scheme not in ("http", "https"):
        raise Refused(f"Invalid webhook URL scheme: {parts.scheme!r}. Allowed schemes are: http, https.")
    if not parts.hostname:
        raise Refused(f"Webhook URL must include a hostname: {url!r}")
    if parts.username or parts.password:
        raise Refused(f"{url!r} carries credentials; put them in the receiver's check of the signature instead")
    if port == 0:
        raise Refused(f"{url!r} has port 0")
    return url


def check_literal(url: str, allowed: Sequence[Network]) -> None:
    """At subscription time: refuse a URL whose host is a forbidden IP address. Names are
    checked at every delivery, where it counts (their answers can change)."""
    host = urlsplit(check_url(url)).hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return
    check_address(address, allowed)


@dataclass(frozen=True)
class Target:
    """Where one delivery connects: the checked address, and the URL's own host."""

    url: str  # the URL with its host replaced by the checked address
    host_header: str
    server_name: str  # for TLS SNI and certificate checks


_RESOLVER = ThreadPoolExecutor(8, thread_name_prefix="eventflow-webhook-dns")


def resolve(url: str, allowed: Sequence[Network], timeout: float = 5.0) -> Target:
    """Resolve the URL's host (within ``timeout``: the system resolver has no timeout of
    its own), check every address, and pin the first one."""
    parts = urlsplit(check_url(url))
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = _RESOLVER.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM).result(timeout)
    except socket.gaierror as error:
        raise Refused(f"cannot resolve {host!r}: {error}") from None
    except FutureTimeout:
        raise Refused(f"cannot resolve {host!r}: no answer within {timeout:g} s") from None
    addresses: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise Refused(f"{host!r} has no address")
    for address in addresses:  # any forbidden answer refuses: a mixed answer is a rebinding trick
        check_address(address, allowed)
    pinned = addresses[0]
    netloc = f"[{pinned}]" if pinned.version == 6 else str(pinned)
    if parts.port:
        netloc += f":{parts.port}"
    host_header = parts.netloc.rpartition("@")[2]
    return Target(parts._replace(netloc=netloc).geturl(), host_header, host)
