"""``memory://`` — an in-process engine for tests and throwaway pipelines.

Engines opened on the same URL in one process share their topics.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lakeport.errors import Closed, Conflict, NotFound
from lakeport.streams.base import Consumer, ConsumerSpec, Engine, Producer
from lakeport.streams.block import MessageBlock, block_payloads
from lakeport.streams.shared import SharedGroup
from lakeport.streams.types import (
    ConsumerInfo,
    Message,
    Mode,
    OnNoExists,
    TopicInfo,
    TopicOptions,
    encode_payload,
    now_ns,
    require_one_copy,
)

_member_ids = itertools.count(1)


@dataclass
class _Group:
    """State of one consumer name on a topic."""

    mode: Mode
    acked: int = 0
    holders: list[str] = field(default_factory=list)  # open members; standby: first is active
    shared: SharedGroup | None = None


@dataclass
class _Topic:
    name: str
    options: TopicOptions
    messages: list[Message] = field(default_factory=list)
    first: int = 1  # seqno of messages[0]
    next: int = 1
    size: int = 0
    dedup: dict[str, tuple[int, float]] = field(default_factory=dict)
    groups: dict[str, _Group] = field(default_factory=dict)
    version: int = 0
    deleted: bool = False
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def notify(self) -> None:
        self.version += 1
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.get_loop().call_soon_threadsafe(_resolve, waiter)

    async def wait(self, timeout: float | None) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            pass

    def append(self, producer: str, data: list[bytes], extras: list[dict[str, Any] | None]) -> int:
        """Append encoded payloads; return the first seqno. An extra's ``time_ns`` and
        ``producer`` replace the append's time and ``producer``."""
        if self.deleted:
            raise Closed(f"topic {self.name!r} was deleted")
        stamp = now_ns()
        first = self.next
        for seqno, (payload, extra) in enumerate(zip(data, extras, strict=True), start=first):
            extra = extra or {}
            self.messages.append(
                Message(seqno, extra.get("time_ns", stamp), extra.get("producer", producer),
                        payload, self.options.format, extra.get("headers"), extra.get("key"))
            )
            self.size += len(payload)
        self.next = first + len(data)
        self.retain()
        self.notify()
        return first

    def retain(self) -> None:
        limit_size = self.options.max_size
        oldest_ok = None if self.options.max_age is None else now_ns() - self.options.max_age * 1e9
        drop = 0
        size = self.size
        for message in self.messages:
            too_big = limit_size is not None and size > limit_size
            too_old = oldest_ok is not None and message.timestamp_ns < oldest_ok
            if not (too_big or too_old):
                break
            size -= len(message.data)
            drop += 1
        if drop:
            del self.messages[:drop]
            self.first += drop
            self.size = size

    def read(self, start: int, max_n: int) -> list[Message]:
        start = max(start, self.first)
        index = start - self.first
        return self.messages[index : index + max_n]

    def info(self) -> TopicInfo:
        consumers = [
            ConsumerInfo(name, g.mode.value, self._acked(g), max(0, self.next - 1 - self._acked(g)),
                         len(g.holders))
            for name, g in sorted(self.groups.items())
        ]
        return TopicInfo(
            name=self.name,
            options=self.options,
            first_seqno=self.first if self.messages else self.next,
            last_seqno=self.next - 1,
            entries=len(self.messages),
            bytes=self.size,
            oldest_ns=self.messages[0].timestamp_ns if self.messages else None,
            newest_ns=self.messages[-1].timestamp_ns if self.messages else None,
            consumers=consumers,
        )

    @staticmethod
    def _acked(group: _Group) -> int:
        return group.shared.acked if group.shared is not None else group.acked


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


_STORES: dict[str, dict[str, _Topic]] = {}


