"""Waiting on a condition with a deadline, in place of sleeping "long enough".

The helpers return whether the condition came true in time; the caller asserts on that with
a message naming what it waited for: ``assert wait_until(lambda: done(), 10), "the export"``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

WAIT = 15.0  # seconds to wait for something that must happen (generous for busy machines)


def wait_until(condition: Callable[[], object], timeout: float = WAIT) -> bool:
    """Poll ``condition()`` until it is true (True) or ``timeout`` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


async def eventually(condition: Callable[[], object | Awaitable[object]],
                     timeout: float = WAIT) -> bool:
    """Like :func:`wait_until` without blocking the event loop; ``condition`` may be async."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        met = condition()
        if inspect.isawaitable(met):
            met = await met
        if met:
            return True
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)


async def still_waiting(task: asyncio.Future[object], quiet: float) -> bool:
    """Whether ``task`` is still not done after ``quiet`` seconds (without cancelling it).

    For checks that something *waits*: only watching for a while can tell that it is blocked
    rather than slow to finish."""
    done, _ = await asyncio.wait({task}, timeout=quiet)
    return not done
