"""Where file bytes live: a local folder, S3 or Azure, chosen by the lake URL.

``file:///folder`` (the default), ``s3://bucket/prefix`` (s3fs; endpoint and credentials from
the AWS environment, including ``AWS_ENDPOINT_URL``) and ``abfs://container@account/prefix``
(adlfs; ``AZURE_STORAGE_CONNECTION_STRING`` or ``AZURE_STORAGE_ACCOUNT_KEY``). Objects are
stored under keys of their own (``objects/ab/<uuid>``), never under the user's path, so a
rename or an overwrite is one metadata update. Calls block, so they run in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from lakeport.durable import fsync_path
from lakeport.errors import Invalid, Unavailable
from lakeport.home import open_private, private_folder

CHUNK = 4 * 1024 * 1024
"""Bytes per read or write call."""
REMOTE_BLOCK = 8 * 1024 * 1024
"""Block size of remote objects (S3 multipart parts must be at least 5 MB)."""

_EXTRAS = {"s3": ("s3fs", "s3"), "abfs": ("adlfs", "azure"), "abfss": ("adlfs", "azure")}


def new_key() -> str:
    """A fresh object key."""
    name = uuid.uuid4().hex
    return f"objects/{name[:2]}/{name}"


class Lake:
    """Object storage behind the file service: write a stream, read a range, delete, move."""

    def __init__(self, url: str) -> None:
        self.url = url
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.root: Path | None = None
        self.fs: Any = None
        self.prefix = ""
        if self.scheme == "file":
            if parts.netloc not in ("", "localhost") or not parts.path:
                raise Invalid(f"bad lake URL {url!r}: use file:///absolute/folder")
            self.root = Path(unquote(parts.path))
        elif self.scheme in _EXTRAS:
            self.fs, self.prefix = _remote_fs(url, self.scheme)
        else:
            raise Invalid(f"bad lake URL {url!r}: use file:///folder, s3://bucket/prefix "
                          "or abfs://container@account/prefix")

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> Lake:
        """Check that the lake can be reached (a folder is created when missing, 0700)."""
        try:
            await asyncio.to_thread(self._check)
        except Exception as exc:
            raise Unavailable(f"cannot reach the lake {self.url}: {exc}") from exc
        return self

    def _check(self) -> None:
        if self.root is not None:
            private_folder(self.root)
            return
        with contextlib.suppress(FileNotFoundError):
            self.fs.ls(self.prefix, detail=False)

    def location(self, key: str) -> str:
        """Where ``key`` lives: a local path or ``bucket/prefix/key``."""
        if self.root is not None:
            return str(self.root / key)
        return f"{self.prefix}/{key}"

    def local_path(self, key: str) -> Path | None:
        return self.root / key if self.root is not None else None

    # -- blocking primitives (call them in a thread) ---------------------------------------
    def open_write(self, key: str) -> BinaryIO:
        if self.root is not None:
            path = self.root / key
            if not path.parent.is_dir():
                private_folder(path.parent)
                fsync_path(path.parent.parent)
            return os.fdopen(open_private(path), "wb", buffering=0)  # 0600, whatever the umask
        return self.fs.open(self.location(key), "wb", block_size=REMOTE_BLOCK)

    def finish_write(self, handle: BinaryIO, key: str) -> None:
        """Complete a write before its metadata is saved: on a local folder the object and
        its folder entry are on the disk (fsync), so an acknowledged upload survives a power
        loss; on S3 or Azure, closing commits the upload."""
        if self.root is None:
            handle.close()
            return
        try:
            os.fsync(handle.fileno())
        finally:
            handle.close()
        fsync_path((self.root / key).parent)

    def abort_write(self, handle: BinaryIO, key: str) -> None:
        """Drop a write that did not finish: nothing of it stays in the lake."""
        discard = getattr(handle, "discard", None)
        with contextlib.suppress(Exception):
            if discard is not None and self.root is None:
                discard()
            else:
                handle.close()
        with contextlib.suppress(Exception):
            self.delete_now(key)

    def open_read(self, key: str) -> BinaryIO:
        if self.root is not None:
            return open(self.root / key, "rb", buffering=0)
        return self.fs.open(self.location(key), "rb", block_size=REMOTE_BLOCK)

    def delete_now(self, key: str) -> None:
        if self.root is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.root / key)
            return
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.location(key))

    # -- async API -------------------------------------------------------------------------
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


def _remote_fs(url: str, scheme: str) -> tuple[Any, str]:
    module, extra = _EXTRAS[scheme]
    try:
        __import__(module)
    except ImportError as exc:
        raise Invalid(f"the lake URL {url!r} needs {module}: pip install 'lakeport[{extra}]'") \
            from exc
    rest = url.partition("://")[2].split("?", 1)[0]
    location, _, prefix = rest.partition("/")
    if scheme == "s3":
        import s3fs

        if not location:
            raise Invalid(f"bad lake URL {url!r}: expected s3://bucket/prefix")
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True,
                               client_kwargs={"region_name": region} if region else {})
        return fs, "/".join(p for p in (location, prefix.strip("/")) if p)
    import adlfs

    container, at, host = location.partition("@")
    account = host.split(".", 1)[0] if at else os.environ.get("AZURE_STORAGE_ACCOUNT_NAME")
    if not container:
        raise Invalid(f"bad lake URL {url!r}: expected abfs://container@account/prefix")
    options: dict[str, Any] = {"skip_instance_cache": True}
    if os.environ.get("AZURE_STORAGE_CONNECTION_STRING"):
        options["connection_string"] = os.environ["AZURE_STORAGE_CONNECTION_STRING"]
    else:
        options["account_name"] = account
        if os.environ.get("AZURE_STORAGE_ACCOUNT_KEY"):
            options["account_key"] = os.environ["AZURE_STORAGE_ACCOUNT_KEY"]
        else:
            options["anon"] = False
    fs = adlfs.AzureBlobFileSystem(**options)
    return fs, "/".join(p for p in (container, prefix.strip("/")) if p)


__all__ = ["CHUNK", "Lake", "new_key"]
