"""Reading an app's subscriptions and handing each message to the receivers that want it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from lakeport.apps.filters import Filter
from lakeport.apps.handlers import (
    AckTracker,
    Delivery,
    Receiver,
    StreamHandler,
    call_handler,
    describe,
    failure_record,
)
from lakeport.apps.messages import AppMessage, parse_message
from lakeport.errors import Closed, Invalid, LakeportError, Transient
from lakeport.streams import Consumer, Message

if TYPE_CHECKING:
    from lakeport.apps.manifest import Subscription

logger = logging.getLogger("lakeport.apps")

DeadLetter = Callable[[dict[str, Any]], Awaitable[int]]


class Dispatcher:
    """Reads every subscription and feeds handlers and ``stream_filter`` loops.

    Reading starts when the first receiver is added and pauses while there is none (between
    two ``stream_filter`` loops), so no message is acked as unwanted before anything could
    want it. A message no current receiver wants is done at once.
    """

    def __init__(self, app_name: str, dead_letter: DeadLetter, *, max_failures: int,
                 retry_delay: float) -> None:
        self.app_name = app_name
        self.dead_letter = dead_letter
        self.max_failures = max_failures
        self.retry_delay = retry_delay
        self.sources: list[tuple[Subscription, Consumer, AckTracker]] = []
        self.receivers: list[Receiver] = []
        self.orphans: deque[Delivery] = deque()
        self._receivers_present = asyncio.Event()
        self.stopping = False
        self._readers: list[asyncio.Task[None]] = []
        self._workers: list[asyncio.Task[None]] = []

    def add_source(self, subscription: Subscription, consumer: Consumer) -> None:
        self.sources.append((subscription, consumer, AckTracker(consumer)))

    def add_receiver(self, receiver: Receiver) -> None:
        if self.stopping:
            raise Closed(f"app {self.app_name} is stopping")
        self.receivers.append(receiver)
        self._receivers_present.set()
        if isinstance(receiver, StreamHandler):
            self._workers.append(asyncio.create_task(self._work(receiver),
                                                     name=f"handler {receiver.name}"))
        if not self._readers:
            for subscription, consumer, tracker in self.sources:
                self._readers.append(asyncio.create_task(
                    self._read(subscription, consumer, tracker), name=f"read {consumer.topic}"))

    # -- reading ---------------------------------------------------------------------------
    async def _read(self, subscription: Subscription, consumer: Consumer,
                    tracker: AckTracker) -> None:
        topic = consumer.topic
        while not self.stopping:
            try:
                raw = await consumer.recv()
            except Transient as exc:
                logger.warning("app %s: reading topic %r failed (%s): retrying in 1s",
                               self.app_name, topic, exc)
                await asyncio.sleep(1.0)
                continue
            except LakeportError as exc:
                if not self.stopping:
                    logger.error("app %s: reading topic %r stopped: %s", self.app_name, topic, exc)
                return
            tracker.track(raw.seqno)
            try:
                message = parse_message(_payload(raw), raw.seqno)
            except LakeportError as exc:
                await self._reject(raw, topic, tracker, str(exc))
                continue
            if not subscription.accepts(message):
                tracker.done(raw.seqno)
                continue
            if not self.receivers:  # between two stream_filter loops: wait for the next
                await self._receivers_present.wait()
            targets = [r for r in self.receivers if r.wants(message)]
            if not targets:
                tracker.done(raw.seqno)
                continue
            delivery = Delivery(message, raw, topic, tracker, remaining=len(targets))
            for receiver in targets:
                await receiver.queue.put(delivery)
                if receiver.closed and not self.stopping:  # it left while we waited
                    self.orphan(receiver)

    async def _reject(self, raw: Message, topic: str, tracker: AckTracker, reason: str) -> None:
        """A payload that is no app message goes to the dead-letter topic and is acked."""
        logger.error("app %s: seqno %d of topic %r is not an app message: %s "
                     "(sent to the dead-letter topic)", self.app_name, raw.seqno, topic, reason)
        if await self._send_dead_letter(failure_record(raw, topic, reason)):
            tracker.done(raw.seqno)

    async def _send_dead_letter(self, record: dict[str, Any]) -> bool:
        try:
            await self.dead_letter(record)
            return True
        except Exception:
            logger.exception("app %s: cannot write to the dead-letter topic: seqno %s of %r "
                             "stays unacked and is read again after a restart",
                             self.app_name, record.get("seqno"), record.get("topic"))
            return False

    # -- handlers --------------------------------------------------------------------------
    async def _work(self, handler: StreamHandler) -> None:
        """Run one handler over its messages in order, until the app stops."""
        while not self.stopping:
            delivery = await handler.queue.get()
            if delivery is None or self.stopping:
                return
            if await self._handle(handler, delivery):
                delivery.finish()

    async def _handle(self, handler: StreamHandler, delivery: Delivery) -> bool:
        """Call the handler, retrying; after ``max_failures`` dead-letter the message.

        True once the message is done with (handled or dead-lettered).
        """
        message, seqno = delivery.message, delivery.raw.seqno
        for attempt in range(1, self.max_failures + 1):
            try:
                await call_handler(handler.handler, message, thread=True)
                return True
            except Exception as exc:
                logger.error("app %s: handler %s failed on seqno %d of %r (%s), attempt %d of "
                             "%d: %s: %s", self.app_name, handler.name, seqno, delivery.topic,
                             describe(message), attempt, self.max_failures,
                             type(exc).__name__, exc)
                error = exc
            if attempt < self.max_failures:
                await asyncio.sleep(self.retry_delay * 2 ** (attempt - 1))
        logger.error("app %s: seqno %d of %r sent to the dead-letter topic after %d failures",
                     self.app_name, seqno, delivery.topic, self.max_failures)
        record = failure_record(delivery.raw, delivery.topic, error, handler=handler.name,
                                attempts=self.max_failures)
        return await self._send_dead_letter(record)

    def messages(self, filter: Filter, name: str, auto_ack: bool = True) -> MessageStream:
        """The messages that pass ``filter``; see :class:`MessageStream`."""
        return MessageStream(self, Receiver(filter, name), auto_ack)

    def orphan(self, receiver: Receiver, backlog: Iterable[Delivery] = ()) -> None:
        """A receiver left: keep what it had not taken yet for the next one that wants it."""
        receiver.closed = True
        self.orphans.extend(backlog)
        while not receiver.queue.empty():
            delivery = receiver.queue.get_nowait()
            if delivery is not None:
                self.orphans.append(delivery)
        with contextlib.suppress(ValueError):
            self.receivers.remove(receiver)
        if not self.receivers:
            self._receivers_present.clear()

    def adopt(self, receiver: Receiver) -> deque[Delivery]:
        """The kept messages ``receiver`` wants, oldest first (taken from the kept ones)."""
        taken: deque[Delivery] = deque()
        kept: deque[Delivery] = deque()
        for delivery in self.orphans:
            (taken if receiver.wants(delivery.message) else kept).append(delivery)
        self.orphans = kept
        return taken

    # -- stopping --------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop reading; handlers finish the message they are on and take no more."""
        if self.stopping:
            return
        self.stopping = True
        for task in self._readers:
            task.cancel()
        for receiver in self.receivers:
            receiver.wake()

    async def flush(self) -> None:
        """Ack everything finished so far."""
        for _, _, tracker in self.sources:
            await tracker.flush()

    async def wait(self, force: asyncio.Event | None = None) -> None:
        """Wait until readers and handlers ended (cancel handlers when ``force`` is set)."""
        tasks = [*self._readers, *self._workers]
        if not tasks:
            return
        pending = {t for t in tasks if not t.done()}
        forced: asyncio.Task[Any] | None = None
        if force is not None:
            forced = asyncio.create_task(force.wait())
            pending.add(forced)
        while pending - {forced}:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if forced is not None and forced in done:
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                break
        if forced is not None:
            forced.cancel()
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                logger.error("app %s: %s ended with an error", self.app_name, task.get_name(),
                             exc_info=task.exception())



