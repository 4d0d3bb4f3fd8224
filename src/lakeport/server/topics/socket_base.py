"""What every topic WebSocket shares: the caller's user, JSON frames in and out, and the error
frame ``{"id", "ok": false, "error": {"code", "message"}}`` (the socket stays open)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from fastapi import WebSocket

from lakeport.errors import Invalid, LakeportError
from lakeport.server.auth import websocket_user
from lakeport.server.protocols import WRITABLE
from lakeport.server.store.users import User
from lakeport.server.topics.access import user_message
from lakeport.streams import Engine
from lakeport.wire import answer_for

log = logging.getLogger("lakeport.server")

INTERNAL = {"code": "internal", "message": "internal server error"}


class FrameSession:
    """One topic WebSocket: its user, and JSON frames sent one at a time."""

    def __init__(self, websocket: WebSocket) -> None:
        self.ws = websocket
        self.engine: Engine = websocket.app.state.engine
        self.user: User = User(0, "")
        self._send_lock = asyncio.Lock()
        self.frame_bytes = 0
        """The size of the last frame received (its text as sent)."""

    async def authenticate(self) -> bool:
        """Find the caller's user; on a bad key answer the error, close (1008) and say False."""
        try:
            self.user = await websocket_user(self.ws)
        except LakeportError as exc:
            await self.fail(0, exc)
            await self.ws.close(1008)
            return False
        return True

    async def send(self, frame: dict[str, Any]) -> None:
        text = orjson.dumps(frame).decode()
        async with self._send_lock:
            await self.ws.send_text(text)

    async def writable(self) -> None:
        """Wait until the previous frames have left the server (a client that does not read
        holds the sender here rather than frames piling up in memory)."""
        writable = self.ws.scope.get("extensions", {}).get(WRITABLE)
        if writable is not None:
            await writable["wait"]()

    async def reply(self, request_id: Any, **fields: Any) -> None:
        await self.send({"id": request_id, "ok": True, **fields})

    async def fail(self, request_id: Any, exc: LakeportError) -> None:
        message = user_message(self.user, str(exc))
        await self.send({"id": request_id, "ok": False,
                         "error": {"code": answer_for(exc).code, "message": message}})

    async def fail_internal(self, request_id: Any, doing: str, exc: BaseException) -> None:
        """Answer an unexpected error without its details (they go to the log)."""
        log.error("%s failed", doing, exc_info=exc)
        await self.send({"id": request_id, "ok": False, "error": INTERNAL})

    async def receive(self) -> dict[str, Any] | None:
        """The next request frame; None once the client hung up. A frame that is no JSON
        object is answered with an error (id null) and skipped."""
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return None
            raw = message.get("text") or message.get("bytes") or b""
            self.frame_bytes = len(raw)
            try:
                frame = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                await self.fail(None, Invalid(f"frame is not valid JSON: {exc}"))
                continue
            if isinstance(frame, dict):
                return frame
            await self.fail(None, Invalid("a frame must be a JSON object"))


__all__ = ["FrameSession"]
