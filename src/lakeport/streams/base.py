"""The engine-neutral topic API: :class:`Engine`, :class:`Producer` and :class:`Consumer`.

Engines implement a few primitives (``_open``, ``_fetch``, ``_ack``, ``_rewind``,
``_close``); credits, filters, ack timeouts, end markers and iteration live here once.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from lakeport.errors import Closed, Invalid, LakeportError
from lakeport.streams.block import MessageBlock
from lakeport.streams.types import (
    ConsumerInfo,
    EndMarker,
    Filters,
    Format,
    Message,
    Mode,
    OnNoExists,
    Position,
    TopicInfo,
    TopicOptions,
    validate_topic_name,
)


class EndOfTopic(LakeportError):
    """Raised by ``recv`` of a consumer opened with ``follow=False`` once it reached the end."""


@dataclass(frozen=True)
class ConsumerSpec:
    """Everything that describes one consumer; built by :meth:`Engine.consumer`."""

    name: str
    topic: str
    mode: Mode = Mode.EXCLUSIVE
    position: Position = field(default_factory=Position.unread)
    filters: Filters = field(default_factory=Filters)
    credits: int | None = None
    ack_timeout: float | None = None
    follow: bool = True
    end_marker: bool = False
    on_no_exists: OnNoExists = "fail"
    options: TopicOptions | None = None
    ephemeral: bool = False


def _check_on_no_exists(value: str) -> OnNoExists:
    if value not in ("wait", "fail", "create"):
        raise Invalid(f"bad on_no_exists {value!r}: use wait, fail or create")
    return value  # type: ignore[return-value]


class _AsyncResource:
    """``async with`` opens the object and closes it again."""

    async def open(self) -> None:
        """Acquire what the object needs."""

    async def close(self) -> None:
        """Release it; safe to call twice."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Engine(_AsyncResource, ABC):
    """A topic store chosen by URL. Use as ``async with open_engine(url) as engine``."""

    scheme: str = ""

    def __init__(self, url: str) -> None:
        self.url = url

    async def open(self) -> None:
        await self.connect()

    async def connect(self) -> None:
        """Connect to the backend; raises Unavailable when it cannot be reached."""

    async def close(self) -> None:
        """Release every resource the engine holds."""

    async def healthcheck(self) -> None:
        """Fail fast (Unavailable / Terminal) if the engine cannot serve requests."""
        await self.list_topics()

    @abstractmethod
    async def create_topic(
        self, name: str, options: TopicOptions | None = None, *, exist_ok: bool = False
    ) -> TopicInfo:
        """Create a topic; with ``exist_ok`` an existing topic is returned as it is."""

    @abstractmethod
    async def delete_topic(self, name: str) -> None:
        """Delete a topic and its data; open consumers get :class:`Closed`."""

    @abstractmethod
    async def topic_info(self, name: str) -> TopicInfo:
        """Seqno range, entries, bytes, times and consumers of a topic (NotFound if missing)."""

    @abstractmethod
    async def list_topics(self) -> list[TopicInfo]:
        """Every topic, sorted by name."""

    @abstractmethod
    def _make_producer(self, name: str, topic: str, on_no_exists: OnNoExists,
                       options: TopicOptions | None) -> Producer: ...

    @abstractmethod
    def _make_consumer(self, spec: ConsumerSpec) -> Consumer: ...

    def producer(
        self,
        name: str,
        topic: str,
        *,
        on_no_exists: OnNoExists = "create",
        options: TopicOptions | None = None,
    ) -> Producer:
        """A producer named ``name`` on ``topic``; use it as an async context manager."""
        validate_topic_name(name)
        validate_topic_name(topic)
        return self._make_producer(name, topic, _check_on_no_exists(on_no_exists), options)

    def consumer(
        self,
        name: str,
        topic: str,
        *,
        mode: Mode | str = Mode.EXCLUSIVE,
        position: Position | str = "unread",
        filters: Filters | None = None,
        credits: int | None = None,
        ack_timeout: float | None = None,
        follow: bool = True,
        end_marker: bool = False,
        on_no_exists: OnNoExists = "fail",
        options: TopicOptions | None = None,
        ephemeral: bool = False,
    ) -> Consumer:
        """A consumer named ``name`` on ``topic``; use it as an async context manager.

        ``mode``: exclusive, shared or standby. ``position``: where a consumer name without
        acks starts (``unread`` resumes after the last ack). ``credits``: deliver at most
        this many unacked messages (more with :meth:`Consumer.more`); None means no limit.
        ``ack_timeout``: seconds after which unacked messages are delivered again.
        ``follow=False`` stops at the end the topic had when the consumer opened.
        ``ephemeral``: keep no state after close (a throwaway reader, e.g. the CLI's).
        """
        validate_topic_name(name)
        validate_topic_name(topic)
        try:
            mode = Mode(mode)
        except ValueError:
            raise Invalid(f"bad mode {mode!r}: use exclusive, shared or standby") from None
        if credits is not None and credits < 0:
            raise Invalid("credits must be 0 or more")
        if ack_timeout is not None and ack_timeout <= 0:
            raise Invalid("ack_timeout must be more than 0 seconds")
        spec = ConsumerSpec(
            name=name,
            topic=topic,
            mode=mode,
            position=Position.parse(position),
            filters=filters or Filters(),
            credits=credits,
            ack_timeout=ack_timeout,
            follow=follow,
            end_marker=end_marker,
            on_no_exists=_check_on_no_exists(on_no_exists),
            options=options,
            ephemeral=ephemeral,
        )
        return self._make_consumer(spec)

    async def _describe(self, name: str) -> TopicInfo:
        """The topic's info as producers and consumers need it (engines may skip the costly)."""
        return await self.topic_info(name)

    async def ensure_topic(
        self, name: str, on_no_exists: OnNoExists, options: TopicOptions | None
    ) -> TopicInfo:
        """Resolve ``on_no_exists`` for a topic: return its info, create it, wait or fail."""
        from lakeport.errors import NotFound

        while True:
            try:
                return await self._describe(name)
            except NotFound:
                if on_no_exists == "fail":
                    raise
                if on_no_exists == "create":
                    return await self.create_topic(name, options, exist_ok=True)
            await asyncio.sleep(0.1)


