"""Producer of the ``nats://`` engine: pipelined JetStream publishes.

Every message is published with a reply subject under one inbox of the producer; the
server's PubAck (``{"stream", "seq", "duplicate"}``) resolves that message's future. Many
publishes are in flight at once (up to ``MAX_IN_FLIGHT``), so throughput is not bound by
the round trip of each message.

Failover: while a cluster elects a new stream leader, publishes are answered "no
responders" or not at all. Such messages are published again, in their first order and
with the same ``Nats-Msg-Id``, with a growing pause, until the engine's
``failover_timeout``; then they fail with Unavailable. A message that was never confirmed
may have been stored, so it is only sent again when it has a msg id: on a replicated topic
(``replicas`` above 1) every message gets one (the caller's, else ``<producer id>-<n>``),
so the retry cannot store it twice.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Sequence
from typing import Any

import orjson
from nats.aio.msg import Msg

from lakeport.errors import Closed, Invalid, NotFound, Transient, Unavailable
from lakeport.streams.base import Producer
from lakeport.streams.block import MessageBlock, block_payloads
from lakeport.streams.jetstream import api
from lakeport.streams.jetstream.codec import MSG_ID_HEADER, message_headers, topic_subject
from lakeport.streams.types import encode_payload

MAX_IN_FLIGHT = 20_000
ACK_TIMEOUT = 10.0  # seconds: a message without a msg id fails when unconfirmed this long
RESEND_AFTER = 1.5  # seconds: a message with a msg id is sent again when unconfirmed this long
RETRY_FIRST = 0.05  # seconds before the first retry during a failover, doubled up to
RETRY_MAX = 1.0
ORIGINAL_TIME_HEADER = "lakeport-original-time"
"""Where ``produce_block`` keeps a message's own time (JetStream stamps its own)."""


