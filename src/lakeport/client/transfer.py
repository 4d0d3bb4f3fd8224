"""Request bodies from files, bytes or async iterables, and downloads into files — streamed in
chunks, so memory stays flat for any size."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import httpx

from lakeport.errors import Invalid, NotFound
from lakeport.overlap import overlapped_blocks

CHUNK = 4 << 20
Source = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes] | AsyncIterable[bytes]
Dest = str | os.PathLike[str] | IO[bytes]


def quote_segment(name: str) -> str:
    """One URL path segment (``.`` and ``..`` encoded so they reach the server as they are)."""
    if name in (".", ".."):
        return name.replace(".", "%2E")
    return quote(name, safe="")


def quote_path(path: str) -> str:
    """A slash-separated path for a URL, each segment quoted (the server validates it)."""
    return "/".join(quote_segment(part) for part in str(path).split("/"))


class BodySource:
    """Makes the request body afresh for each attempt; ``replayable`` says whether it can."""

    def __init__(self, source: Source, chunk_size: int = CHUNK) -> None:
        self.chunk_size = chunk_size
        self.source = source
        self.replayable = True
        self._start: int | None = None
        if isinstance(source, bytes | bytearray | memoryview):
            self.source = bytes(source)
        elif isinstance(source, str | os.PathLike):
            path = Path(source)
            if not path.is_file():
                raise NotFound(f"no such local file: {path}")
        elif hasattr(source, "read"):
            try:
                self._start = source.tell() if source.seekable() else None  # type: ignore[union-attr]
            except (OSError, AttributeError, ValueError):
                self._start = None
            self.replayable = self._start is not None
        elif isinstance(source, AsyncIterable):
            self.replayable = False
            self._iterator: AsyncIterator[bytes] | None = None
        else:
            raise Invalid(f"cannot upload a {type(source).__name__}: give bytes, a file path, "
                          "a binary file object or an async iterable of bytes")

    def __call__(self) -> bytes | AsyncIterator[bytes]:
        source = self.source
        if isinstance(source, bytes):
            return source
        if isinstance(source, str | os.PathLike):
            return self._read_path(Path(source))
        if hasattr(source, "read"):
            if self._start is not None:
                source.seek(self._start)  # type: ignore[union-attr]
            return self._read_file(source)  # type: ignore[arg-type]
        if self._iterator is None:
            self._iterator = aiter(source)  # type: ignore[arg-type]
        return self._iterator

    async def _read_path(self, path: Path) -> AsyncIterator[bytes]:
        try:
            file = path.open("rb")
        except OSError as exc:
            raise Invalid(f"cannot read {path}: {exc.strerror or exc}") from exc
        with file:
            async for chunk in self._read_file(file):
                yield chunk

    async def _read_file(self, file: IO[bytes]) -> AsyncIterator[bytes]:
        while True:
            chunk = await asyncio.to_thread(file.read, self.chunk_size)
            if not chunk:
                return
            if isinstance(chunk, str):
                raise Invalid("the upload source is a text file: open it in binary mode ('rb')")
            yield chunk


async def write_response(response: httpx.Response, dest: Dest,
                         progress: Callable[[int], Any] | None = None) -> int:
    """Stream ``response``'s body into ``dest`` (a path or a binary file); the byte count.

    A path is written as ``<name>.part`` and renamed when complete, so a broken download
    leaves no half file under the final name.
    """
    if isinstance(dest, str | os.PathLike):
        path = Path(dest)
        part = path.with_name(path.name + ".part")
        try:
            with part.open("wb") as file:
                written = await _copy(response, file, progress)
            part.replace(path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                part.unlink()
            raise Invalid(f"cannot write {path}: {exc.strerror or exc}") from exc
        except BaseException:
            with contextlib.suppress(OSError):
                part.unlink()
            raise
        return written
    return await _copy(response, dest, progress)


def _write_chunks(file: IO[bytes], chunks: list[bytes]) -> None:
    for chunk in chunks:
        file.write(chunk)


async def _copy(response: httpx.Response, file: IO[bytes],
                progress: Callable[[int], Any] | None) -> int:
    """Write the body block by block, each in a worker thread while the next arrives."""

    async def write(block: list[bytes]) -> None:
        await asyncio.to_thread(_write_chunks, file, block)
        if progress is not None:
            progress(sum(map(len, block)))

    return await overlapped_blocks(response.aiter_bytes(), write)


__all__ = ["CHUNK", "BodySource", "Dest", "Source", "quote_path", "quote_segment",
           "write_response"]
