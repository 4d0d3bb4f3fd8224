"""Open producers kept per (topic, producer name) between requests: the topic gateway's and
the observation service's."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

from lakeport.errors import Closed
from lakeport.streams import Engine, Producer
from lakeport.streams.types import OnNoExists

T = TypeVar("T")
MAX_OPEN = 1000


class Producers:
    """At most :data:`MAX_OPEN` open producers; the least recently used is closed first.

    ``on_no_exists`` is what a new producer does when its topic is missing; ``retry_on`` are
    the errors of a call that mean the topic was replaced or deleted (one retry with a fresh
    producer)."""

    def __init__(self, engine: Engine, on_no_exists: OnNoExists = "fail",
                 retry_on: tuple[type[Exception], ...] = (Closed,)) -> None:
        self.engine = engine
        self.on_no_exists: OnNoExists = on_no_exists
        self.retry_on = retry_on
        self._open: OrderedDict[tuple[str, str], Producer] = OrderedDict()
        self._lock = asyncio.Lock()

    async def get(self, topic: str, name: str) -> Producer:
        key = (topic, name)
        producer = self._open.get(key)
        if producer is not None:
            self._open.move_to_end(key)
            return producer
        async with self._lock:
            producer = self._open.get(key)
            if producer is None:
                producer = self.engine.producer(name, topic, on_no_exists=self.on_no_exists)
                await producer.open()
                self._open[key] = producer
                while len(self._open) > MAX_OPEN:
                    _, oldest = self._open.popitem(last=False)
                    await oldest.close()
        return producer

    async def run(self, topic: str, name: str, call: Callable[[Producer], Awaitable[T]]) -> T:
        """``call`` a producer; one retry with a fresh producer on ``retry_on``."""
        for attempt in (1, 2):
            producer = await self.get(topic, name)
            try:
                return await call(producer)
            except self.retry_on:
                await self.forget(topic)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def forget(self, topic: str) -> None:
        """Close the producers of ``topic`` (it was deleted)."""
        for key in [key for key in self._open if key[0] == topic]:
            producer = self._open.pop(key)
            with contextlib.suppress(Exception):
                await producer.close()

    async def close(self) -> None:
        producers, self._open = list(self._open.values()), OrderedDict()
        for producer in producers:
            with contextlib.suppress(Exception):
                await producer.close()


__all__ = ["Producers"]
