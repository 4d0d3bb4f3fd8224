"""Handle a stream of byte chunks in blocks, each block while the next one arrives."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, Awaitable, Callable

BLOCK = 4 << 20
"""Bytes per block, about."""


async def overlapped_blocks(chunks: AsyncIterable[bytes],
                            handle: Callable[[list[bytes]], Awaitable[object]],
                            block_size: int = BLOCK) -> int:
    """Await ``handle(block)`` for each block of about ``block_size`` bytes of ``chunks`` (the
    chunks as they came, never joined), overlapped with receiving the next block; the byte
    count. When the stream fails, the block in hand is finished first and the stream's error
    is raised."""
    total = 0
    block: list[bytes] = []
    size = 0
    pending: asyncio.Future[object] | None = None
    try:
        async for chunk in chunks:
            block.append(chunk)
            size += len(chunk)
            if size >= block_size:
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(handle(block))
                total += size
                block, size = [], 0
    except BaseException:
        if pending is not None:
            with contextlib.suppress(BaseException):
                await pending
        raise
    if pending is not None:
        await pending
    if block:
        await handle(block)
        total += size
    return total


__all__ = ["BLOCK", "overlapped_blocks"]