class Producer(_AsyncResource, ABC):
    """Appends messages to one topic. ``await produce(...)`` returns the seqno once durable."""

    def __init__(self, engine: Engine, name: str, topic: str, on_no_exists: OnNoExists,
                 options: TopicOptions | None) -> None:
        self.engine = engine
        self.name = name
        self.topic = topic
        self.on_no_exists = on_no_exists
        self.options = options
        self.format = Format.JSON
        self._open = False

    async def open(self) -> None:
        info = await self.engine.ensure_topic(self.topic, self.on_no_exists, self.options)
        self.format = info.options.format
        await self._open_producer()
        self._open = True

    async def _open_producer(self) -> None:
        pass

    async def close(self) -> None:
        self._open = False

    def _check_open(self) -> None:
        if not self._open:
            raise Closed(f"producer {self.name!r} on topic {self.topic!r} is not open")

    @abstractmethod
    def produce(
        self,
        payload: Any,
        *,
        headers: dict[str, str] | None = None,
        key: str | None = None,
        msg_id: str | None = None,
    ) -> Awaitable[int]:
        """Append one message; the awaitable gives its seqno once it is durable.

        Many ``produce`` calls may be in flight at once; they are committed together.
        A ``msg_id`` already stored within the topic's dedup window returns the first seqno.
        """

    @abstractmethod
    async def produce_many(
        self, payloads: Sequence[Any], *, msg_ids: Sequence[str] | None = None
    ) -> list[int]:
        """Append a batch in one commit; return the seqnos once all are durable."""

    async def produce_block(self, block: MessageBlock, *,
                            msg_ids: Sequence[str] | None = None) -> list[int]:
        """Append ``block``'s messages in one commit keeping each one's time, producer,
        headers and key (its seqnos are not kept); return the new seqnos once durable.

        The way to copy messages between topics as they are (``lakeport forward``). A
        ``msg_id`` already stored within the dedup window gives the first seqno again.
        Engines that cannot set a message's time raise :class:`Invalid`.
        """
        raise Invalid(f"the {self.engine.scheme or type(self.engine).__name__} engine cannot "
                      "store messages with their original time and producer")


