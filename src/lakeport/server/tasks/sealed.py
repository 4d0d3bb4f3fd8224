"""A ``component`` task's configuration kept sealed: its ``#`` parameters are encrypted in
the lake (:mod:`lakeport.components.sealing`, the key in the server's secret store) and
opened only when the worker running one of its attempts fetches it, which does not cache it.
The configuration is the task's executable (a ``config.json`` in the dependencies zip is kept
as uploaded)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from lakeport.apps.secrets import SecretStore
from lakeport.errors import Invalid

RUNTIME = "component"
PART = "executable"
MAX_BYTES = 16 << 20


def is_sealed(runtime: str, part: str) -> bool:
    """Whether ``part`` of a task of ``runtime`` is stored sealed."""
    return runtime == RUNTIME and part == PART


def seal_configuration(path: Path, name: str) -> None:
    """Seal the uploaded configuration at ``path`` in place; Invalid when it is not one."""
    from lakeport.components.sealing import seal_file

    if path.stat().st_size > MAX_BYTES:
        raise Invalid(f"bad task: the configuration {name} is larger than "
                      f"{MAX_BYTES >> 20} MiB")
    path.write_bytes(seal_file(path.read_bytes(), SecretStore(),
                               f"bad task: the configuration {name}"))


async def opened(body: AsyncIterator[bytes]) -> bytes:
    """The stored configuration ``body`` with its ``#`` parameters opened."""
    from lakeport.components.sealing import unseal_file

    data = b"".join([chunk async for chunk in body])
    return unseal_file(data, SecretStore())
