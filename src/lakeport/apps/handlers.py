"""How read messages reach handlers and get acknowledged.

Every message read from a subscription is tracked until each handler (or ``stream_filter``
loop) that wants it is done with it. Acks are cumulative, so a consumer is acked up to a
message only once every earlier message of that consumer is done: a crash before that
makes the topic deliver the unfinished messages again.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lakeport.apps.filters import Filter
from lakeport.apps.messages import AppMessage
from lakeport.streams import Consumer, Message

logger = logging.getLogger("lakeport.apps")


async def call_handler(handler: Callable[..., Any], *args: Any, thread: bool = False) -> Any:
    """Call a sync or async handler; a sync one runs in a worker thread when ``thread``."""
    if inspect.iscoroutinefunction(handler):
        return await handler(*args)
    if thread:
        result = await asyncio.to_thread(handler, *args)
    else:
        result = handler(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


def handler_name(handler: Callable[..., Any]) -> str:
    return getattr(handler, "__qualname__", None) or repr(handler)


def describe(message: AppMessage) -> str:
    """``asset/datastream`` (or the asset alone) of a message, for log lines."""
    datastream = getattr(message, "datastream", None)
    return f"{message.asset}/{datastream}" if datastream else message.asset


def original_payload(raw: Message) -> Any:
    """The payload of a topic message as stored (text when it is not valid for its format)."""
    try:
        payload = raw.payload
    except Exception:
        return raw.text()
    return payload.hex() if isinstance(payload, bytes) else payload


class AckTracker:
    """Acks one consumer cumulatively, up to the last message before the first unfinished one.

    Acks run in the background, one at a time, each taking the newest finished seqno, and
    wait ``delay`` seconds first so that a burst of finished messages costs one ack.
    :meth:`flush` waits for the last one.
    """

    delay = 0.005

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self._order: deque[int] = deque()
        self._done: dict[int, bool] = {}
        self._target = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Messages read but not done yet."""
        return len(self._order)

    def track(self, seqno: int) -> None:
        self._order.append(seqno)
        self._done[seqno] = False

    def done(self, seqno: int) -> None:
        """Mark ``seqno`` done; ack everything that is now finished in order."""
        if seqno not in self._done:
            return
        self._done[seqno] = True
        order, flags = self._order, self._done
        while order and flags[order[0]]:
            self._target = order.popleft()
            del flags[self._target]
        if self._target > self.consumer.acked and (self._task is None or self._task.done()):
            try:
                self._task = asyncio.get_running_loop().create_task(self._ack(self.delay))
            except RuntimeError:  # no loop any more: the topic delivers these again
                pass

    async def _ack(self, delay: float = 0.0) -> None:
        try:
            if delay:
                await asyncio.sleep(delay)
            while self._target > self.consumer.acked:
                await self.consumer.ack(self._target)
        except Exception:
            logger.exception("ack of %r on topic %r failed: the messages will be read again",
                             self.consumer.name, self.consumer.topic)

    async def flush(self) -> None:
        """Wait until everything finished so far is acked."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self._ack()


@dataclass
class Delivery:
    """One read message on its way to the handlers that want it."""

    message: AppMessage
    raw: Message
    topic: str
    tracker: AckTracker
    remaining: int = 0

    def finish(self) -> None:
        """One receiver is done with it; the last one lets the ack go forward."""
        self.remaining -= 1
        if self.remaining <= 0:
            self.tracker.done(self.raw.seqno)


@dataclass(eq=False)
class Receiver:
    """Where matching messages go: a ``@app.stream`` handler or a ``stream_filter`` loop."""

    filter: Filter
    name: str
    queue: asyncio.Queue[Delivery | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=100))
    closed: bool = False

    def wants(self, message: AppMessage) -> bool:
        return not self.closed and self.filter(message)

    def wake(self) -> None:
        """Wake a reader of the queue that waits for a message (to see that the app stops)."""
        if self.queue.empty():
            self.queue.put_nowait(None)


@dataclass(eq=False)
class StreamHandler(Receiver):
    """A ``@app.stream`` handler."""

    handler: Callable[[AppMessage], Any] = print


def failure_record(raw: Message, topic: str, error: BaseException | str, *,
                   handler: str | None = None, attempts: int | None = None) -> dict[str, Any]:
    """What goes to the dead-letter topic: the original payload and why it landed there.

    A payload that does not decode by its topic's format (any bytes another client stored)
    is there as text, with undecodable bytes replaced, and exactly as ``payload_base64``.
    """
    record: dict[str, Any] = {"payload": original_payload(raw)}
    try:
        raw.payload  # noqa: B018 - decoding is the check
    except ValueError:
        record["payload_base64"] = base64.b64encode(raw.data).decode("ascii")
    record |= {
        "topic": topic,
        "seqno": raw.seqno,
        "error": error if isinstance(error, str) else f"{type(error).__name__}: {error}",
    }
    if handler is not None:
        record["handler"] = handler
    if attempts is not None:
        record["attempts"] = attempts
    return record
