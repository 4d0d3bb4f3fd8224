"""A lake in a local folder: ``file:///folder`` (created 0700 when missing, objects 0600).

A finished write is on the disk with its folder entries (fsync) before its metadata is saved,
so an acknowledged upload survives a power loss.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from lakeport.durable import fsync_path
from lakeport.errors import Invalid
from lakeport.home import open_private, private_folder
from lakeport.server.files.lake.base import Lake


class LocalLake(Lake):
    """Objects as files below one folder."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        parts = urlsplit(url)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost") or not parts.path:
            raise Invalid(f"bad lake URL {url!r}: use file:///absolute/folder")
        self.root = Path(unquote(parts.path))

    def local_path(self, key: str) -> Path:
        """The file holding the object ``key``."""
        return self.root / key

    def check(self) -> None:
        private_folder(self.root)

    def open_write(self, key: str) -> BinaryIO:
        path = self.root / key
        if not path.parent.is_dir():
            private_folder(path.parent)
            fsync_path(path.parent.parent)
        return os.fdopen(open_private(path), "wb", buffering=0)  # 0600, whatever the umask

    def finish_write(self, handle: BinaryIO, key: str) -> None:
        try:
            os.fsync(handle.fileno())
        finally:
            handle.close()
        fsync_path((self.root / key).parent)

    def open_read(self, key: str) -> BinaryIO:
        return open(self.root / key, "rb", buffering=0)

    def delete_now(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.root / key)

    def object_ages(self) -> dict[str, float]:
        now = time.time()
        ages: dict[str, float] = {}
        for folder, _, names in os.walk(self.root / "objects"):
            for name in names:
                path = os.path.join(folder, name)
                try:
                    ages[os.path.relpath(path, self.root)] = now - os.stat(path).st_mtime
                except FileNotFoundError:
                    continue
        return ages


__all__ = ["LocalLake"]
