"""The ``nats://`` engine URL: one server or a cluster, and the engine's settings.

``nats://a:4222,b:4222,c:4222?replicas=3&failover_timeout=30`` names three servers of one
cluster (a server without a scheme takes ``nats://``; credentials as ``nats://user:pw@host``)
and two settings:

- ``replicas`` (1-5, default 1): the copies kept of a topic created without its own
  ``replicas`` option, and of the consumer lease bucket;
- ``failover_timeout`` (seconds, default 30): how long producers and consumers retry while a
  cluster elects new leaders before they fail with :class:`~lakeport.errors.Unavailable`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from lakeport.errors import Invalid
from lakeport.streams.types import MAX_REPLICAS

DEFAULT_FAILOVER_TIMEOUT = 30.0


@dataclass(frozen=True)
class NatsSettings:
    """What a ``nats://`` URL says: the servers to connect to and the engine's settings."""

    servers: tuple[str, ...]
    replicas: int = 1
    failover_timeout: float = DEFAULT_FAILOVER_TIMEOUT


def parse_nats_url(url: str) -> NatsSettings:
    """The servers and settings of ``url``; Invalid naming what is wrong."""
    base, _, query = url.partition("?")
    servers = tuple(
        s if "://" in s else f"nats://{s}" for s in (p.strip() for p in base.split(",")) if s
    )
    if not servers:
        raise Invalid(f"bad NATS URL {display_url(url)!r}: no server")
    replicas, failover = 1, DEFAULT_FAILOVER_TIMEOUT
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "replicas":
            replicas = _number(key, value, int, 1, MAX_REPLICAS)
        elif key == "failover_timeout":
            failover = _number(key, value, float, 0.0, 86_400.0)
        else:
            raise Invalid(f"NATS URL: unknown setting {key!r} (known: replicas, "
                          "failover_timeout)")
    return NatsSettings(servers, replicas, failover)


def _number(key: str, value: str, kind: type[int] | type[float], low: float, high: float):
    try:
        number = kind(value)
    except ValueError:
        number = None
    if number is None or not math.isfinite(number) or not low <= number <= high:
        shown = "an integer" if kind is int else "a number of seconds"
        raise Invalid(f"NATS URL: {key}={value!r} must be {shown} from {low:g} to {high:g}")
    return number


def display_url(url: str) -> str:
    """``url`` without passwords, for messages."""
    shown = []
    for server in url.split(","):
        parts = urlsplit(server.strip())
        if parts.password is None:
            shown.append(server.strip())
            continue
        host = parts.netloc.rpartition("@")[2]
        netloc = f"{parts.username}:***@{host}"
        shown.append(urlunsplit(parts._replace(netloc=netloc)))
    return ",".join(shown)
