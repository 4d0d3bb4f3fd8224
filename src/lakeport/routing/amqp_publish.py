"""The AMQP connection a bridge works on and the :class:`AmqpPublisher` that egress bridges and
rule actions publish through (publisher confirms, a batch per write)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import deque
from collections.abc import Sequence
from typing import Any

import aio_pika
import aiormq.exceptions as amqp_errors
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from aio_pika.abc import AbstractIncomingMessage as Delivery

from lakeport.errors import Unavailable
from lakeport.routing.amqp_frames import publish_frames, short_string

_PERSISTENT = aio_pika.DeliveryMode.PERSISTENT


class AmqpConnection:
    """One connection and its channel, with why it ended (and, consuming, its deliveries)."""

    def __init__(self, connection: AbstractConnection, channel: AbstractChannel,
                 where: str) -> None:
        self.connection, self.channel, self.where = connection, channel, where
        self.error: str | None = None
        self.ended = asyncio.Event()
        self.pending: deque[Delivery] = deque()
        self.ready = asyncio.Event()  # set when a delivery comes
        connection.close_callbacks.add(self._closed)
        channel.close_callbacks.add(self._closed)

    def _closed(self, sender: Any, exc: BaseException | None = None) -> None:
        if self.error is None and exc is not None and not isinstance(
                exc, asyncio.CancelledError):
            self.error = f"the AMQP broker {self.where} closed the connection: {exc}"
        self.ended.set()

    @property
    def alive(self) -> bool:
        return not (self.ended.is_set() or self.connection.is_closed or self.channel.is_closed)

    def lost(self, exc: BaseException) -> Unavailable:
        self.error = self.error or f"the AMQP connection to {self.where} was lost: {exc}"
        return Unavailable(self.error)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.connection.close(), 5)


class _Batch:
    """The confirms a published batch waits for."""

    def __init__(self, size: int, done: asyncio.Future[None]) -> None:
        self.left, self.done = size, done
        self.refused: list[tuple[int, str]] = []


class _Confirm:
    """One message's confirm, where aiormq keeps its futures: the broker's ack, its nack, or
    the message returned unroutable (``mandatory``)."""

    __slots__ = ("batch", "index", "key", "settled")

    def __init__(self, batch: _Batch, index: int, key: str) -> None:
        self.batch, self.index, self.key, self.settled = batch, index, key, False

    def done(self) -> bool:
        return self.settled

    def cancelled(self) -> bool:
        return False

    def set_result(self, frame: Any = None) -> None:
        self.settle(None)

    def set_exception(self, exc: BaseException) -> None:
        if isinstance(exc, amqp_errors.PublishError):
            text = getattr(exc.frame, "reply_text", "") or "returned"
            self.settle(f"the AMQP broker could not route it to a queue (routing key "
                        f"{self.key!r}: {text})")
        else:
            self.settle("the AMQP broker refused it (nack)")

    def settle(self, reason: str | None) -> None:
        if self.settled:
            return
        self.settled, batch = True, self.batch
        if reason is not None:
            batch.refused.append((self.index, reason))
        batch.left -= 1
        if batch.left == 0 and not batch.done.done():
            batch.done.set_result(None)


class AmqpPublisher:
    """Publishes persistent, mandatory messages to one exchange and waits for the broker's
    confirms (see :class:`lakeport.routing.bridge.Publisher`); the routing key is each item's
    target.

    A batch goes out as one write and its confirms are matched in order as they come (the
    broker acks many deliveries at once): aio-pika's own ``publish`` costs a task, a write and
    a future per message and looks through every unconfirmed message on each multiple ack,
    which halves the rate the broker takes. Where the channel does not look as this expects
    (another aiormq), each message is published with ``publish`` and awaited together."""

    def __init__(self, conn: AmqpConnection, exchange: AbstractExchange, raw: Any) -> None:
        """``raw``: the aiormq channel under ``conn.channel``."""
        self.conn, self.exchange = conn, exchange
        self._prefix = f"lakeport:{secrets.token_hex(6)}:"
        self._count = 0
        self._pending: deque[tuple[int, str, _Confirm]] = deque()
        self._raw = raw if all(hasattr(raw, name) for name in (
            "lock", "delivery_tag", "confirmations", "message_id_delivery_tag", "write_queue",
            "_on_confirm_frame", "max_content_size", "number", "create_future")) else None
        if self._raw is not None:
            self._raw._on_confirm_frame = self._confirmed

    @property
    def error(self) -> str | None:
        return self.conn.error

    async def publish(self, items: Sequence[tuple[str, bytes]],
                      ids: Sequence[str] | None = None) -> list[tuple[int, str]]:
        """Publish ``(routing key, body)`` pairs (``ids``: their message_id, default unique
        ones) and wait for every confirm; the ``(index, reason)`` of those nacked or returned
        unroutable. Unavailable when the connection is lost before."""
        if not items:
            return []
        if ids is None:
            start, self._count = self._count, self._count + len(items)
            ids = [f"{self._prefix}{start + i}" for i in range(len(items))]
        try:
            if self._raw is None:
                return await self._publish_each(items, ids)
            return await self._publish_batch(items, ids)
        except (amqp_errors.AMQPError, ConnectionError, RuntimeError) as exc:
            raise self.conn.lost(exc) from None
        except asyncio.CancelledError as exc:
            if self.conn.alive:
                raise
            raise self.conn.lost(exc) from None

    async def _publish_batch(self, items: Sequence[tuple[str, bytes]], ids: Sequence[str]
                             ) -> list[tuple[int, str]]:
        from aiormq.abc import ChannelFrame

        raw, name = self._raw, short_string(self.exchange.name)
        number, pending, size = raw.number, self._pending, raw.max_content_size
        while pending and pending[0][2].settled:  # confirmed by aiormq's own handler
            pending.popleft()
        batch = _Batch(len(items), raw.create_future())
        parts: list[bytes] = []
        async with raw.lock:
            tag = raw.delivery_tag
            for index, ((key, body), msg_id) in enumerate(zip(items, ids, strict=True)):
                confirm = _Confirm(batch, index, key)
                try:
                    parts.append(publish_frames(number, name, key, body, msg_id, size))
                except ValueError as exc:  # a routing key over 255 bytes: not sent
                    confirm.settle(str(exc))
                    continue
                tag += 1
                raw.confirmations[tag] = confirm
                raw.message_id_delivery_tag[msg_id] = tag
                pending.append((tag, msg_id, confirm))
            raw.delivery_tag = tag
            await raw.write_queue.put(ChannelFrame(payload=b"".join(parts), should_close=False))
        await batch.done
        return sorted(batch.refused)

    async def _confirmed(self, frame: Any) -> None:
        """The broker's ack or nack of one delivery tag, or of all up to it (``multiple``)."""
        from pamqp import commands

        pending, tag = self._pending, frame.delivery_tag
        nack = None if isinstance(frame, commands.Basic.Ack) else \
            "the AMQP broker refused it (nack)"
        if not frame.multiple and pending and pending[0][0] != tag:  # not the oldest
            for position, entry in enumerate(pending):
                if entry[0] == tag:
                    del pending[position]
                    self._settle(entry, nack)
                    return
        while pending and pending[0][0] <= tag:
            self._settle(pending.popleft(), nack)

    def _settle(self, entry: tuple[int, str, _Confirm], nack: str | None) -> None:
        raw = self._raw
        tag, msg_id, confirm = entry
        raw.confirmations.pop(tag, None)
        if raw.message_id_delivery_tag.get(msg_id) == tag:
            del raw.message_id_delivery_tag[msg_id]
        confirm.settle(nack)

    async def _publish_each(self, items: Sequence[tuple[str, bytes]], ids: Sequence[str]
                            ) -> list[tuple[int, str]]:
        publish = self.exchange.publish
        results = await asyncio.gather(*(
            publish(aio_pika.Message(body, delivery_mode=_PERSISTENT, message_id=msg_id),
                    key, mandatory=True)
            for (key, body), msg_id in zip(items, ids, strict=True)), return_exceptions=True)
        batch = _Batch(len(items), asyncio.get_running_loop().create_future())
        for index, result in enumerate(results):
            if isinstance(result, amqp_errors.DeliveryError):  # nacked, or returned
                _Confirm(batch, index, items[index][0]).set_exception(result)
            elif isinstance(result, BaseException):
                raise result
        return batch.refused

    async def close(self) -> None:
        await self.conn.close()


__all__ = ["AmqpConnection", "AmqpPublisher"]
