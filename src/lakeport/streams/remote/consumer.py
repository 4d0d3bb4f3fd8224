"""Consumers of the ``http(s)://`` engine: one WebSocket each to the server's gateway.

The server holds a real consumer for the socket's lifetime (closing the socket frees its
locks) and answers request frames ``{"id", "op", ...}``; credits, filters, ack timeouts and
end markers stay here, in the base class.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import TYPE_CHECKING, Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from lakeport.errors import Closed, Unavailable
from lakeport.streams.base import Consumer
from lakeport.streams.block import MessageBlock
from lakeport.streams.remote.wire import Columns, position_to_json
from lakeport.streams.types import Format, Message
from lakeport.wire import read_error

if TYPE_CHECKING:
    from lakeport.streams.remote.engine import RemoteEngine

CLOSE_TIMEOUT = 10.0


class RemoteConsumer(Consumer):
    engine: RemoteEngine

    def __init__(self, engine: RemoteEngine, spec: Any) -> None:
        super().__init__(engine, spec)
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._pending: asyncio.Future[dict[str, Any]] | None = None  # a fetch on the wire
        self._leftover: Columns | None = None
        self._lost: Exception | None = None

    # -- the socket ------------------------------------------------------------------------
    async def _connect(self) -> ClientConnection:
        url = self.engine.ws_base + self.engine.path(self.topic, "/consume")
        try:
            return await connect(url, additional_headers=self.engine.headers, max_size=None,
                                 compression=None, open_timeout=30, ping_interval=20,
                                 ping_timeout=60, close_timeout=5)
        except InvalidStatus as exc:
            status = exc.response.status_code
            answer = read_error(exc.response.body or b"", status)
            raise answer.kind(answer.message or f"HTTP {status} on {url}") from None
        except (OSError, WebSocketException, TimeoutError) as exc:
            raise Unavailable(f"cannot reach the lakeport server at {self.engine.base_url}: "
                              f"{exc or type(exc).__name__}") from exc

    async def _read_loop(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                answer = orjson.loads(raw)
                future = self._waiting.pop(answer.get("id", -1), None)
                if future is not None and not future.done():
                    future.set_result(answer)
            self._lost = Closed(f"consumer {self.name!r} on topic {self.topic!r}: "
                                "the server closed the connection")
        except ConnectionClosed as exc:
            self._lost = Unavailable(f"connection to the lakeport server lost: {exc}")
        except Exception as exc:  # a broken frame: nothing more can be trusted
            self._lost = Unavailable(f"bad answer from the lakeport server: {exc}")
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(self._lost)

    def _send(self, frame: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        """Send a request; the future gets its answer frame."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if self._lost is not None or self._ws is None:
            future.set_exception(self._lost or Closed(f"consumer {self.name!r} is closed"))
            return future
        frame["id"] = request_id = next(self._ids)
        self._waiting[request_id] = future
        sending = asyncio.ensure_future(self._ws.send(orjson.dumps(frame).decode()))
        sending.add_done_callback(lambda done: self._sent(done, request_id))
        return future

    def _sent(self, done: asyncio.Future[None], request_id: int) -> None:
        if not done.cancelled() and done.exception() is not None:
            future = self._waiting.pop(request_id, None)
            if future is not None and not future.done():
                future.set_exception(Unavailable(f"cannot send to the lakeport server: "
                                                 f"{done.exception()}"))

    @staticmethod
    def _check(answer: dict[str, Any]) -> dict[str, Any]:
        if not answer.get("ok"):
            raise read_error(answer.get("error")).error()
        return answer

    async def _call(self, op: str, timeout: float | None = CLOSE_TIMEOUT * 6,
                    **fields: Any) -> dict[str, Any]:
        future = self._send({"op": op, **fields})
        try:
            answer = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise Unavailable(f"the lakeport server did not answer {op!r} in {timeout}s") from None
        return self._check(answer)

    # -- primitives ------------------------------------------------------------------------
    async def _open(self) -> int:
        ws = await self._connect()
        self._ws = ws
        self._reader = asyncio.get_running_loop().create_task(self._read_loop(ws))
        spec = self.spec
        try:
            answer = await self._call(
                "open", name=spec.name, mode=spec.mode.value,
                position=position_to_json(spec.position), ack_timeout=spec.ack_timeout,
                ephemeral=spec.ephemeral,
                on_no_exists="fail" if spec.on_no_exists == "wait" else spec.on_no_exists,
                options=None if spec.options is None else spec.options.model_dump(mode="json"),
            )
        except BaseException:
            await self._hang_up()
            raise
        self.format = Format(answer["format"])
        self._read_upto = answer["read_upto"]
        return answer["acked"]

    async def _fetch_columns(self, max_n: int, timeout: float | None) -> Columns:
        leftover = self._leftover
        if leftover is not None and len(leftover):
            head, self._leftover = leftover.split(max_n)
            return head
        pending = self._pending
        if pending is None:
            pending = self._pending = self._send({"op": "fetch", "max_n": max_n,
                                                  "timeout": timeout})
        try:
            # a cancelled caller leaves the fetch pending: its messages go to the next call
            answer = await asyncio.shield(pending)
        finally:
            if pending.done():
                self._pending = None
        self._check(answer)
        self._acked = max(self._acked, answer["acked"])
        columns = Columns(answer["messages"], self.format)
        if len(columns) > max_n:
            columns, self._leftover = columns.split(max_n)
        return columns

    async def _fetch(self, max_n: int, timeout: float | None) -> list[Message]:
        return (await self._fetch_columns(max_n, timeout)).messages()

    async def _fetch_block(self, max_n: int, timeout: float | None) -> MessageBlock:
        return (await self._fetch_columns(max_n, timeout)).block()

    async def _ack(self, seqno: int) -> None:
        await self._call("ack", seqno=seqno)

    async def _rewind(self, seqno: int) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(pending)  # fetched before the rewind: dropped
        self._leftover = None
        await self._call("rewind", seqno=seqno)

    async def _last_seqno(self) -> int:
        return (await self._call("last_seqno"))["seqno"]

    async def lag(self) -> int:
        return (await self._call("lag"))["lag"]

    async def _close(self) -> None:
        if self._ws is not None and self._lost is None:
            with contextlib.suppress(Exception):
                await self._call("close", timeout=CLOSE_TIMEOUT)
        await self._hang_up()

    async def _hang_up(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(reader, CLOSE_TIMEOUT)
        pending, self._pending = self._pending, None
        if pending is not None:
            if not pending.done():
                pending.cancel()
            elif not pending.cancelled():
                pending.exception()  # an abandoned fetch's error is of no interest now


__all__ = ["RemoteConsumer"]
