"""``WS /topics/{topic}/consume``: a consumer on the server's engine per WebSocket.

The first client frame opens the consumer (``{"id", "op": "open", "name", "mode", "position",
"ack_timeout", "ephemeral", "on_no_exists", "options"}``); then each request frame ``{"id",
"op", ...}`` gets one answer ``{"id", "ok": true, ...}`` or ``{"id", "ok": false, "error":
{"code", "message"}}``. A fetch waits in the background, so acks are answered meanwhile.
Closing the socket closes the consumer and frees what it held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import numpy as np
import pyarrow.compute as pc
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from lakeport.errors import Conflict, Invalid, LakeportError, NotFound
from lakeport.server.access import Level, require
from lakeport.server.topics.access import (
    KIND,
    claim_topic,
    engine_consumer_name,
    topic_level,
    user_consumer_name,
)
from lakeport.server.topics.socket_base import FrameSession
from lakeport.streams import Consumer, TopicOptions
from lakeport.streams.block import MessageBlock
from lakeport.streams.remote.wire import block_to_json, position_from_json

router = APIRouter(tags=["topics"])
log = logging.getLogger("lakeport.server")

MAX_FETCH = 100_000
MAX_WAIT = 30.0
OPS = "fetch, ack, rewind, last_seqno, lag, info or close"


def _number(frame: dict[str, Any], name: str, low: float, high: float,
            default: float | None = None) -> float | None:
    value = frame.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
        raise Invalid(f"{name}: must be a number >= {low}")
    return min(value, high)


def _seqno(frame: dict[str, Any]) -> int:
    seqno = frame.get("seqno")
    if isinstance(seqno, bool) or not isinstance(seqno, int) or seqno < 0:
        raise Invalid("seqno: must be an integer >= 0")
    return seqno


class Session(FrameSession):
    """One consuming WebSocket."""

    def __init__(self, websocket: WebSocket, topic: str) -> None:
        super().__init__(websocket)
        self.topic = topic
        self.consumer: Consumer | None = None
        self.fetching: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self) -> None:
        if not await self.authenticate():
            return
        try:
            first = await self.receive()
            if first is None:
                return
            try:
                consumer = await self.open(first)
            except LakeportError as exc:
                await self.fail(first.get("id", 0), exc)
                await self.ws.close(1000)
                return
            await self.reply(first.get("id", 0), acked=consumer.acked,
                             read_upto=consumer.position - 1, format=consumer.format.value)
            while (frame := await self.receive()) is not None:
                if not await self.handle(frame):
                    break
        except WebSocketDisconnect:
            pass
        finally:
            await self.shutdown()

    async def open(self, spec: dict[str, Any]) -> Consumer:
        options = spec.get("options")
        try:
            topic_options = None if options is None else TopicOptions.model_validate(options)
        except ValidationError as exc:
            raise Invalid(f"options: {exc.errors()[0]['msg']}") from None
        ephemeral = spec.get("ephemeral", False)
        if not isinstance(ephemeral, bool):
            raise Invalid("ephemeral: must be true or false")
        name = engine_consumer_name(self.user, spec.get("name"))
        await self.authorize(spec.get("on_no_exists"), topic_options)
        consumer = self.engine.consumer(
            name,  # type: ignore[arg-type]
            self.topic,
            mode=spec.get("mode", "exclusive"),
            position=position_from_json(spec.get("position", "unread")),
            ack_timeout=_number(spec, "ack_timeout", 0.001, 1e9),
            on_no_exists=spec.get("on_no_exists", "fail"),
            options=topic_options,
            ephemeral=ephemeral,
        )
        await consumer.open()
        self.consumer = consumer
        return consumer

    async def authorize(self, on_no_exists: Any, options: TopicOptions | None) -> None:
        """Read access to the topic is required; a missing topic opened with
        ``on_no_exists: create`` is created here and belongs to the caller."""
        store = self.ws.app.state.store
        level = await topic_level(store, self.user, self.topic)
        if level >= Level.READ or on_no_exists != "create":
            require(level, Level.READ, KIND, self.topic, "consume")
            return
        try:
            await self.engine.create_topic(self.topic, options or TopicOptions())
        except Conflict:  # it exists and is not the caller's
            raise NotFound(f"unknown topic {self.topic!r}") from None
        await claim_topic(store, self.topic, self.user.id, fresh=True)

    async def shutdown(self) -> None:
        fetching, self.fetching = self.fetching, None
        if fetching is not None:
            fetching.cancel()
            with contextlib.suppress(BaseException):
                await fetching
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            try:
                await consumer.close()
            except Exception:
                log.exception("closing the consumer of a WebSocket failed")

    # -- requests --------------------------------------------------------------------------
    async def handle(self, frame: dict[str, Any]) -> bool:
        """Answer one request; False once the client asked to close."""
        consumer = self.consumer
        assert consumer is not None
        op, request_id = frame.get("op"), frame.get("id")
        try:
            if op == "fetch":
                if self.fetching is not None and not self.fetching.done():
                    raise Invalid("a fetch is already running on this consumer")
                max_n = int(_number(frame, "max_n", 1, MAX_FETCH, 1000) or 1000)
                cap = self.ws.app.state.settings.max_fetch_bytes
                max_bytes = int(_number(frame, "max_bytes", 1, cap, cap) or cap)
                timeout = _number(frame, "timeout", 0, MAX_WAIT, MAX_WAIT)
                self.fetching = asyncio.create_task(
                    self.fetch(request_id, max_n, max_bytes, timeout))
            elif op == "ack":
                await consumer.ack(_seqno(frame))
                await self.reply(request_id, acked=consumer.acked)
            elif op == "rewind":
                seqno = _seqno(frame)
                if self.fetching is not None:
                    with contextlib.suppress(BaseException):
                        await self.fetching
                self.leftover = None  # fetched before the rewind: delivered again after it
                await consumer._rewind(seqno)
                await self.reply(request_id)
            elif op == "last_seqno":
                await self.reply(request_id, seqno=await consumer._last_seqno())
            elif op == "lag":
                await self.reply(request_id, lag=await consumer.lag())
            elif op == "info":
                info = vars(await consumer.info())
                info["name"] = user_consumer_name(self.user, info["name"])
                await self.reply(request_id, info=info)
            elif op == "close":
                await self.shutdown()
                await self.reply(request_id)
                await self.ws.close(1000)
                return False
            else:
                raise Invalid(f"unknown op {op!r}: use {OPS}")
        except LakeportError as exc:
            await self.fail(request_id, exc)
        return True

    # -- fetching ---------------------------------------------------------------------------
    leftover: MessageBlock | None = None
    """Messages read from the engine that did not fit in the last reply: the next ones."""
    largest: int | None = None
    """The largest payload of the last engine read (before the first: the topic's average
    size, 0 when unknown; None until asked)."""

    async def fetch(self, request_id: Any, max_n: int, max_bytes: int,
                    timeout: float | None) -> None:
        """Answer a fetch with at most ``max_n`` messages and ``max_bytes`` payload bytes
        (one message however large), once the previous reply has left the server."""
        consumer = self.consumer
        assert consumer is not None
        try:
            await self.writable()  # a client that does not read holds one reply at most
            block = await self._take(consumer, max_n, max_bytes, timeout)
            await self.reply(request_id, acked=consumer.acked, messages=block_to_json(block))
        except LakeportError as exc:
            await self.fail(request_id, exc)
        except Exception as exc:
            await self.fail_internal(request_id, f"fetch on topic {self.topic!r}", exc)

    async def _take(self, consumer: Consumer, max_n: int, max_bytes: int,
                    timeout: float | None) -> MessageBlock:
        """The next messages within the bounds: from the leftover, else from the engine,
        asking for as many as fit if they are as large as the largest of the last read (the
        topic's average size before the first)."""
        block = self.leftover
        if block is None:
            if self.largest is None:
                self.largest = 0
                with contextlib.suppress(LakeportError):  # the fetch says what is wrong
                    info = await self.engine.topic_info(self.topic)
                    self.largest = info.bytes // info.entries if info.entries else 0
            want = max(1, min(max_n, max_bytes // self.largest)) if self.largest else max_n
            block = await consumer._fetch_block(want, timeout)
            if len(block):
                self.largest = max(1, int(pc.max(pc.binary_length(block.data)).as_py()))
        sizes = pc.binary_length(block.data).to_numpy()
        fits = int(np.searchsorted(np.cumsum(sizes), max_bytes, side="right"))
        cut = max(1, min(fits, max_n))
        if cut >= len(block):
            self.leftover = None
            return block
        self.leftover = block.slice(cut)
        return block.slice(0, cut)


@router.websocket("/topics/{topic}/consume")
async def consume(websocket: WebSocket, topic: str) -> None:
    """Consume a topic: see docs/server/topics.md for the frames."""
    await websocket.accept()
    await Session(websocket, topic).run()


__all__ = ["Session", "router"]
