"""``lakeport topics consume``: print a topic's messages until its end, a timeout or Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from lakeport.cli.common import stderr, stop_on_signals, write_out
from lakeport.errors import NotFound
from lakeport.streams import open_engine
from lakeport.streams.base import Engine
from lakeport.streams.flow import batches
from lakeport.streams.types import Filters, Message, Mode, Position

# How often a wait for a topic to be created checks for a stop.
_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class ConsumeRequest:
    """Everything ``consume`` was asked to do, validated before the engine is opened."""

    url: str | None
    topic: str
    consumer: str
    mode: Mode
    position: Position
    filters: Filters
    follow: bool
    timeout: float | None
    limit: int | None
    ack: bool
    render: Callable[[Message], bytes]
    ephemeral: bool = False


async def _wait_for_topic(engine: Engine, topic: str, stop: asyncio.Event) -> bool:
    """Wait until ``topic`` exists; False if stopped first."""
    try:
        await engine.topic_info(topic)
        return True
    except NotFound:
        stderr.print(f"waiting for topic {topic!r} to be created (Ctrl-C to stop)")
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), _POLL_SECONDS)
        with contextlib.suppress(NotFound):
            await engine.topic_info(topic)
            return True
    return False


async def consume_to_stdout(request: ConsumeRequest) -> int:
    """Print messages; return how many were printed.

    Stops at the topic's end (unless following), after ``limit`` messages, when nothing
    arrived for ``timeout`` seconds, or on SIGINT/SIGTERM. Printed messages are acked
    after they were written, when ``ack`` is set.
    """
    printed = 0
    with stop_on_signals() as stop:
        async with open_engine(request.url) as engine:
            if request.follow and not await _wait_for_topic(engine, request.topic, stop):
                return printed
            consumer = engine.consumer(
                request.consumer, request.topic, mode=request.mode, position=request.position,
                filters=request.filters, follow=request.follow, on_no_exists="fail",
                ephemeral=request.ephemeral,
            )
            async with consumer:
                async for batch in batches(consumer, stop, idle_timeout=request.timeout):
                    if request.limit is not None:
                        batch = batch[: request.limit - printed]
                    write_out(b"".join(request.render(message) for message in batch))
                    printed += len(batch)
                    if request.ack:
                        await consumer.ack(batch[-1].seqno)
                    if request.limit is not None and printed >= request.limit:
                        break
    return printed
