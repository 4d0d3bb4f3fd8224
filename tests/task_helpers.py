"""What the task service's tests share: bundles as zips, API keys made on a store, and
whether a process is still alive."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import zipfile
from pathlib import Path


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """A zip (deflated) of ``files``, name → content."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def zip_file(path: Path, files: dict[str, bytes]) -> Path:
    """``path``, written as a zip of ``files``."""
    path.write_bytes(zip_bytes(files))
    return path


def store_key(store_url: str, user: str, *, worker: bool = False) -> str:
    """A new API key for ``user`` (a worker key with ``worker``), made on the store here."""
    from lakeport.server.store import Store
    from lakeport.server.store.users import create_key

    async def make() -> str:
        async with Store(store_url) as store:
            return await create_key(store, user, worker=worker)

    return asyncio.run(make())


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False
