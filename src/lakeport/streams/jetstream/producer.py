"""Producer of the ``nats://`` engine: pipelined JetStream publishes.

Every message is published with a reply subject under one inbox of the producer; the
server's PubAck (``{"stream", "seq", "duplicate"}``) resolves that message's future. Many
publishes are in flight at once (up to ``MAX_IN_FLIGHT``), so throughput is not bound by
the round trip of each message.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Sequence
from typing import Any

import orjson
from nats.aio.msg import Msg

from lakeport.errors import Closed, Invalid, NotFound, Unavailable
from lakeport.streams.base import Producer
from lakeport.streams.jetstream import api
from lakeport.streams.jetstream.codec import message_headers, topic_subject
from lakeport.streams.types import encode_payload

MAX_IN_FLIGHT = 20_000
ACK_TIMEOUT = 10.0


class _Batch:
    """Messages published together; its future resolves when every PubAck arrived."""

    __slots__ = ("deadline", "future", "remaining", "seqnos", "single")

    def __init__(self, size: int, single: bool) -> None:
        self.seqnos = [0] * size
        self.remaining = size
        self.single = single
        self.deadline = 0.0
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def resolve(self, index: int, seqno: int) -> None:
        self.seqnos[index] = seqno
        self.remaining -= 1
        if self.remaining == 0 and not self.future.done():
            self.future.set_result(self.seqnos[0] if self.single else self.seqnos)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class JetStreamProducer(Producer):
    """Publishes to the topic's subject; ``produce`` returns a future of the seqno."""

    engine: Any  # JetStreamEngine

    async def _open_producer(self) -> None:
        info = await self.engine.ensure_topic(self.topic, "fail", None)
        self._dedup = info.options.dedup_window > 0
        self._subject = topic_subject(self.topic)
        self._nc = self.engine.nc
        self._inbox = self._nc.new_inbox() + "."
        self._tokens = itertools.count()
        self._pending: dict[str, tuple[_Batch, int]] = {}
        self._queue: deque[tuple[_Batch, Any, Any]] = deque()
        self._room = asyncio.Event()
        self._room.set()
        self._pump: asyncio.Task[None] | None = None
        self._sub = await self._nc.subscribe(self._inbox + "*", cb=self._on_ack)
        self._janitor = asyncio.create_task(self._expire_loop())

    async def close(self) -> None:
        if not self._open:
            return
        self._open = False
        try:
            if self._pump is not None:
                await self._pump
            batches = {id(b): b.future for b, _ in self._pending.values()}
            if batches:
                await asyncio.wait(batches.values(), timeout=ACK_TIMEOUT)
        finally:
            self._janitor.cancel()
            try:
                await self._sub.unsubscribe()
            except Exception:
                pass

    # -- acks --------------------------------------------------------------------------
    async def _on_ack(self, msg: Msg) -> None:
        entry = self._pending.pop(msg.subject[len(self._inbox):], None)
        if len(self._pending) < MAX_IN_FLIGHT // 2:
            self._room.set()
        if entry is None:
            return
        batch, index = entry
        if not msg.data:  # a status: 503 no responders means the stream is gone
            batch.fail(NotFound(f"topic {self.topic!r} does not exist"))
            return
        response = orjson.loads(msg.data)
        error = response.get("error")
        if error:
            batch.fail(api.error_from_response(error, f"topic {self.topic!r}"))
        else:
            batch.resolve(index, response["seq"])

    async def _expire_loop(self) -> None:
        """Fail publishes that the server has not confirmed within ``ACK_TIMEOUT``."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for token, (batch, _) in list(self._pending.items()):
                if batch.deadline > now:
                    break
                del self._pending[token]
                batch.fail(Unavailable(
                    f"NATS did not confirm a message on topic {self.topic!r} "
                    f"within {ACK_TIMEOUT:g}s"
                ))
            if len(self._pending) < MAX_IN_FLIGHT // 2:
                self._room.set()

    # -- publishing --------------------------------------------------------------------
    def _enqueue(self, data: bytes | list[bytes],
                 headers: list[dict[str, str]] | dict[str, str]) -> asyncio.Future[Any]:
        """Queue one message (``bytes``) or a batch (a list) for the publishing task."""
        single = type(data) is bytes
        batch = _Batch(1 if single else len(data), single)
        if single or data:
            self._queue.append((batch, data, headers))
            if self._pump is None or self._pump.done():
                self._pump = asyncio.create_task(self._publish_queued())
        else:
            batch.future.set_result([])
        return batch.future

    async def _publish_queued(self) -> None:
        nc, subject, inbox, pending = self._nc, self._subject, self._inbox, self._pending
        tokens, queue = self._tokens, self._queue
        while queue:
            batch, data, headers = queue.popleft()
            batch.deadline = time.monotonic() + ACK_TIMEOUT
            if type(data) is bytes:  # one message from produce()
                items: Any = ((0, data),)
            else:
                items = enumerate(data)
            same = headers if isinstance(headers, dict) else None
            for index, payload in items:
                while len(pending) >= MAX_IN_FLIGHT:
                    self._room.clear()
                    await self._room.wait()
                token = str(next(tokens))
                pending[token] = (batch, index)
                try:
                    await nc.publish(subject, payload, reply=inbox + token,
                                     headers=same or headers[index])  # type: ignore[index]
                except Exception as exc:
                    pending.pop(token, None)
                    batch.fail(api.translate(exc, f"cannot publish to topic {self.topic!r}"))
                    break

    def _headers(self, headers: dict[str, str] | None, key: str | None,
                 msg_id: str | None) -> dict[str, str]:
        return message_headers(self.name, headers, key, msg_id if self._dedup else None)

    def produce(self, payload: Any, *, headers: dict[str, str] | None = None,
                key: str | None = None, msg_id: str | None = None) -> Awaitable[int]:
        self._check_open()
        data = encode_payload(payload, self.format)
        return self._enqueue(data, self._headers(headers, key, msg_id))

    async def produce_many(self, payloads: Sequence[Any], *,
                           msg_ids: Sequence[str] | None = None) -> list[int]:
        self._check_open()
        fmt = self.format
        encoded = [encode_payload(p, fmt) for p in payloads]
        if msg_ids is not None and len(msg_ids) != len(encoded):
            raise Invalid(f"produce_many got {len(encoded)} payloads but {len(msg_ids)} msg_ids")
        headers: list[dict[str, str]] | dict[str, str]
        if msg_ids is None or not self._dedup:
            headers = self._headers(None, None, None)
        else:
            headers = [self._headers(None, None, msg_id) for msg_id in msg_ids]
        return await self._enqueue(encoded, headers)

    def _check_open(self) -> None:
        super()._check_open()
        if self._nc.is_closed:
            raise Closed(f"producer {self.name!r} on topic {self.topic!r}: NATS connection closed")
