"""Waking workers' long polls when runs are queued on this server, one waiting claim per
queued run (runs queued by another server, or whose retry backoff ends, are found by polling
every :attr:`Wakeup.poll` seconds)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class Wakeup:
    """Waiting claims in arrival order. Take a :meth:`ticket` before looking for work, so a
    run queued meanwhile is not missed; :meth:`wait` on it when there was none; give it
    back with :meth:`done` either way."""

    def __init__(self, poll: float = 0.5) -> None:
        self.poll = poll
        self._waiting: deque[asyncio.Future[None]] = deque()

    def ticket(self) -> asyncio.Future[None]:
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(ticket)
        return ticket

    async def wait(self, ticket: asyncio.Future[None], timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(ticket), timeout)

    def done(self, ticket: asyncio.Future[None], *, pass_on: bool) -> None:
        """Give the ticket back; with ``pass_on`` (its claim leaves without looking for work
        again), a wake-up it got goes to the next waiting claim."""
        with contextlib.suppress(ValueError):
            self._waiting.remove(ticket)
        woken = ticket.done() and not ticket.cancelled()
        ticket.cancel()
        if woken and pass_on:
            self.notify(1)

    def notify(self, runs: int = 1) -> None:
        """``runs`` were queued: wake that many waiting claims."""
        while runs > 0 and self._waiting:
            ticket = self._waiting.popleft()
            if not ticket.done():
                ticket.set_result(None)
                runs -= 1


__all__ = ["Wakeup"]
