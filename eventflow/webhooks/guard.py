"""The SSRF guard: a delivery may only connect to a public address, unless allowed.

A webhook URL is chosen by whoever creates the subscription, and the dispatcher runs
inside the operator's network: without a guard, a subscription to
``http://169.254.169.254/`` or ``http://10.0.0.5:8080/admin`` makes the server a proxy
into it. So every delivery resolves the host itself, refuses when *any* address is not
globally routable (loopback, private, link-local — the cloud metadata service —, CGNAT,
multicast, site-local, reserved) and is not inside a network the operator allowed, and then connects to exactly the address it checked (the URL's host
goes in the ``Host`` header and TLS SNI). Resolving again at connect time, as a plain
client would, lets a DNS answer change between the check and the connection (DNS
rebinding); connecting to the checked address closes that gap.

An IPv6 address that carries an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``,
IPv4-compatible ``::a.b.c.d``, IPv4-translated ``::ffff:0:a.b.c.d``, NAT64
``64:ff9b::a.b.c.d``, 6to4 ``2002:AABB:CCDD::``) reaches that IPv4 host through a
translator or tunnel, so it is judged as that IPv4 address: ``64:ff9b::a9fe:a9fe`` is
169.254.169.254, whatever Python's ``is_global`` says of the IPv6 form.
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
    for name in ("loopback", "link_local", "private", "multicast", "site_local", "unspecified", "reserved"):
        if getattr(address, f"is_{name}", False):
            return name.replace("_", "-")
    return "non-public"


_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # IPv4-translated (RFC 2765)
_COMPATIBLE = ipaddress.ip_network("::/96")  # IPv4-compatible (deprecated, RFC 4291)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known NAT64 prefix (RFC 6052)
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # local-use NAT64 (RFC 8215): never public


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, if it is of a form that reaches one."""
    if address.version == 4:
        return None
    assert isinstance(address, ipaddress.IPv6Address)
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _TRANSLATED or address in _NAT64:
        return low
    if address in _COMPATIBLE and int(address) > 1:  # not :: or ::1, which are themselves
        return low
    return None


def _forbidden(address: Address) -> bool:
    if address.is_multicast or not address.is_global:
        return True
    return address.version == 6 and (address.is_site_local or address in _NAT64_LOCAL)  # type: ignore[union-attr]


def check_address(address: Address, allowed: Sequence[Network]) -> None:
    """Refuse an address that is not public, unless an allowed network holds it; an IPv6
    address that embeds an IPv4 one is judged as that IPv4 address."""
    effective: Address = embedded_ipv4(address) or address
    for candidate in {address, effective}:
        if any(candidate in network for network in allowed if network.version == candidate.version):
            return
    if _forbidden(effective) or _forbidden(address):
        hint = f"{effective}/{effective.max_prefixlen}"
        seen = f"{address} (that is {effective})" if effective != address else str(address)
        raise Refused(
            f"refused to connect to {seen}, a {_kind(effective if _forbidden(effective) else address)} address; "
            f"an operator can allow it with EVENTFLOW_WEBHOOK_ALLOW_NETWORKS={hint}"
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