class MemoryEngine(Engine):
    """Topics held in this process's memory; nothing survives the process."""

    scheme = "memory"

    def __init__(self, url: str = "memory://") -> None:
        super().__init__(url)
        self.topics = _STORES.setdefault(url.rstrip("/"), {})

    def _topic(self, name: str) -> _Topic:
        topic = self.topics.get(name)
        if topic is None:
            raise NotFound(f"topic {name!r} does not exist")
        return topic

    async def create_topic(
        self, name: str, options: TopicOptions | None = None, *, exist_ok: bool = False
    ) -> TopicInfo:
        from lakeport.streams.types import validate_topic_name

        validate_topic_name(name)
        if name in self.topics:
            if exist_ok:
                return self.topics[name].info()
            raise Conflict(f"topic {name!r} already exists")
        options = options or TopicOptions()
        require_one_copy(options, "memory")
        self.topics[name] = _Topic(name, options)
        return self.topics[name].info()

    async def delete_topic(self, name: str) -> None:
        topic = self._topic(name)
        topic.deleted = True
        del self.topics[name]
        topic.notify()

    async def topic_info(self, name: str) -> TopicInfo:
        return self._topic(name).info()

    async def list_topics(self) -> list[TopicInfo]:
        return [self.topics[name].info() for name in sorted(self.topics)]

    async def last_msg_id(self, topic: str, producer: str | None, prefix: str,
                          limit: int = 1_000_000) -> str | None:
        """Like the embedded engine's: the newest msg_id starting with ``prefix`` stored by
        ``producer`` (None: any) among the topic's last ``limit`` messages."""
        stored = self._topic(topic)
        oldest = max(stored.first, stored.next - limit)
        for msg_id, (seqno, _) in reversed(stored.dedup.items()):
            if seqno < oldest:
                return None
            if msg_id.startswith(prefix) and (
                    producer is None or stored.messages[seqno - stored.first].producer == producer):
                return msg_id
        return None

    def _make_producer(self, name: str, topic: str, on_no_exists: OnNoExists,
                       options: TopicOptions | None) -> Producer:
        return MemoryProducer(self, name, topic, on_no_exists, options)

    def _make_consumer(self, spec: ConsumerSpec) -> Consumer:
        return MemoryConsumer(self, spec)


class MemoryProducer(Producer):
    engine: MemoryEngine

    def _append(self, data: list[bytes], extras: list[dict[str, Any] | None],
                msg_ids: Sequence[str | None]) -> list[int]:
        topic = self.engine._topic(self.topic)
        window = topic.options.dedup_window
        now = time.monotonic()
        seqnos: list[int | None] = []
        fresh_data, fresh_extras = [], []
        for payload, extra, msg_id in zip(data, extras, msg_ids, strict=True):
            seen = topic.dedup.get(msg_id) if msg_id else None
            if seen is not None and now - seen[1] <= window:
                seqnos.append(seen[0])
                continue
            seqnos.append(None)
            fresh_data.append(payload)
            fresh_extras.append(extra)
        first = topic.append(self.name, fresh_data, fresh_extras)
        next_seqno = first
        result = []
        for seqno, msg_id in zip(seqnos, msg_ids, strict=True):
            if seqno is None:
                seqno = next_seqno
                next_seqno += 1
                if msg_id:
                    topic.dedup[msg_id] = (seqno, now)
            result.append(seqno)
        return result

    def produce(self, payload: Any, *, headers: dict[str, str] | None = None,
                key: str | None = None, msg_id: str | None = None) -> Awaitable[int]:
        self._check_open()
        data = encode_payload(payload, self.format)
        extra = {"headers": headers, "key": key} if headers or key is not None else None
        future = asyncio.get_running_loop().create_future()
        future.set_result(self._append([data], [extra], [msg_id])[0])
        return future

    async def produce_many(self, payloads: Sequence[Any], *,
                           msg_ids: Sequence[str] | None = None) -> list[int]:
        self._check_open()
        data = [encode_payload(p, self.format) for p in payloads]
        ids = list(msg_ids) if msg_ids is not None else [None] * len(data)
        return self._append(data, [None] * len(data), ids)

    async def produce_block(self, block: MessageBlock, *,
                            msg_ids: Sequence[str] | None = None) -> list[int]:
        self._check_open()
        data = block_payloads(block, self.format, msg_ids)
        extras: list[dict[str, Any] | None] = [
            {"time_ns": m.timestamp_ns, "producer": m.producer, "headers": m.headers,
             "key": m.key} for m in block.messages()]
        ids = list(msg_ids) if msg_ids is not None else [None] * len(data)
        return self._append(data, extras, ids)


