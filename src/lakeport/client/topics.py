"""``client.topics``: the platform's topics over HTTP — list, create, inspect, delete, produce.

To consume (positions, modes, acks), open the topic engine at the server's URL:
``async with open_engine(client.topics.engine_url()) as engine: ...``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from lakeport.client.http import Http
from lakeport.client.results import ResultFormat, check_format, shape
from lakeport.client.transfer import quote_segment
from lakeport.streams.types import TopicOptions
from lakeport.wire import json_value

COLUMNS = ("name", "format", "entries", "bytes", "first_seqno", "last_seqno", "newest")


def _options(options: TopicOptions | Mapping[str, Any] | None,
             extra: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(options, TopicOptions):
        base = options.model_dump(mode="json", exclude_none=True)
    else:
        base = dict(options or {})
    merged = {**base, **{k: v for k, v in extra.items() if v is not None}}
    return TopicOptions(**merged).model_dump(mode="json", exclude_none=True)


class Topics:
    """Topics of the server's engine, over HTTP."""

    def __init__(self, http: Http) -> None:
        self._http = http

    def _path(self, topic: str) -> str:
        return f"/topics/{quote_segment(topic)}"

    def engine_url(self) -> str:
        """The ``http(s)://`` engine URL (with the API key) for ``lakeport.streams.open_engine``."""
        key = self._http.config.key()
        return self._http.url + (f"?{urlencode({'api_key': key})}" if key else "")

    async def list(self, *, format: ResultFormat = "json") -> Any:
        """Every topic with its format, size, seqno range and consumers."""
        check_format(format)
        answer = await self._http.json("GET", "/topics")
        return shape(answer["items"], format, COLUMNS if format == "table" else None)

    async def create(self, topic: str, options: TopicOptions | Mapping[str, Any] | None = None,
                     **option_values: Any) -> dict[str, Any]:
        """Create a topic (fine when it exists with the same options; Conflict when they
        differ), e.g. ``create("raw", max_age="7d")``; the topic's info."""
        return await self._http.json("PUT", self._path(topic),
                                     json=_options(options, option_values))

    async def info(self, topic: str, *, format: ResultFormat = "json") -> Any:
        """A topic's options, seqno range, entries, bytes, times and consumers."""
        check_format(format)
        return shape(await self._http.json("GET", self._path(topic)), format)

    async def delete(self, topic: str) -> None:
        """Delete a topic and its messages."""
        await self._http.request("DELETE", self._path(topic))

    async def produce(self, topic: str, payload: Any, *, headers: Mapping[str, str] | None = None,
                      key: str | None = None, msg_id: str | None = None,
                      producer: str | None = None) -> int:
        """Append one message; its seqno. With a ``msg_id`` a retried send is de-duplicated."""
        body: dict[str, Any] = {"payload": json_value(payload)}
        for name, value in (("headers", headers), ("key", key), ("msg_id", msg_id),
                            ("producer", producer)):
            if value is not None:
                body[name] = dict(value) if name == "headers" else value
        answer = await self._http.json("POST", f"{self._path(topic)}/messages", json=body,
                                       safe=msg_id is not None)
        return int(answer["seqno"])

    async def produce_batch(self, topic: str, payloads: Sequence[Any], *,
                            msg_ids: Sequence[str] | None = None,
                            producer: str | None = None) -> list[int]:
        """Append messages in order; their seqnos."""
        body: dict[str, Any] = {"payloads": [json_value(p) for p in payloads]}
        if msg_ids is not None:
            body["msg_ids"] = list(msg_ids)
        if producer is not None:
            body["producer"] = producer
        answer = await self._http.json("POST", f"{self._path(topic)}/messages/batch",
                                       json=body, safe=msg_ids is not None)
        return [int(seqno) for seqno in answer["seqnos"]]


__all__ = ["Topics"]
