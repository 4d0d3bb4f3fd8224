"""Forwarders running beside ``lakeport serve`` (``--forward TOPIC=URL``), stopped with it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from lakeport.forward.config import ForwardConfig
from lakeport.forward.forwarder import Forwarder
from lakeport.streams import Engine

log = logging.getLogger("lakeport.forward")
STOP_TIMEOUT = 15.0  # seconds a forwarder has to finish its batch at shutdown


async def _run(forwarder: Forwarder, stop: asyncio.Event) -> None:
    try:
        await forwarder.run(stop)
    except Exception as exc:  # a terminal error stops this forwarder, not the server
        log.error("forward %s to %s stopped: %s", forwarder.config.from_topic,
                  forwarder.config.shown_url, exc)


@contextlib.asynccontextmanager
async def forwarding(engine: Engine, configs: Sequence[ForwardConfig]
                     ) -> AsyncIterator[list[Forwarder]]:
    """Run a forwarder per config on ``engine`` while the block runs."""
    stop = asyncio.Event()
    forwarders = [Forwarder(config, engine) for config in configs]
    tasks = [asyncio.create_task(_run(f, stop)) for f in forwarders]
    try:
        yield forwarders
    finally:
        stop.set()
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["forwarding"]
