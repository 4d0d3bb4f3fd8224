"""The HTTP core every sub-API uses: one ``httpx.AsyncClient``, typed errors, retries.

Transient failures (no connection, 502 / 503 / 504, a dropped or timed-out answer) are retried
with exponential backoff when a retry cannot do a request twice: always when the request never
left (connect errors), and after it was sent only for idempotent methods (GET, HEAD, PUT,
DELETE) or requests marked safe (a produce with a ``msg_id`` the server de-duplicates).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpcore
import httpx
import orjson

from lakeport import __version__
from lakeport.client.config import ClientConfig
from lakeport.client.errors import ApiUnavailable, ClientError, error_from_response
from lakeport.wire import API_PREFIX, TRANSIENT_STATUSES

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z

# httpcore reads at most 64 KB per call and splits each larger chunk the socket gave it,
# copying the rest every time; with 1 MB a download takes each chunk whole (1.5x faster).
READ_SIZE = 1 << 20

Body = bytes | AsyncIterator[bytes] | None
BodyFactory = Callable[[], Body]
Form = tuple[Mapping[str, str], Mapping[str, Any]]
"""A multipart form: (fields, files as httpx takes them)."""
FormFactory = Callable[[], Form]


def dump_json(value: Any) -> bytes:
    """JSON bytes of ``value`` (datetimes as ISO 8601 UTC, numpy values as numbers)."""
    try:
        return orjson.dumps(value, option=_JSON_OPTIONS)
    except TypeError as exc:
        from lakeport.errors import Invalid

        raise Invalid(f"cannot send as JSON: {exc}") from None


def as_time(value: datetime | str | int | float | None) -> str | int | None:
    """A time for a query or body: datetimes as ISO 8601 UTC (naive = UTC), else unchanged."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, float):
        return int(value)
    return value


def clean_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Query parameters without the unset (None) ones; lists repeat the parameter."""
    return {key: value for key, value in (params or {}).items() if value is not None}


class Http:
    """Requests to one server with one API key (an async context manager)."""

    def __init__(self, config: ClientConfig,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.url = config.url.rstrip("/")
        headers = {"user-agent": f"lakeport-client/{__version__}"}
        key = config.key()
        if key:
            headers["x-api-key"] = key
        timeout = httpx.Timeout(config.timeout, connect=config.connect_timeout)
        self.client = httpx.AsyncClient(base_url=self.url + API_PREFIX, headers=headers,
                                        timeout=timeout, transport=transport)
        if transport is None:
            _read_big_chunks(self.client)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                      json: Any = None, body: BodyFactory | None = None,
                      headers: Mapping[str, str] | None = None,
                      safe: bool | None = None, form: FormFactory | None = None
                      ) -> httpx.Response:
        """Send a request and read the whole answer; raise the typed error of an error answer.

        ``body`` makes the request body afresh for each attempt (bytes or an async iterator
        of chunks; a ``replayable`` attribute of False allows no retry once it was sent);
        ``json`` is sent as a JSON body; ``form`` makes a multipart form afresh for each
        attempt; ``safe`` says whether sending it twice does no harm (default: by method —
        GET, HEAD, PUT, DELETE yes; POST, PATCH no).
        """
        response = await self._send(method, path, params, json, body, headers, safe, False,
                                    form)
        await response.aread()
        if response.is_error:
            raise error_from_response(response, response.content)
        return response

    async def json(self, method: str, path: str, **options: Any) -> Any:
        """The decoded JSON answer of a request (None for an empty answer such as 204)."""
        response = await self.request(method, path, **options)
        return orjson.loads(response.content) if response.content else None

    @asynccontextmanager
    async def stream(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                     json: Any = None, body: BodyFactory | None = None,
                     headers: Mapping[str, str] | None = None,
                     safe: bool | None = None) -> AsyncIterator[httpx.Response]:
        """A response whose body is read as it arrives (``aiter_bytes``); closed on exit."""
        response = await self._send(method, path, params, json, body, headers, safe, True)
        try:
            if response.is_error:
                raise error_from_response(response, await response.aread())
            yield response
        finally:
            await response.aclose()

    async def _send(self, method: str, path: str, params: Mapping[str, Any] | None, json: Any,
                    body: BodyFactory | None, headers: Mapping[str, str] | None,
                    safe: bool | None, stream: bool, form: FormFactory | None = None
                    ) -> httpx.Response:
        method = method.upper()
        idempotent = method in IDEMPOTENT if safe is None else safe
        replayable = idempotent and getattr(body, "replayable", True)
        all_headers = dict(headers or {})
        content: Any = None
        if json is not None:
            content = dump_json(json)
            all_headers.setdefault("content-type", "application/json")
        attempt = 0
        while True:
            fields, files = form() if form is not None else (None, None)
            request = self.client.build_request(
                method, path, params=clean_params(params), headers=all_headers,
                content=body() if body is not None else content, data=fields, files=files)
            retry_after: float | None = None
            try:
                response = await self.client.send(request, stream=stream)
            except _NOT_SENT as exc:
                failure: ClientError = ApiUnavailable(
                    f"cannot reach the lakeport server at {self.url}: {_reason(exc)} (is "
                    "lakeport serve running there? --url or LAKEPORT_URL names another)",
                    status=0, code="unavailable")
                cause: Exception = exc
                can_retry = True
            except httpx.TimeoutException as exc:
                failure = ApiUnavailable(
                    f"no answer from {self.url} to {method} {request.url.path} within "
                    f"{self.config.timeout:g}s", status=0, code="timeout")
                cause, can_retry = exc, replayable
            except httpx.TransportError as exc:
                failure = ApiUnavailable(
                    f"connection to {self.url} broke during {method} {request.url.path}: "
                    f"{_reason(exc)}", status=0, code="unavailable")
                cause, can_retry = exc, replayable
            else:
                if (response.status_code not in TRANSIENT_STATUSES or not replayable
                        or attempt >= self.config.retries):
                    return response
                retry_after = _retry_after(response)
                await response.aclose()
                attempt += 1
                await asyncio.sleep(self._delay(attempt, retry_after))
                continue
            if not can_retry or attempt >= self.config.retries:
                raise failure from cause
            attempt += 1
            await asyncio.sleep(self._delay(attempt, retry_after))

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.config.max_backoff)
        base = min(self.config.backoff * 2 ** (attempt - 1), self.config.max_backoff)
        return base * (0.5 + random.random() / 2)


class _BigReads(httpcore.AsyncNetworkStream):
    """A connection that reads at least :data:`READ_SIZE` bytes per call."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max(max_bytes, READ_SIZE), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        return _BigReads(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _BigReadsBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, with connections that read :data:`READ_SIZE` at a time."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        return _BigReads(await self._backend.connect_tcp(
            host, port, timeout=timeout, local_address=local_address,
            socket_options=socket_options))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        return _BigReads(await self._backend.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def _read_big_chunks(client: httpx.AsyncClient) -> None:
    """Give this client's connections (direct and through proxies) the 1 MB read size, for
    this client only; httpx has no option for it, so its connection pools get a wrapped
    network backend (without them, as in another httpx version, reads stay at 64 KB)."""
    for transport in (client._transport, *client._mounts.values()):
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.AsyncNetworkBackend) and not isinstance(
                backend, _BigReadsBackend):
            pool._network_backend = _BigReadsBackend(backend)  # type: ignore[union-attr]


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return None


__all__ = ["READ_SIZE", "Body", "BodyFactory", "Http", "as_time", "clean_params",
           "dump_json"]
