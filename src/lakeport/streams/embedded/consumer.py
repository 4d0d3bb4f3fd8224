"""Consumers of the embedded engine: exclusive, standby and shared, across processes."""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import Callable, Sized
from typing import TypeVar

from lakeport.errors import Closed, Conflict, NotFound
from lakeport.streams.base import Consumer, ConsumerSpec
from lakeport.streams.block import MessageBlock
from lakeport.streams.embedded.engine import EmbeddedEngine
from lakeport.streams.embedded.reader import LogReader
from lakeport.streams.embedded.state import ConsumerDir
from lakeport.streams.types import Message, Mode

# How often a caught-up consumer looks for other processes' commits: often while data
# flows, less once the topic has been quiet for a while (commits in this process wake it
# at once either way).
POLL_BUSY = 0.002
POLL_IDLE = 0.010
IDLE_AFTER = 1.0

_Taken = TypeVar("_Taken", bound=Sized)


class EmbeddedConsumer(Consumer):
    engine: EmbeddedEngine

    def __init__(self, engine: EmbeddedEngine, spec: ConsumerSpec) -> None:
        super().__init__(engine, spec)
        self._reader: LogReader | None = None
        self._dir: ConsumerDir | None = None
        self._ack_fd = -1
        self._lock_fd = -1
        self._member_fd = -1
        self._member = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.active = False
        self._last_data = 0.0

    # -- opening -----------------------------------------------------------------------
    async def _open(self) -> int:
        engine, name, topic = self.engine, self.name, self.topic
        options = engine.read_options(topic)
        try:
            self._reader = LogReader(engine.data_dir(topic, options), options.format)
        except FileNotFoundError:
            raise NotFound(f"topic {topic!r} has no data (was it deleted?)") from None
        self._dir = ConsumerDir(engine.topic_dir(topic) / "consumers")
        self._ack_fd = self._dir.open_ack(name)
        self._lock_fd = os.open(self._dir.file(name, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        mode = self.spec.mode
        if mode is Mode.SHARED:
            if not self._dir.try_lock(self._lock_fd, shared=True):
                self._refuse()
            members = self._dir.members_dir(name)
            self._member_fd = os.open(members / f"{self._member}.lock",
                                      os.O_RDWR | os.O_CREAT, 0o644)
            self._dir.try_lock(self._member_fd, shared=False)
            self._become_active()
            start = self._start_seqno(ConsumerDir.read_ack(self._ack_fd))
            with self._dir.shared_group(name, start - 1) as group:
                acked = group.acked
            return acked
        if self._dir.try_lock(self._lock_fd, shared=False):
            self._become_active()
        elif mode is Mode.EXCLUSIVE:
            self._refuse()
        acked = ConsumerDir.read_ack(self._ack_fd)
        self._reader.seek(self._start_seqno(acked))
        self._read_upto = self._reader.cursor - 1
        return acked

    def _refuse(self) -> None:
        assert self._dir is not None
        owner = self._dir.owner(self.name)
        how = owner.get("mode", "another")
        pids = ", ".join(str(p) for p in owner.get("pids", []))
        self._release_fds()
        raise Conflict(
            f"consumer {self.name!r} on topic {self.topic!r} is already open in {how} mode"
            + (f" (pid {pids})" if pids else "")
        )

    def _become_active(self) -> None:
        assert self._dir is not None
        self.active = True
        self._dir.set_owner(self.name, self.spec.mode.value, os.getpid(), self.spec.ephemeral)

    def _start_seqno(self, acked: int) -> int:
        reader = self._reader
        assert reader is not None
        position = self.spec.position
        if position.kind == "unread":
            return max(acked + 1, reader.first_seqno())
        if position.kind == "beginning":
            return reader.first_seqno()
        if position.kind == "end":
            return reader.last_seqno() + 1
        if position.kind == "seqno":
            return position.seqno
        return reader.seqno_at_time(position.timestamp_ns)

    # -- reading -----------------------------------------------------------------------
    def _live_reader(self) -> LogReader:
        reader = self._reader
        if reader is None or self._closed:
            raise Closed(f"consumer {self.name!r} on topic {self.topic!r} is closed")
        if reader.deleted():
            raise Closed(f"topic {self.topic!r} was deleted")
        return reader

    async def _fetch(self, max_n: int, timeout: float | None) -> list[Message]:
        return await self._wait_for(self._take, max_n, timeout) or []

    async def _fetch_block(self, max_n: int, timeout: float | None) -> MessageBlock:
        found = await self._wait_for(self._take_block, max_n, timeout)
        return found if found is not None else MessageBlock.empty(self.format)

    async def _wait_for(self, take: Callable[[LogReader, int], _Taken], max_n: int,
                        timeout: float | None) -> _Taken | None:
        """``take`` what is committed, waiting up to ``timeout`` for something (else None)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            reader = self._live_reader()
            if not self.active:
                self._try_takeover()
            if self.active:
                taken = take(reader, max_n)
                if len(taken):
                    self._last_data = loop.time()
                    return taken
            now = loop.time()
            remaining = None if deadline is None else deadline - now
            if remaining is not None and remaining <= 0:
                return None
            poll = POLL_BUSY if now - self._last_data < IDLE_AFTER else POLL_IDLE
            if not self.active:
                poll = 0.05
            await self.engine.wait_for_data(
                self.topic, poll if remaining is None else min(poll, remaining)
            )

    def _try_takeover(self) -> None:
        """A standby becomes active when the active member's lock is released."""
        assert self._dir is not None and self._reader is not None
        if self._dir.try_lock(self._lock_fd, shared=False):
            self._become_active()
            self._acked = ConsumerDir.read_ack(self._ack_fd)
            self._reader.seek(max(self._acked + 1, self._reader.first_seqno()))
            self._read_upto = self._reader.cursor - 1

    def _take_block(self, reader: LogReader, max_n: int) -> MessageBlock:
        if self.spec.mode is not Mode.SHARED:
            return reader.read_block(max_n)
        return MessageBlock.from_messages(self._take(reader, max_n), self.format)

    def _take(self, reader: LogReader, max_n: int) -> list[Message]:
        if self.spec.mode is not Mode.SHARED:
            return reader.read(max_n)
        assert self._dir is not None
        last = reader.last_seqno()
        with self._dir.shared_group(self.name, self._acked) as group:
            seqnos = group.claim(self._member, max_n, last, reader.first_seqno(),
                                 stale_after=self.spec.ack_timeout)
        messages: list[Message] = []
        for run in _runs(seqnos):
            reader.seek(run[0])
            messages.extend(reader.read(len(run)))
        return messages

    # -- acks --------------------------------------------------------------------------
    async def _ack(self, seqno: int) -> None:
        assert self._dir is not None
        if self.spec.mode is Mode.SHARED:
            with self._dir.shared_group(self.name, self._acked) as group:
                group.ack(self._member, seqno)
                watermark = group.acked
            ConsumerDir.write_ack(self._ack_fd, watermark)
        else:
            ConsumerDir.write_ack(self._ack_fd, seqno)

    async def _rewind(self, seqno: int) -> None:
        if self.spec.mode is Mode.SHARED:
            assert self._dir is not None
            with self._dir.shared_group(self.name, self._acked) as group:
                group.release(self._member)
        elif self._reader is not None:
            self._reader.seek(seqno)

    async def _last_seqno(self) -> int:
        return self._live_reader().last_seqno()

    async def lag(self) -> int:
        reader = self._live_reader()
        if self.spec.mode is Mode.SHARED:
            return max(0, reader.last_seqno() - ConsumerDir.read_ack(self._ack_fd))
        return max(0, reader.last_seqno() - self._acked)

    # -- closing -----------------------------------------------------------------------
    async def _close(self) -> None:
        if self._dir is not None and self.spec.mode is Mode.SHARED and self._member_fd >= 0:
            try:
                with self._dir.shared_group(self.name, self._acked) as group:
                    group.release(self._member)
            except FileNotFoundError:
                pass  # the topic was deleted
            (self._dir.members_dir(self.name) / f"{self._member}.lock").unlink(missing_ok=True)
        self._release_fds()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self.spec.ephemeral and self._dir is not None:
            self._dir.forget_if_unused(self.name)

    def _release_fds(self) -> None:
        if self.active and self._dir is not None:
            self._dir.drop_owner(self.name, os.getpid())
        for attr in ("_member_fd", "_lock_fd", "_ack_fd"):
            fd = getattr(self, attr)
            if fd >= 0:
                os.close(fd)
                setattr(self, attr, -1)
        self.active = False


def _runs(seqnos: list[int]) -> list[list[int]]:
    """Split sorted-ish seqnos into runs of consecutive numbers."""
    runs: list[list[int]] = []
    for _, group in itertools.groupby(enumerate(seqnos), key=lambda pair: pair[1] - pair[0]):
        runs.append([seqno for _, seqno in group])
    return runs
