"""Stream a request body into a new lake object while hashing it; memory stays flat."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from lakeport.overlap import overlapped_blocks
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


def _write_block(handle: Any, block: list[bytes]) -> None:
    for chunk in block:
        _write_all(handle, chunk)


def _hash_block(digest: Any, block: list[bytes]) -> None:
    for chunk in block:
        digest.update(chunk)


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

    async def keep(block: list[bytes]) -> None:
        await asyncio.gather(asyncio.to_thread(_hash_block, digest, block),
                             asyncio.to_thread(_write_block, handle, block))

    size = 0
    try:
        if prepend is not None:
            size = await asyncio.to_thread(_copy, lake, prepend, handle, digest)
        size += await overlapped_blocks(body, keep)
        await asyncio.to_thread(lake.finish_write, handle, key)
    except BaseException:
        await asyncio.to_thread(lake.abort_write, handle, key)
        raise
    return Stored(key, size, digest.hexdigest())


__all__ = ["Stored", "store_stream"]
