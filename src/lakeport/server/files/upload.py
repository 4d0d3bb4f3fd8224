"""Stream a request body into a new lake object while hashing it; memory stays flat."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from lakeport.server.files.lake import CHUNK, Lake, new_key


@dataclass(frozen=True)
class Stored:
    """A complete object: its key, size and SHA-256 (hex)."""

    key: str
    size: int
    sha256: str


def _write_all(handle: Any, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        written = handle.write(view)
        if not written:
            raise OSError("the lake accepted no bytes")
        view = view[written:]


def _copy(lake: Lake, key: str, handle: Any, digest: Any) -> int:
    """Copy the object ``key`` into ``handle`` (hashing it); its size."""
    size = 0
    with lake.open_read(key) as source:
        while data := source.read(CHUNK):
            digest.update(data)
            _write_all(handle, data)
            size += len(data)
    return size


async def store_stream(lake: Lake, body: AsyncIterator[bytes], *,
                       prepend: str | None = None) -> Stored:
    """Write ``body`` (after the object ``prepend``, when given) to a new object.

    Hashing and writing of one block run in parallel threads while the next block arrives.
    When the body fails midway (the client went away), the partial object is deleted.
    """
    key = new_key()
    digest = hashlib.sha256()
    handle = await asyncio.to_thread(lake.open_write, key)
    pending: asyncio.Future[Any] | None = None
    size = 0
    try:
        if prepend is not None:
            size = await asyncio.to_thread(_copy, lake, prepend, handle, digest)
        buffer = bytearray()
        async for chunk in body:
            buffer += chunk
            if len(buffer) >= CHUNK:
                if pending is not None:
                    await pending
                size += len(buffer)
                pending = asyncio.gather(asyncio.to_thread(digest.update, buffer),
                                         asyncio.to_thread(_write_all, handle, buffer))
                buffer = bytearray()
        if pending is not None:
            await pending
            pending = None
        if buffer:
            size += len(buffer)
            digest.update(buffer)
            await asyncio.to_thread(_write_all, handle, buffer)
        await asyncio.to_thread(handle.close)
    except BaseException:
        if pending is not None:
            with contextlib.suppress(BaseException):
                await pending
        await asyncio.to_thread(lake.abort_write, handle, key)
        raise
    return Stored(key, size, digest.hexdigest())


__all__ = ["Stored", "store_stream"]