class MessageStream:
    """An async iterator over the messages one ``stream_filter`` loop wants.

    With ``auto_ack`` a message is done (and acked once everything before it is) when the
    loop asks for the next one, or when the loop is left (``break``, an exception,
    :meth:`close`). Without it, messages are done only when :meth:`ack` is called.
    Messages read ahead for a loop that is left are not acked: the next loop gets them (or,
    after a restart, the topic delivers them again).
    """

    def __init__(self, dispatcher: Dispatcher, receiver: Receiver, auto_ack: bool = True) -> None:
        self._dispatcher = dispatcher
        self._receiver = receiver
        self._auto_ack = auto_ack
        self._yielded: deque[Delivery] = deque()
        self._backlog: deque[Delivery] = deque()
        self._started = False

    def __aiter__(self) -> MessageStream:
        return self

    async def __anext__(self) -> AppMessage:
        if self._auto_ack:
            self._finish_through(None)
        dispatcher, receiver = self._dispatcher, self._receiver
        if receiver.closed or dispatcher.stopping:
            raise StopAsyncIteration
        if not self._started:
            self._started = True
            self._backlog = dispatcher.adopt(receiver)
            dispatcher.add_receiver(receiver)
        if self._backlog:
            delivery = self._backlog.popleft()
        else:
            delivery = await receiver.queue.get()
            if delivery is None or dispatcher.stopping:
                if delivery is not None:
                    self._backlog.appendleft(delivery)
                raise StopAsyncIteration  # not acked: read again after a restart
        self._yielded.append(delivery)
        return delivery.message

    def _finish_through(self, message: AppMessage | None) -> set[AckTracker]:
        """Finish the yielded messages up to ``message`` (all when None)."""
        trackers = set()
        yielded = self._yielded
        if message is not None and not any(d.message is message for d in yielded):
            return trackers
        while yielded:
            delivery = yielded.popleft()
            delivery.finish()
            trackers.add(delivery.tracker)
            if delivery.message is message:
                break
        return trackers

    async def ack(self, message: AppMessage | None = None) -> None:
        """Mark the messages yielded so far, up to ``message`` (default: all), as done and
        wait until their acks are stored."""
        for tracker in self._finish_through(message):
            await tracker.flush()

    def close(self) -> None:
        """Stop this loop; with ``auto_ack`` the current message counts as done."""
        if self._auto_ack:
            self._finish_through(None)
        receiver = self._receiver
        if not receiver.closed:
            receiver.closed = True
            self._dispatcher.orphan(receiver, self._backlog)
            self._backlog = deque()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> MessageStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a loop left with break drops its iterator at once
        with contextlib.suppress(Exception):
            self.close()


def _payload(raw: Message) -> Any:
    try:
        return raw.payload
    except Exception as exc:
        raise Invalid(f"payload cannot be decoded ({exc})") from None

