"""The lake plug point: where the file service keeps object bytes, one module per backend.

Objects are stored under keys of their own (``objects/ab/<uuid>``), never under the user's
path, so a rename or an overwrite is one metadata update. A backend implements the blocking
primitives below; the async methods around them run those in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import BinaryIO, Self

from lakeport.errors import Unavailable

CHUNK = 4 * 1024 * 1024
"""Bytes per read or write call."""


def new_key() -> str:
    """A fresh object key."""
    name = uuid.uuid4().hex
    return f"objects/{name[:2]}/{name}"


class Lake(ABC):
    """Object storage behind the file service: write a stream, read a range, delete, list."""

    def __init__(self, url: str) -> None:
        self.url = url

    # -- what a backend implements (blocking: call them in a worker thread) ----------------
    @abstractmethod
    def check(self) -> None:
        """Fail unless the lake can be reached; create what a fresh lake needs."""

    @abstractmethod
    def open_write(self, key: str) -> BinaryIO:
        """A handle that writes a new object ``key``."""

    @abstractmethod
    def finish_write(self, handle: BinaryIO, key: str) -> None:
        """Complete a write before its metadata is saved: after this the object is durable."""

    @abstractmethod
    def open_read(self, key: str) -> BinaryIO:
        """A seekable handle on the object ``key`` (FileNotFoundError when there is none)."""

    @abstractmethod
    def delete_now(self, key: str) -> None:
        """Delete the object ``key``; a missing one is fine."""

    @abstractmethod
    def object_ages(self) -> dict[str, float]:
        """Every object key under ``objects/`` with its age in seconds."""

    # -- shared ----------------------------------------------------------------------------
    def abort_write(self, handle: BinaryIO, key: str) -> None:
        """Drop a write that did not finish: nothing of it stays in the lake."""
        discard = getattr(handle, "discard", None)  # fsspec: abandon the upload, commit nothing
        with contextlib.suppress(Exception):
            if discard is not None:
                discard()
            else:
                handle.close()
        with contextlib.suppress(Exception):
            self.delete_now(key)

    async def open(self) -> Self:
        """Check that the lake can be reached (see :meth:`check`)."""
        try:
            await asyncio.to_thread(self.check)
        except Exception as exc:
            raise Unavailable(f"cannot reach the lake {self.url}: {exc}") from exc
        return self

    async def delete(self, *keys: str) -> None:
        """Delete objects (missing ones are fine), one after the other in a worker thread."""

        def delete_all() -> None:
            for key in keys:
                self.delete_now(key)

        await asyncio.to_thread(delete_all)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes ``start`` ≤ i < ``end`` of an object, in chunks (opened before returning,
        so a missing object fails here rather than midway through a response)."""
        handle = await asyncio.to_thread(self.open_read, key)
        if start:
            await asyncio.to_thread(handle.seek, start)
        return _chunks(handle, start, end)


async def _chunks(handle: BinaryIO, start: int, end: int | None) -> AsyncIterator[bytes]:
    """Read ahead: the next chunk is read in a worker thread while this one is sent."""

    def read(position: int) -> asyncio.Future[bytes] | None:
        if end is not None and position >= end:
            return None
        size = CHUNK if end is None else min(CHUNK, end - position)
        return asyncio.ensure_future(asyncio.to_thread(handle.read, size))

    reading = read(start)
    try:
        position = start
        while reading is not None:
            data = await reading
            reading = None
            if not data:
                break
            position += len(data)
            reading = read(position)
            yield data
    finally:
        if reading is not None:
            with contextlib.suppress(Exception):
                await reading
        await asyncio.to_thread(handle.close)


__all__ = ["CHUNK", "Lake", "new_key"]