class _Batch:
    """Messages published together; its future resolves when every PubAck arrived."""

    __slots__ = ("deadline", "failover_ends", "future", "remaining", "seqnos", "single")

    def __init__(self, size: int, single: bool) -> None:
        self.seqnos = [0] * size
        self.remaining = size
        self.single = single
        self.deadline = 0.0
        self.failover_ends = 0.0  # when retries give up (set by the first retry)
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def resolve(self, index: int, seqno: int) -> None:
        self.seqnos[index] = seqno
        self.remaining -= 1
        if self.remaining == 0 and not self.future.done():
            self.future.set_result(self.seqnos[0] if self.single else self.seqnos)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class _Pending:
    """One published message waiting for its PubAck."""

    __slots__ = ("batch", "headers", "index", "msg_id", "payload", "token")

    def __init__(self, token: int, batch: _Batch, index: int, payload: bytes,
                 headers: dict[str, str]) -> None:
        self.token = token
        self.batch = batch
        self.index = index
        self.payload = payload
        self.headers = headers
        self.msg_id = MSG_ID_HEADER in headers

    def __lt__(self, other: _Pending) -> bool:
        return self.token < other.token


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
        self._pending: dict[str, _Pending] = {}
        self._retry: list[_Pending] = []  # a heap by token: first published, first again
        self._retrier: asyncio.Task[None] | None = None
        replicated = (info.options.replicas or 1) > 1
        self._auto_ids = self._dedup and replicated
        self._id_prefix = f"{self.name}-{uuid.uuid4().hex[:12]}-"
        self._ids = itertools.count(1)
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
            batches = {id(p.batch): p.batch.future
                       for p in [*self._pending.values(), *self._retry]}
            if batches:
                timeout = ACK_TIMEOUT + self.engine.failover_timeout
                await asyncio.wait(batches.values(), timeout=timeout)
        finally:
            self._janitor.cancel()
            if self._retrier is not None:
                self._retrier.cancel()
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
        if not msg.data:  # a status: 503 no responders (no stream, or no leader right now)
            self._again(entry)
            return
        response = orjson.loads(msg.data)
        error = response.get("error")
        if error:
            failure = api.error_from_response(error, f"topic {self.topic!r}")
            if isinstance(failure, Transient):
                self._again(entry)
            else:
                entry.batch.fail(failure)
        else:
            entry.batch.resolve(entry.index, response["seq"])

    async def _expire_loop(self) -> None:
        """Fail publishes that the server has not confirmed within ``ACK_TIMEOUT``."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for token, entry in list(self._pending.items()):
                if entry.batch.deadline > now:
                    break
                del self._pending[token]
                if entry.msg_id:  # sending it again cannot store it twice
                    self._again(entry)
                else:
                    entry.batch.fail(Unavailable(
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
        queue = self._queue
        while queue:
            batch, data, headers = queue.popleft()
            batch.deadline = time.monotonic() + self._ack_wait(headers)
            if type(data) is bytes:  # one message from produce()
                items: Any = ((0, data),)
            else:
                items = enumerate(data)
            same = headers if isinstance(headers, dict) else None
            for index, payload in items:
                entry = _Pending(next(self._tokens), batch, index, payload,
                                 same or headers[index])  # type: ignore[index]
                if not await self._publish(entry):
                    break

    async def _publish(self, entry: _Pending) -> bool:
        """Send one message; False (and its batch failed) if the connection refused it."""
        pending = self._pending
        while len(pending) >= MAX_IN_FLIGHT:
            self._room.clear()
            await self._room.wait()
        token = str(entry.token)
        pending[token] = entry
        try:
            await self._nc.publish(self._subject, entry.payload, reply=self._inbox + token,
                                   headers=entry.headers)
        except Exception as exc:
            pending.pop(token, None)
            entry.batch.fail(api.translate(exc, f"cannot publish to topic {self.topic!r}"))
            return False
        return True

    # -- failover ----------------------------------------------------------------------
    def _again(self, entry: _Pending) -> None:
        """Publish ``entry`` again after a pause (the retry task keeps first order)."""
        if entry.batch.future.done():
            return
        if not entry.batch.failover_ends:
            entry.batch.failover_ends = time.monotonic() + self.engine.failover_timeout
        heapq.heappush(self._retry, entry)
        if self._retrier is None or self._retrier.done():
            self._retrier = asyncio.create_task(self._retry_loop())

    async def _retry_loop(self) -> None:
        pause = RETRY_FIRST
        while self._retry:
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_MAX)
            now = time.monotonic()
            if not await self._topic_exists():
                for entry in self._drain_retries():
                    entry.batch.fail(NotFound(f"topic {self.topic!r} does not exist"))
                return
            for entry in self._drain_retries():
                batch = entry.batch
                if batch.future.done():
                    continue
                if now > batch.failover_ends:
                    batch.fail(Unavailable(
                        f"topic {self.topic!r}: no NATS server stored the message within "
                        f"{self.engine.failover_timeout:g}s (is a leader elected? "
                        "see failover_timeout in the engine URL)"))
                    continue
                entry.token = next(self._tokens)
                batch.deadline = time.monotonic() + RESEND_AFTER
                await self._publish(entry)
        self._retrier = None

    def _drain_retries(self) -> list[_Pending]:
        entries = [heapq.heappop(self._retry) for _ in range(len(self._retry))]
        return entries

    async def _topic_exists(self) -> bool:
        """False only when the server says the topic is gone (an election is not that)."""
        try:
            await self.engine.stream_info(self.topic)
        except NotFound:
            return False
        except Exception:
            return True  # no answer during an election: keep trying until the deadline
        return True

    @staticmethod
    def _ack_wait(headers: list[dict[str, str]] | dict[str, str]) -> float:
        first = headers if isinstance(headers, dict) else headers[0] if headers else {}
        return RESEND_AFTER if MSG_ID_HEADER in first else ACK_TIMEOUT

    def _headers(self, headers: dict[str, str] | None, key: str | None,
                 msg_id: str | None) -> dict[str, str]:
        if not self._dedup:
            msg_id = None
        elif msg_id is None and self._auto_ids:
            msg_id = f"{self._id_prefix}{next(self._ids)}"
        return message_headers(self.name, headers, key, msg_id)

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
        if not self._dedup or (msg_ids is None and not self._auto_ids):
            headers = self._headers(None, None, None)
        elif msg_ids is None:
            headers = [self._headers(None, None, None) for _ in encoded]
        else:
            headers = [self._headers(None, None, msg_id) for msg_id in msg_ids]
        return await self._enqueue(encoded, headers)

    async def produce_block(self, block: MessageBlock, *,
                            msg_ids: Sequence[str] | None = None) -> list[int]:
        """JetStream sets a message's time itself: the original time goes in the header
        :data:`ORIGINAL_TIME_HEADER` (nanoseconds since the epoch); producer, headers and key
        are kept as they are."""
        self._check_open()
        data = block_payloads(block, self.format, msg_ids)
        if not data:
            return []
        headers = []
        for index, message in enumerate(block.messages()):
            own = dict(message.headers or {})
            own[ORIGINAL_TIME_HEADER] = str(message.timestamp_ns)
            msg_id = msg_ids[index] if msg_ids is not None and self._dedup else None
            headers.append(message_headers(message.producer, own, message.key, msg_id))
        return await self._enqueue(data, headers)

    def _check_open(self) -> None:
        super()._check_open()
        if self._nc.is_closed:
            raise Closed(f"producer {self.name!r} on topic {self.topic!r}: NATS connection closed")
