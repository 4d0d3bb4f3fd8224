"""Reaching the streams engine with retries, and stopping on SIGTERM / SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from lakeport.errors import Closed, Transient, Unavailable
from lakeport.streams import Engine, open_engine

logger = logging.getLogger("lakeport.apps")
T = TypeVar("T")


class Stopped(Closed):
    """The app was asked to stop (SIGTERM, SIGINT, ``app.stop()``) before this finished."""


async def unless_stopped(awaitable: Awaitable[T], stop: asyncio.Event, what: str) -> T:
    """The result of ``awaitable``, or :class:`Stopped` (``what``) if ``stop`` is set first."""
    task: asyncio.Future[T] = asyncio.ensure_future(awaitable)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise Stopped(what)
    return task.result()


async def connect_engine(url: str, topics: Iterable[str], *, who: str, timeout: float,
                         backoff: float = 0.2, max_backoff: float = 10.0) -> Engine:
    """Open the engine at ``url`` and create ``topics`` if missing.

    Transient errors are retried with exponential backoff and jitter (each retry is logged)
    until ``timeout`` seconds have passed; then Unavailable carries the last error.
    Terminal errors (a bad URL, ...) are raised at once.
    """
    topics = list(topics)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    attempt = 0
    while True:
        engine = open_engine(url)
        try:
            await engine.open()
            for topic in topics:
                await engine.create_topic(topic, exist_ok=True)
            return engine
        except Transient as exc:
            with contextlib.suppress(Exception):
                await engine.close()
            attempt += 1
            delay = min(max_backoff, backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            if loop.time() + delay > deadline:
                raise Unavailable(f"{who} cannot connect to {url}: gave up after {timeout:g}s: "
                                  f"{exc}") from exc
            logger.warning("%s cannot connect to %s (%s): retry %d in %.1fs",
                           who, url, exc, attempt, delay)
            await asyncio.sleep(delay)
        except BaseException:
            with contextlib.suppress(Exception):
                await engine.close()
            raise


_DEFAULT_HANDLERS: tuple[Any, ...] = (signal.SIG_DFL, signal.default_int_handler, None)


class SignalStopper:
    """Calls ``stop`` on SIGTERM and SIGINT while installed (main thread only)."""

    def __init__(self, stop: Callable[[], None], who: str) -> None:
        self.stop = stop
        self.who = who
        self._installed: list[signal.Signals] = []

    def install(self) -> None:
        """Take SIGTERM and SIGINT unless the program already handles them itself."""
        if self._installed or threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            if signal.getsignal(signum) not in _DEFAULT_HANDLERS:
                continue
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, self._on_signal, signum)
                self._installed.append(signum)

    def _on_signal(self, signum: signal.Signals) -> None:
        logger.info("%s: %s received, stopping", self.who, signum.name)
        self.stop()

    def remove(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in self._installed:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
        self._installed.clear()
