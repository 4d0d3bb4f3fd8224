"""Waking workers' long polls when runs are queued on this server (other servers' runs are
found by polling every :attr:`Wakeup.poll` seconds)."""

from __future__ import annotations

import asyncio
import contextlib


class Wakeup:
    """A signal that is replaced each time it fires: take :meth:`current`, look for work,
    then :meth:`wait` on what you took, so nothing queued in between is missed."""

    def __init__(self, poll: float = 0.5) -> None:
        self.poll = poll
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event:
        return self._event

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, signal: asyncio.Event, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(signal.wait(), timeout)


__all__ = ["Wakeup"]
