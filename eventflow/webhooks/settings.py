"""The dispatcher's knobs, read from ``EVENTFLOW_WEBHOOK_*`` environment variables.

Defaults follow what receivers expect from Stripe-like senders: retries over three
days, a few seconds to connect, and no private network reachable unless the operator
says so (``EVENTFLOW_WEBHOOK_ALLOW_NETWORKS=127.0.0.0/8,10.1.0.0/16``).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DAY = 86400.0


def parse_networks(text: str) -> tuple[Network, ...]:
    """``"127.0.0.0/8, ::1/128"`` → networks, or a ValueError naming the bad one."""
    networks = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"EVENTFLOW_WEBHOOK_ALLOW_NETWORKS: {part!r} is not a network (write e.g. 127.0.0.0/8)") from None
    return tuple(networks)


@dataclass(frozen=True)
class Settings:
    allow_networks: tuple[Network, ...] = ()
    retry_window: float = 3 * DAY  # keep retrying a delivery this long after it was recorded
    first_retry: float = 5.0  # the first backoff; each later one doubles (with jitter)
    max_retry_delay: float = 6 * 3600.0
    max_failures: int = 1000  # consecutive failed attempts before a subscription is disabled
    connect_timeout: float = 5.0
    response_timeout: float = 15.0  # for the whole answer, headers and (bounded) body
    max_response_bytes: int = 64 * 1024
    workers: int = 32  # concurrent attempts per dispatcher instance (threads waiting on I/O)
    per_subscription: int = 0  # attempts one subscription may have in flight; 0: half the workers
    lease: float = 60.0  # how long a claimed delivery is this instance's alone
    poll_interval: float = 0.2  # the longest the sender sleeps when nothing is due
    rotation_grace: float = DAY  # how long a rotated-out secret still signs
    group: str = "webhooks"  # the dispatcher's consumer group (and its name in log_positions)
    ca_file: str | None = None  # trust these CAs for https targets instead of the system's (a private CA)

    def __post_init__(self) -> None:
        if self.lease <= self.connect_timeout + self.response_timeout:
            raise ValueError("EVENTFLOW_WEBHOOK_LEASE must be longer than the connect and response timeouts together")

    @property
    def in_flight_cap(self) -> int:
        """Attempts one subscription may have in flight: by default half the workers, so
        a slow endpoint (each attempt bounded by the timeouts) never holds them all and
        the others go on."""
        return self.per_subscription or max(1, self.workers // 2)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ

        def number(name: str, default: float) -> float:
            raw = env.get(f"EVENTFLOW_WEBHOOK_{name}")
            if raw is None or raw == "":
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"EVENTFLOW_WEBHOOK_{name} must be a number, not {raw!r}") from None
            if value <= 0:
                raise ValueError(f"EVENTFLOW_WEBHOOK_{name} must be positive, not {raw!r}")
            return value

        return cls(
            allow_networks=parse_networks(env.get("EVENTFLOW_WEBHOOK_ALLOW_NETWORKS", "")),
            retry_window=number("RETRY_WINDOW", cls.retry_window),
            first_retry=number("FIRST_RETRY", cls.first_retry),
            max_retry_delay=number("MAX_RETRY_DELAY", cls.max_retry_delay),
            max_failures=int(number("MAX_FAILURES", cls.max_failures)),
            connect_timeout=number("CONNECT_TIMEOUT", cls.connect_timeout),
            response_timeout=number("TIMEOUT", cls.response_timeout),
            max_response_bytes=int(number("MAX_RESPONSE_BYTES", cls.max_response_bytes)),
            workers=int(number("WORKERS", cls.workers)),
            per_subscription=int(number("PER_SUBSCRIPTION", cls.per_subscription or 1)) if env.get("EVENTFLOW_WEBHOOK_PER_SUBSCRIPTION") else 0,
            lease=number("LEASE", cls.lease),
            poll_interval=number("POLL_INTERVAL", cls.poll_interval),
            rotation_grace=number("ROTATION_GRACE", cls.rotation_grace),
            group=env.get("EVENTFLOW_WEBHOOK_GROUP") or cls.group,
            ca_file=env.get("EVENTFLOW_WEBHOOK_CA_FILE") or None,
        )
