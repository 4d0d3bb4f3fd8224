"""``http(s)://host:port`` — topics of a running lakeport server.

Admin and produce go over HTTP (one keep-alive connection pool per engine), consumers over
one WebSocket each. The API key comes from the URL (``?api_key=lpk_...``), else from
``LAKEPORT_API_KEY``.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import orjson

from lakeport.errors import Invalid, Unavailable
from lakeport.streams.base import Consumer, ConsumerSpec, Engine, Producer
from lakeport.streams.remote.wire import info_from_json
from lakeport.streams.types import OnNoExists, TopicInfo, TopicOptions, validate_topic_name
from lakeport.wire import API_PREFIX, read_error


class RemoteEngine(Engine):
    """The topics of a lakeport server, used exactly like a local engine."""

    scheme = "http"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise Invalid(f"bad server URL {self._safe(url)!r}: use http://host:port")
        query = parse_qs(parts.query)
        self.api_key: str | None = (query.get("api_key") or [None])[0] \
            or os.environ.get("LAKEPORT_API_KEY")
        self.base_url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        ws_scheme = "wss" if parts.scheme == "https" else "ws"
        self.ws_base = f"{ws_scheme}://{parts.netloc}{parts.path.rstrip('/')}{API_PREFIX}"
        self._http: httpx.AsyncClient | None = None

    @staticmethod
    def _safe(url: str) -> str:
        return url.split("?", 1)[0]

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key} if self.api_key else {}

    # -- HTTP ------------------------------------------------------------------------------
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.base_url + API_PREFIX, headers=self.headers,
                timeout=httpx.Timeout(120.0, connect=10.0),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            )
        return self._http

    async def connect(self) -> None:
        """Check the server and the key now, so a wrong URL or key fails on opening the
        engine rather than at its first use."""
        try:
            await self.request("GET", "/me")
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._http is not None:
            client, self._http = self._http, None
            await client.aclose()

    async def request(self, method: str, path: str, *, content: bytes | None = None,
                      params: dict[str, str] | None = None,
                      headers: dict[str, str] | None = None) -> Any:
        """Send one request; the decoded JSON answer, or the matching lakeport error.
        A body is JSON unless ``headers`` say otherwise."""
        if content is not None:
            headers = {"content-type": "application/json", **(headers or {})}
        try:
            answer = await self.http().request(method, path, content=content, params=params,
                                               headers=headers)
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach the lakeport server at {self.base_url}: "
                              f"{exc or type(exc).__name__}") from exc
        if answer.is_error:
            raise read_error(answer.content, answer.status_code).error()
        if not answer.content:
            return None
        try:
            return orjson.loads(answer.content)
        except orjson.JSONDecodeError:
            raise Unavailable(f"unexpected answer from the lakeport server at {self.base_url} "
                              f"to {method} {path}: {answer.text[:200]!r}") from None

    @staticmethod
    def path(topic: str, suffix: str = "") -> str:
        return f"/topics/{quote(validate_topic_name(topic), safe='')}{suffix}"

    # -- topics ----------------------------------------------------------------------------
    async def create_topic(self, name: str, options: TopicOptions | None = None, *,
                           exist_ok: bool = False) -> TopicInfo:
        body = (options or TopicOptions()).model_dump_json().encode()
        record = await self.request("PUT", self.path(name), content=body,
                                    params={"if_exists": "ok" if exist_ok else "fail"})
        return info_from_json(record)

    async def delete_topic(self, name: str) -> None:
        await self.request("DELETE", self.path(name))

    async def topic_info(self, name: str) -> TopicInfo:
        return info_from_json(await self.request("GET", self.path(name)))

    async def list_topics(self) -> list[TopicInfo]:
        answer = await self.request("GET", "/topics")
        return [info_from_json(item) for item in answer["items"]]

    async def last_msg_id(self, topic: str, producer: str | None, prefix: str,
                          limit: int = 1_000_000) -> str | None:
        """The server engine's answer (see the embedded engine's ``last_msg_id``); needs
        produce access to the topic."""
        params = {"prefix": prefix, "limit": str(limit)}
        if producer is not None:
            params["producer"] = producer
        answer = await self.request("GET", self.path(topic, "/msg-ids/last"), params=params)
        return answer["msg_id"]

    def _make_producer(self, name: str, topic: str, on_no_exists: OnNoExists,
                       options: TopicOptions | None) -> Producer:
        from lakeport.streams.remote.producer import RemoteProducer

        return RemoteProducer(self, name, topic, on_no_exists, options)

    def _make_consumer(self, spec: ConsumerSpec) -> Consumer:
        from lakeport.streams.remote.consumer import RemoteConsumer

        return RemoteConsumer(self, spec)


__all__ = ["RemoteEngine"]