class MemoryConsumer(Consumer):
    engine: MemoryEngine

    def __init__(self, engine: MemoryEngine, spec: ConsumerSpec) -> None:
        super().__init__(engine, spec)
        self.member = f"m{next(_member_ids)}"
        self._cursor = 1
        self._topic_obj: _Topic | None = None
        self._group: _Group | None = None
        self._was_active = False

    @property
    def active(self) -> bool:
        group = self._group
        if group is None:
            return False
        return group.shared is not None or (bool(group.holders) and group.holders[0] == self.member)

    async def _open(self) -> int:
        topic = self.engine._topic(self.topic)
        mode = self.spec.mode
        group = topic.groups.get(self.name)
        if group is None:
            group = topic.groups[self.name] = _Group(mode)
            if mode is Mode.SHARED:
                group.shared = SharedGroup(self._start_seqno(topic, 0) - 1)
        elif group.mode is not mode and group.holders:
            raise Conflict(
                f"consumer {self.name!r} on topic {self.topic!r} is open in {group.mode} mode"
            )
        if mode is Mode.EXCLUSIVE and group.holders:
            raise Conflict(
                f"consumer {self.name!r} on topic {self.topic!r} is already open in exclusive mode"
            )
        if mode is Mode.SHARED and group.shared is None:
            group.shared = SharedGroup(group.acked)
        group.mode = mode
        group.holders.append(self.member)
        self._topic_obj, self._group = topic, group
        acked = group.shared.acked if group.shared is not None else group.acked
        self._cursor = self._start_seqno(topic, acked)
        self._read_upto = self._cursor - 1
        self._was_active = self.active
        return acked

    def _start_seqno(self, topic: _Topic, acked: int) -> int:
        if self.spec.position.kind == "unread":
            return max(acked + 1, topic.first)
        return self._resolve(topic)

    def _resolve(self, topic: _Topic) -> int:
        position = self.spec.position
        if position.kind == "beginning":
            return topic.first
        if position.kind == "end":
            return topic.next
        if position.kind == "seqno":
            return position.seqno
        for message in topic.messages:
            if message.timestamp_ns >= position.timestamp_ns:
                return message.seqno
        return topic.next

    def _live_topic(self) -> _Topic:
        topic = self._topic_obj
        if topic is None or topic.deleted:
            raise Closed(f"topic {self.topic!r} was deleted")
        return topic

    async def _fetch(self, max_n: int, timeout: float | None) -> list[Message]:
        topic = self._live_topic()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.active:
                messages = self._take(topic, max_n)
                if messages:
                    return messages
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return []
            await topic.wait(remaining)
            topic = self._live_topic()

    def _take(self, topic: _Topic, max_n: int) -> list[Message]:
        group = self._group
        assert group is not None
        if group.shared is not None:
            seqnos = group.shared.claim(self.member, max_n, topic.next - 1, topic.first,
                                        stale_after=self.spec.ack_timeout)
            return [topic.messages[s - topic.first] for s in seqnos]
        if not self._was_active:
            # a standby that took over resumes after the group's last ack
            self._was_active = True
            self._cursor = self._read_upto = group.acked
            self._cursor += 1
            self._acked = group.acked
        messages = topic.read(self._cursor, max_n)
        if messages:
            self._cursor = messages[-1].seqno + 1
        return messages

    async def _ack(self, seqno: int) -> None:
        group = self._group
        assert group is not None
        if group.shared is not None:
            group.shared.ack(self.member, seqno)
        else:
            group.acked = max(group.acked, seqno)

    async def _rewind(self, seqno: int) -> None:
        group = self._group
        if group is not None and group.shared is not None:
            group.shared.release(self.member)
        self._cursor = seqno

    async def _last_seqno(self) -> int:
        return self._live_topic().next - 1

    async def lag(self) -> int:
        group, topic = self._group, self._topic_obj
        if group is None or topic is None:
            return 0
        return max(0, topic.next - 1 - _Topic._acked(group))

    async def _close(self) -> None:
        group, topic = self._group, self._topic_obj
        if group is None or topic is None:
            return
        if group.shared is not None:
            group.shared.release(self.member)
            topic.notify()  # released claims are for the other members now
        if self.member in group.holders:
            group.holders.remove(self.member)
            if group.holders:
                # a standby takes over at the last ack
                topic.notify()
        if self.spec.ephemeral and not group.holders and not (group.shared and group.shared.claims):
            topic.groups.pop(self.name, None)
