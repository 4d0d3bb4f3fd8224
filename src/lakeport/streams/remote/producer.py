"""Producers of the ``http(s)://`` engine.

Payloads are checked and encoded on the caller's side, so a bad payload fails its own
``produce`` call only. Concurrent ``produce`` calls are coalesced: while one request is on
the wire, new messages queue up and leave together in the next batch request, in order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from lakeport.errors import Closed, Invalid, LakeportError, Unavailable
from lakeport.streams.base import Producer
from lakeport.streams.block import MessageBlock
from lakeport.streams.remote.wire import BLOCK_CONTENT_TYPE, ZSTD, block_body
from lakeport.streams.types import encode_payload, encode_payloads
from lakeport.wire import payload_to_json

if TYPE_CHECKING:
    from lakeport.streams.remote.engine import RemoteEngine

MAX_BATCH = 10_000  # messages in one coalesced request
MAX_BATCH_BYTES = 8 << 20


@dataclass(slots=True)
class _One:
    wire: bytes
    headers: dict[str, str] | None
    key: str | None
    msg_id: str | None
    future: asyncio.Future[int]


@dataclass(slots=True)
class _Many:
    wires: list[bytes]
    msg_ids: list[str] | None
    future: asyncio.Future[list[int]]


def batch_body(producer: str, wires: Sequence[bytes], *, msg_ids: Sequence[Any] | None = None,
               headers: Sequence[Any] | None = None, keys: Sequence[Any] | None = None) -> bytes:
    """The JSON body of ``POST /topics/{topic}/messages/batch``, payloads spliced in as is."""
    parts = [b'{"producer":', orjson.dumps(producer), b',"payloads":[', b",".join(wires), b"]"]
    for name, values in (("msg_ids", msg_ids), ("headers", headers), ("keys", keys)):
        if values is not None and any(v is not None for v in values):
            parts += [b',"', name.encode(), b'":', orjson.dumps(list(values))]
    parts.append(b"}")
    return b"".join(parts)


class RemoteProducer(Producer):
    engine: RemoteEngine

    async def _open_producer(self) -> None:
        self._path = self.engine.path(self.topic, "/messages/batch")
        self._queue: deque[_One | _Many] = deque()
        self._sender: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self._open:
            self._open = False
            sender = self._sender
            if sender is not None:
                # the outcome went to the futures; wait() does not raise it again
                await asyncio.wait([sender])

    def produce(self, payload: Any, *, headers: dict[str, str] | None = None,
                key: str | None = None, msg_id: str | None = None) -> Awaitable[int]:
        if not self._open:
            self._check_open()
        wire = payload_to_json(encode_payload(payload, self.format), self.format)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append(_One(wire, dict(headers) if headers else None, key, msg_id, future))
        self._kick()
        return future

    async def produce_many(self, payloads: Sequence[Any], *,
                           msg_ids: Sequence[str] | None = None) -> list[int]:
        self._check_open()
        data = encode_payloads(payloads, self.format)
        if msg_ids is not None and len(msg_ids) != len(data):
            raise Invalid("produce_many: msg_ids must have one id per payload")
        if not data:
            return []
        fmt = self.format
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Many([payload_to_json(d, fmt) for d in data],
                                 list(msg_ids) if msg_ids is not None else None, future))
        self._kick()
        return await future

    sent_bytes: int = 0
    """Bytes of ``produce_block`` bodies sent (compressed), for rates on the wire."""
    _last_block: asyncio.Future[None] | None = None

    async def produce_block(self, block: MessageBlock, *,
                            msg_ids: Sequence[str] | pa.Array | None = None) -> list[int]:
        """Send the block zstd-compressed as Arrow IPC; ``msg_ids`` may be an Arrow array.

        Calls may overlap: each block is compressed at once, but sent only after the block
        of the call before it was stored, one request at a time; if that one failed, this
        one fails too without being sent (so a later block is never stored without an
        earlier one)."""
        self._check_open()
        if msg_ids is not None and len(msg_ids) != len(block):
            raise Invalid(f"produce_block: msg_ids must have one id per message ({len(block)}), "
                          f"not {len(msg_ids)}")
        if not len(block):
            return []
        previous = self._last_block
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_retrieved)
        self._last_block = done
        try:
            body = await asyncio.to_thread(block_body, block, msg_ids)
            if previous is not None:
                try:
                    await asyncio.shield(previous)
                except Exception as exc:
                    raise Unavailable(f"not sent to topic {self.topic!r}: the block before "
                                      f"it failed: {exc}") from None
            sender = self._sender
            if sender is not None:  # messages produced before these are stored first
                await asyncio.wait([sender])
            self.sent_bytes += len(body)
            answer = await self.engine.request(
                "POST", self.engine.path(self.topic, "/messages/block"), content=body,
                headers={"content-type": BLOCK_CONTENT_TYPE, "content-encoding": ZSTD})
            seqnos = answer.get("seqnos") if isinstance(answer, dict) else None
            if not isinstance(seqnos, list) or len(seqnos) != len(block):
                raise Unavailable(f"unexpected answer from the lakeport server: {answer!r:.200}")
        except BaseException as exc:
            done.set_exception(exc if isinstance(exc, Exception) else Closed("cancelled"))
            raise
        done.set_result(None)
        return seqnos

    def _kick(self) -> None:
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_all())

    async def _send_all(self) -> None:
        queue = self._queue
        while queue:
            items: list[_One] | list[_Many]
            if isinstance(queue[0], _Many):
                many = queue.popleft()
                assert isinstance(many, _Many)
                items = [many]
            else:
                ones: list[_One] = []
                size = 0
                while queue and isinstance(queue[0], _One) and len(ones) < MAX_BATCH \
                        and size < MAX_BATCH_BYTES:
                    one = queue.popleft()
                    assert isinstance(one, _One)
                    ones.append(one)
                    size += len(one.wire)
                items = ones
            try:
                body = self._body(items)
            except Exception as exc:  # e.g. headers that are not JSON: fail these, go on
                _fail(items, Invalid(f"cannot send messages to topic {self.topic!r}: {exc}"))
                continue
            await self._send(body, items)

    def _body(self, items: list[_One] | list[_Many]) -> bytes:
        first = items[0]
        if isinstance(first, _Many):
            return batch_body(self.name, first.wires, msg_ids=first.msg_ids)
        ones: list[_One] = items  # type: ignore[assignment]
        return batch_body(self.name, [o.wire for o in ones], msg_ids=[o.msg_id for o in ones],
                          headers=[o.headers for o in ones], keys=[o.key for o in ones])

    async def _send(self, body: bytes, items: Sequence[_One | _Many]) -> None:
        try:
            answer = await self.engine.request("POST", self._path, content=body)
            seqnos = answer["seqnos"]
            first = items[0]
            expected = len(first.wires) if isinstance(first, _Many) else len(items)
            if not isinstance(seqnos, list) or len(seqnos) != expected:
                raise Unavailable(f"unexpected answer from the lakeport server: {answer!r:.200}")
        except BaseException as exc:
            if isinstance(exc, LakeportError):
                error: Exception = exc
            elif isinstance(exc, Exception):
                error = Unavailable(f"producing to topic {self.topic!r} failed: "
                                    f"{type(exc).__name__}: {exc}")
            else:
                error = Closed("producer was cancelled")
            _fail(items, error)
            if not isinstance(exc, Exception):
                raise
            return
        if len(items) == 1 and isinstance(items[0], _Many):
            if not items[0].future.done():
                items[0].future.set_result(seqnos)
            return
        for item, seqno in zip(items, seqnos, strict=True):
            if not item.future.done():
                item.future.set_result(seqno)


def _retrieved(future: asyncio.Future[None]) -> None:
    """Mark a block's outcome as seen (the next block's call reads it, if there is one)."""
    if not future.cancelled():
        future.exception()


def _fail(items: Sequence[_One | _Many], error: Exception) -> None:
    for item in items:
        if not item.future.done():
            item.future.set_exception(error)


__all__ = ["RemoteProducer", "batch_body"]
