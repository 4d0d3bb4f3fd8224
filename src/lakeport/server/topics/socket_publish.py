"""``WS /topics/{topic}/publish``: produce to a topic over one WebSocket.

Each frame ``{"id", "op": "publish", "messages": [...], "msg_ids", "keys", "headers"}`` is
answered, in the order the frames came, with ``{"id", "ok": true, "seqnos": [...]}`` once its
messages are durable (one commit per frame, as ``POST /topics/{topic}/messages/batch``), or
with ``{"id", "ok": false, "error": {"code", "message"}}``; the socket stays open either way.
Produce access to the topic is checked when the socket opens and again for every frame.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from lakeport.errors import Invalid, LakeportError, TooLarge
from lakeport.server.access import Level
from lakeport.server.topics.access import require_topic
from lakeport.server.topics.routes import produce_batch_to, read_batch
from lakeport.server.topics.socket_base import FrameSession
from lakeport.streams.types import validate_topic_name

router = APIRouter(tags=["topics"])

MAX_MESSAGES = 100_000
"""Messages in one publish frame at most."""


class Publisher(FrameSession):
    """One publishing WebSocket."""

    def __init__(self, websocket: WebSocket, topic: str) -> None:
        super().__init__(websocket)
        self.topic = topic
        self.max_bytes: int = websocket.app.state.settings.max_body_bytes

    async def allowed(self) -> None:
        """Produce access to the topic, as ``POST /topics/{topic}/messages`` needs it."""
        validate_topic_name(self.topic)
        await require_topic(self.ws.app.state.store, self.user, self.topic, Level.WRITE,
                            "produce to")

    async def run(self) -> None:
        if not await self.authenticate():
            return
        try:
            try:
                await self.allowed()
            except LakeportError as exc:
                await self.fail(0, exc)
                await self.ws.close(1008)
                return
            while (frame := await self.receive()) is not None:
                await self.handle(frame)
        except WebSocketDisconnect:
            pass

    async def handle(self, frame: dict[str, Any]) -> None:
        """Answer one frame (errors included: the socket stays open)."""
        request_id = frame.get("id")
        try:
            seqnos = await self.publish(frame)
        except LakeportError as exc:
            await self.fail(request_id, exc)
        except Exception as exc:
            await self.fail_internal(request_id, f"publish to topic {self.topic!r}", exc)
        else:
            await self.reply(request_id, seqnos=seqnos)

    async def publish(self, frame: dict[str, Any]) -> list[int]:
        op = frame.get("op")
        if op != "publish":
            raise Invalid(f"unknown op {op!r}: use publish")
        if self.frame_bytes > self.max_bytes:
            raise TooLarge(f"frame of {self.frame_bytes} characters is over the limit "
                           f"{self.max_bytes} bytes (max_body_bytes, lakeport serve --max-body)")
        messages = frame.get("messages")
        if isinstance(messages, list) and len(messages) > MAX_MESSAGES:
            raise TooLarge(f"messages: {len(messages)} in one frame, at most {MAX_MESSAGES}")
        headers = frame.get("headers")
        if isinstance(headers, dict) and isinstance(messages, list):
            frame = {**frame, "headers": [headers] * len(messages)}  # the same for every one
        batch = read_batch(frame, "messages", self.user)
        await self.allowed()  # a grant taken back ends publishing at once
        if not batch.payloads:
            return []
        return await produce_batch_to(self.ws.app.state.topic_producers, self.topic, batch)


@router.websocket("/topics/{topic}/publish")
async def publish(websocket: WebSocket, topic: str) -> None:
    """Publish to a topic: see docs/server/topics.md for the frames."""
    await websocket.accept()
    await Publisher(websocket, topic).run()


__all__ = ["MAX_MESSAGES", "Publisher", "router"]
