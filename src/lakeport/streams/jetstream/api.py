"""Requests to the JetStream API (``$JS.API.*``) with errors translated into lakeport errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats.errors
import orjson
from nats.aio.client import Client

from lakeport.errors import (
    Closed,
    Conflict,
    Invalid,
    LakeportError,
    NotFound,
    Terminal,
    Transient,
    Unavailable,
)

T = TypeVar("T")


class _TryAgain(Unavailable):
    """JetStream answered "temporarily unavailable" (a cluster without its quorum yet)."""


API_PREFIX = "$JS.API."
STREAM_NOT_FOUND = 10059
CONSUMER_NOT_FOUND = 10014
STREAM_NAME_IN_USE = 10058
NOT_AVAILABLE = 10008  # "JetStream system temporarily unavailable"


def error_from_response(error: dict[str, Any], what: str) -> LakeportError:
    """The lakeport error for a JetStream API error record."""
    code = error.get("code", 500)
    text = f"{what}: {error.get('description', 'JetStream error')}"
    cls: type[LakeportError]
    if code == 404:
        cls = NotFound
    elif code == 400:
        cls = Invalid
    elif code == 409:
        cls = Conflict
    elif code == 503:
        cls = _TryAgain if error.get("err_code") == NOT_AVAILABLE else Unavailable
    elif code >= 500:
        cls = Transient
    else:
        cls = Terminal
    exc = cls(text)
    exc.err_code = error.get("err_code", 0)  # type: ignore[attr-defined]
    return exc


def err_code(exc: BaseException) -> int:
    return getattr(exc, "err_code", 0)


def translate(exc: BaseException, what: str) -> LakeportError:
    """The lakeport error for a nats-py exception raised while doing ``what``."""
    if isinstance(exc, LakeportError):
        return exc
    if isinstance(exc, nats.errors.NoRespondersError):
        return Unavailable(f"{what}: JetStream did not answer (is the server started with -js?)")
    if isinstance(exc, nats.errors.MaxPayloadError):
        return Invalid(f"{what}: the message is larger than the server's max_payload")
    if isinstance(exc, nats.errors.ConnectionClosedError | nats.errors.ConnectionDrainingError):
        return Closed(f"{what}: the NATS connection is closed")
    if isinstance(exc, asyncio.TimeoutError | nats.errors.TimeoutError):
        return Unavailable(f"{what}: NATS did not answer in time")
    if isinstance(exc, nats.errors.OutboundBufferLimitError):
        return Unavailable(f"{what}: disconnected from NATS and the outgoing buffer is full")
    return Unavailable(f"{what}: {exc or type(exc).__name__}")


NO_ANSWER: tuple[type[BaseException], ...] = (
    nats.errors.NoRespondersError, nats.errors.TimeoutError, TimeoutError)
"""What a request gets while a cluster elects the leader that would answer it."""


async def resend(op: Callable[[], Awaitable[T]], retry_for: float,
                 no_answer: tuple[type[BaseException], ...] = NO_ANSWER) -> T:
    """``await op()``, called again with a growing pause while it gets ``no_answer``, for up
    to ``retry_for`` seconds (then that error is raised)."""
    gives_up = time.monotonic() + retry_for
    pause = 0.05
    while True:
        try:
            return await op()
        except no_answer:
            if time.monotonic() + pause > gives_up:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)


async def request(
    nc: Client, subject: str, payload: dict[str, Any] | None, what: str, timeout: float = 5.0,
    retry_for: float = 0.0,
) -> dict[str, Any]:
    """Call ``$JS.API.<subject>`` and return the JSON answer (errors raised as lakeport errors).

    An idempotent request may pass ``retry_for`` (seconds): a request nobody answered, or
    answered "temporarily unavailable" (a cluster electing a leader, a quorum re-forming), is
    then sent again, with a growing pause, until that long."""
    body = orjson.dumps(payload) if payload is not None else b""

    async def answer() -> dict[str, Any]:
        msg = await nc.request(API_PREFIX + subject, body, timeout=timeout)
        response: dict[str, Any] = orjson.loads(msg.data)
        error = response.get("error")
        if error:
            raise error_from_response(error, what)
        return response

    try:
        return await resend(answer, retry_for, (*NO_ANSWER, _TryAgain))
    except LakeportError:
        raise
    except Exception as exc:
        raise translate(exc, what) from exc


async def paged(
    nc: Client, subject: str, key: str, what: str, payload: dict[str, Any] | None = None,
    retry_for: float = 0.0,
) -> list[dict[str, Any]]:
    """Every item of a paged list request (``STREAM.LIST``, ``CONSUMER.LIST``)."""
    items: list[dict[str, Any]] = []
    while True:
        page = await request(nc, subject, {**(payload or {}), "offset": len(items)}, what,
                             retry_for=retry_for)
        batch = page.get(key) or []
        items.extend(batch)
        if not batch or len(items) >= page.get("total", 0):
            return items
