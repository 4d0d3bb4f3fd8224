"""A ``component`` task's configuration kept sealed: its ``#`` parameters are encrypted in
the lake (:mod:`lakeport.components.sealing`, the key in the server's sealing key store) and
opened only when the worker running one of its attempts fetches it, which does not cache it.

The configuration is the task's executable when the entry is the executable; the part is then
marked ``"sealed": true`` in the version's parts. A configuration in the dependencies zip is
kept as uploaded. Sealed values keep the configuration from whoever reads the lake or the
store; a user who may deploy the task's code (write) can run code that reads them.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from lakeport.errors import Invalid
from lakeport.tasks.runtimes.component import ComponentRuntime

RUNTIME = ComponentRuntime.name
PART = "executable"
MAX_BYTES = 16 << 20


def needs_sealing(runtime: str, entry: str | None, executable: str | None) -> bool:
    """Whether a task of ``runtime`` whose entry is ``entry`` keeps its configuration in the
    executable (which is then sealed)."""
    if runtime != RUNTIME or executable is None:
        return False
    return entry is None or posixpath.normpath(entry) == executable


def is_sealed(part: dict[str, Any]) -> bool:
    """Whether a stored part (a version's ``parts`` entry) is sealed."""
    return bool(part.get("sealed"))


def seal_configuration(path: Path, name: str) -> None:
    """Seal the uploaded configuration at ``path`` in place; Invalid when it is not one."""
    from lakeport.components.sealing import key_store, seal_file

    if path.stat().st_size > MAX_BYTES:
        raise Invalid(f"bad task: the configuration {name} is larger than "
                      f"{MAX_BYTES >> 20} MiB")
    path.write_bytes(seal_file(path.read_bytes(), key_store(),
                               f"bad task: the configuration {name}"))


def kept_problem(parts: dict[str, Any], name: str) -> str | None:
    """Why a deploy may not keep the executable of an earlier version as a component task's
    configuration (it was not sealed, nor checked as one), or None."""
    if PART in parts and not is_sealed(parts[PART]):
        return (f"bad task: the configuration {name} was uploaded for another runtime: "
                "upload it again (--executable) with this deploy")
    return None


async def opened(body: AsyncIterator[bytes]) -> bytes:
    """The stored configuration ``body`` with its ``#`` parameters opened."""
    from lakeport.components.sealing import key_store, unseal_file

    data = b"".join([chunk async for chunk in body])
    return await asyncio.to_thread(unseal_file, data, key_store())
