"""An upload into a local-folder lake is on the disk before the server acknowledges it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lakeport.server.files.lake import LocalLake
from lakeport.server.files.upload import store_stream


async def _body() -> AsyncIterator[bytes]:
    yield b"a" * 1000
    yield b"b" * 1000


async def test_an_upload_is_synced_with_its_folder_entries(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    lake = await LocalLake((tmp_path / "lake").as_uri()).open()

    stored = await store_stream(lake, _body())

    path = lake.local_path(stored.key)
    assert path is not None and path.read_bytes() == b"a" * 1000 + b"b" * 1000
    assert stored.size == 2000
    # the object's bytes, its name in its folder and the folder's name in objects/
    assert {str(path), str(path.parent), str(path.parent.parent)} <= set(synced)