class _InFlight:
    """Seqnos delivered but not acked, per fetched batch, for cheap cumulative acks.

    Only seqnos are kept (a ``range`` for a gapless batch), not the messages, so a large
    unacked batch costs next to no memory here.
    """

    __slots__ = ("batches", "count")

    def __init__(self) -> None:
        self.batches: deque[tuple[Sequence[int], float]] = deque()
        self.count = 0

    def add(self, seqnos: Sequence[int]) -> None:
        """Track a fetched batch's seqnos (a ``range`` when it has no gaps)."""
        if seqnos:
            self.batches.append((seqnos, time.monotonic()))
            self.count += len(seqnos)

    def ack(self, seqno: int) -> None:
        batches = self.batches
        while batches:
            seqnos, when = batches[0]
            if seqnos[-1] <= seqno:
                batches.popleft()
                self.count -= len(seqnos)
                continue
            cut = bisect.bisect_right(seqnos, seqno)
            if cut:
                batches[0] = (seqnos[cut:], when)
                self.count -= cut
            break

    def oldest(self) -> float | None:
        return self.batches[0][1] if self.batches else None

    def clear(self) -> None:
        self.batches.clear()
        self.count = 0


class Consumer(_AsyncResource, ABC):
    """Reads one topic under a consumer name. Async-iterate it, and ``ack`` what is done."""

    def __init__(self, engine: Engine, spec: ConsumerSpec) -> None:
        self.engine = engine
        self.spec = spec
        self.name = spec.name
        self.topic = spec.topic
        self.format = Format.JSON
        self._buffer: deque[Message] = deque()
        self._in_flight = _InFlight()
        self._credits = spec.credits  # None = unlimited
        self._credit_event = asyncio.Event()
        self._skipped_upto = 0
        self._acked = 0
        self._stop_at: int | None = None
        self._end_marked = False
        self._read_upto = 0
        self._known_last = 0  # a seqno known to be stored (acks up to it need no check)
        self._opened = False
        self._closed = False

    # -- engine primitives -------------------------------------------------------------
    @abstractmethod
    async def _open(self) -> int:
        """Take the mode's locks, place the read cursor; return the acked seqno.

        Engines set ``self._read_upto`` to the seqno before the first one to deliver.
        """

    @abstractmethod
    async def _fetch(self, max_n: int, timeout: float | None) -> list[Message]:
        """Up to ``max_n`` next messages; wait up to ``timeout`` for one ([] on timeout)."""

    @abstractmethod
    async def _ack(self, seqno: int) -> None:
        """Persist an ack of everything up to ``seqno`` delivered to this consumer."""

    @abstractmethod
    async def _rewind(self, seqno: int) -> None:
        """Make the next ``_fetch`` start at ``seqno`` (redelivery after an ack timeout)."""

    @abstractmethod
    async def _last_seqno(self) -> int:
        """The topic's current last seqno."""

    async def _close(self) -> None:
        pass

    # -- lifecycle ---------------------------------------------------------------------
    async def open(self) -> None:
        info = await self.engine.ensure_topic(self.topic, self.spec.on_no_exists, self.spec.options)
        self.format = info.options.format
        self._acked = await self._open()
        if not self.spec.follow:
            self._stop_at = await self._last_seqno()
        self._opened = True

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._close()

    # -- flow control ------------------------------------------------------------------
    def more(self, n: int) -> Awaitable[None]:
        """Allow ``n`` more unacked messages to be delivered (switches on credit control).

        Acks give credits back, so ``more(1)`` once means one message in flight at a time.
        Takes effect at once; the result may be awaited (``await consumer.more(1)``).
        """
        if n < 0:
            raise Invalid("more(n) takes n >= 0")
        self._credits = (self._credits or 0) + n
        self._credit_event.set()
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    @property
    def acked(self) -> int:
        """The highest seqno this consumer has acknowledged."""
        return self._acked

    @property
    def position(self) -> int:
        """The seqno after the last one fetched: where reading continues."""
        return self._read_upto + 1

    async def lag(self) -> int:
        """Messages on the topic after this consumer's last ack."""
        return max(0, await self._last_seqno() - self._acked)

    async def info(self) -> ConsumerInfo:
        return ConsumerInfo(self.name, self.spec.mode.value, self._acked, await self.lag(), 1)

    # -- receiving ---------------------------------------------------------------------
    def _room(self) -> int | None:
        if self._credits is None:
            return None
        return self._credits - self._in_flight.count

    async def _fetch_block(self, max_n: int, timeout: float | None) -> MessageBlock:
        """Like ``_fetch``, as a block; engines with a bulk read path override this."""
        return MessageBlock.from_messages(await self._fetch(max_n, timeout), self.format)

    async def _fill(self, max_n: int, timeout: float | None,
                    as_block: bool = False) -> MessageBlock | None:
        """Fetch into the buffer (or, ``as_block``, return a block), honouring credits,
        filters, ack timeouts and the stop point."""
        if not self._opened:
            raise Closed(f"consumer {self.name!r} is not open: use 'async with'")
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._buffer:
            if self._closed:
                raise Closed(f"consumer {self.name!r} on topic {self.topic!r} is closed")
            await self._expire_unacked()
            room = self._room()
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if room is not None and room <= 0:
                self._credit_event.clear()
                try:
                    await asyncio.wait_for(self._credit_event.wait(), self._wait_slice(remaining))
                except TimeoutError:
                    if remaining is not None and time.monotonic() >= deadline:
                        raise
                continue
            want = max_n if room is None else min(max_n, room)
            if self._stop_at is not None:
                if self._last_read() >= self._stop_at:
                    raise EndOfTopic(f"end of topic {self.topic!r} at seqno {self._stop_at}")
                want = min(want, self._stop_at - self._last_read())
            fetched: list[Message] | MessageBlock
            if (self.spec.end_marker and not self._end_marked
                    and self._last_read() >= await self._last_seqno()):
                fetched = []  # caught up: the marker is due now, not after a wait
            elif as_block:
                fetched = await self._fetch_block(want, self._wait_slice(remaining))
            else:
                fetched = await self._fetch(want, self._wait_slice(remaining))
            if not len(fetched):
                if self.spec.end_marker and not self._end_marked:
                    self._end_marked = True
                    self._buffer.append(EndMarker(self._last_read()))  # type: ignore[arg-type]
                    return None
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"no message on topic {self.topic!r} within {timeout}s")
                continue
            self._end_marked = False
            if isinstance(fetched, MessageBlock):
                return self._deliver_block(fetched)
            self._deliver(fetched)
            # only once the kept messages are in flight, or they would be acked unseen
            await self._ack_skipped()
        return None

    def _deliver(self, messages: list[Message]) -> None:
        self._read_upto = max(self._read_upto, messages[-1].seqno)
        self._known_last = max(self._known_last, messages[-1].seqno)
        if self._stop_at is not None and messages[-1].seqno > self._stop_at:
            messages = [m for m in messages if m.seqno <= self._stop_at]
        if self.spec.filters.active:
            accepts = self.spec.filters.accepts
            kept = [m for m in messages if accepts(m.data)]
            if len(kept) < len(messages):
                self._skipped_upto = max(self._skipped_upto, messages[-1].seqno)
            messages = kept
        if messages:
            first, last = messages[0].seqno, messages[-1].seqno
            self._in_flight.add(range(first, last + 1) if last - first + 1 == len(messages)
                                else [m.seqno for m in messages])
        self._buffer.extend(messages)

    def _deliver_block(self, block: MessageBlock) -> MessageBlock:
        """The block path runs without filters, so it never skips a message to ack."""
        self._read_upto = max(self._read_upto, block.last_seqno)
        self._known_last = max(self._known_last, block.last_seqno)
        if self._stop_at is not None:
            block = block.upto(self._stop_at)
        if len(block):
            self._in_flight.add(range(block.first_seqno, block.last_seqno + 1) if block.contiguous
                                else block.table.column(0).to_pylist())
        return block

    def _wait_slice(self, remaining: float | None) -> float:
        """Wait in slices so ack timeouts and closing are noticed while idle."""
        slice_ = 0.5 if self.spec.ack_timeout is None else min(0.5, self.spec.ack_timeout / 2)
        return slice_ if remaining is None else min(slice_, remaining)

    def _last_read(self) -> int:
        """Highest seqno fetched so far."""
        return self._read_upto

    async def _ack_skipped(self) -> None:
        """Filtered-out messages count as done once nothing before them is unacked."""
        if self._skipped_upto > self._acked and self._in_flight.count == 0:
            await self._do_ack(self._skipped_upto)

    async def _expire_unacked(self) -> None:
        oldest = self._in_flight.oldest()
        timeout = self.spec.ack_timeout
        if oldest is None or timeout is None or time.monotonic() - oldest < timeout:
            return
        self._in_flight.clear()
        self._buffer.clear()
        self._read_upto = self._acked
        self._skipped_upto = self._acked  # skipped again when redelivered
        await self._rewind(self._acked + 1)

    async def recv(self, timeout: float | None = None) -> Message:
        """The next message (or :class:`EndMarker`); TimeoutError after ``timeout`` seconds."""
        if not self._buffer:
            await self._fill(1000, timeout)
        return self._buffer.popleft()

    async def recv_batch(self, max_n: int = 1000, timeout: float | None = None) -> list[Message]:
        """Up to ``max_n`` messages that are ready, waiting up to ``timeout`` for the first."""
        if not self._buffer:
            await self._fill(max_n, timeout)
        buffer = self._buffer
        if len(buffer) <= max_n:
            batch = list(buffer)
            buffer.clear()
            return batch
        return [buffer.popleft() for _ in range(max_n)]

    async def recv_block(self, max_n: int = 100_000, timeout: float | None = None
                         ) -> MessageBlock:
        """Up to ``max_n`` ready messages as one :class:`MessageBlock`, waiting up to
        ``timeout`` for the first: the way to read in bulk (the embedded engine hands out
        payloads without a Python object per message). Ack as usual."""
        if self._buffer or self.spec.filters.active or self.spec.end_marker:
            return MessageBlock.from_messages(await self.recv_batch(max_n, timeout),
                                              self.format)
        block = await self._fill(max_n, timeout, as_block=True)
        return block if block is not None else MessageBlock.empty(self.format)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.recv()
        except EndOfTopic:
            raise StopAsyncIteration from None

    async def ack(self, seqno: int) -> None:
        """Acknowledge every message up to ``seqno`` delivered to this consumer.

        A seqno beyond the topic's last stored one raises :class:`Invalid` and changes
        nothing (acking it would skip messages not produced yet).
        """
        if seqno > self._acked:
            await self._check_stored(seqno)
            self._in_flight.ack(seqno)
            await self._do_ack(seqno)
            if self._credits is not None:
                self._credit_event.set()
            await self._ack_skipped()

    async def _check_stored(self, seqno: int) -> None:
        """Raise Invalid if ``seqno`` is beyond the topic's last stored seqno."""
        if seqno <= self._known_last:
            return
        last = await self._last_seqno()
        self._known_last = max(self._known_last, last)
        if seqno > last:
            raise Invalid(f"cannot ack seqno {seqno} on topic {self.topic!r}: the last stored "
                          f"seqno is {last}")

    async def _do_ack(self, seqno: int) -> None:
        await self._ack(seqno)
        self._acked = max(self._acked, seqno)


def batched(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    """Split ``items`` into lists of at most ``size``."""
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
