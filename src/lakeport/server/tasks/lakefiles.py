"""Task files in the data lake, through the file service's own store and lake.

Bundles (the executable and the zips of a task version) are lake objects of their own,
referred to by ``task_versions.parts``. What runs leave (``out/`` and the logs of each attempt)
are files of the file service under ``tasks/<project>/<task>/<run>/``, so the files API, client
and CLI read them. The ``tasks`` tree belongs to a system user; each project's folder is
shared with the project's owner (``admin``) when the project is made, so the owner (and
operators) read and manage its files, nobody else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncConnection

from lakeport.server.files.common import make_dirs
from lakeport.server.files.lake import Lake
from lakeport.server.files.routes_files import save_file
from lakeport.server.files.tables import entries, shares
from lakeport.server.files.upload import Stored, store_stream
from lakeport.server.store import Store
from lakeport.server.store.schema import now_ms
from lakeport.server.store.users import User, ensure_user

SYSTEM_USER = "lakeport-tasks"
ROOT = "tasks"


async def system_user(request: Request) -> User:
    """The user owning the ``tasks`` tree (an operator inside the server only: it has no key)."""
    state = request.app.state
    user = getattr(state, "tasks_system_user", None)
    if user is None:
        found = await ensure_user(state.store, SYSTEM_USER)
        user = state.tasks_system_user = User(found.id, found.name, admin=True)
    return user


def run_folder(project: str, task: str, run_id: int) -> str:
    return f"{ROOT}/{project}/{task}/{run_id}"


async def make_project_folder(conn: AsyncConnection, dialect: str, system: User, project: str,
                              owner_id: int) -> None:
    """``tasks/<project>``, owned by the system user and shared with the project's owner."""
    now = now_ms()
    folder = f"{ROOT}/{project}"
    await make_dirs(conn, dialect, [ROOT, folder], system.id, now)
    entry_id = (await conn.execute(sa.select(entries.c.id).where(entries.c.path == folder))
                ).scalar_one()
    if owner_id != system.id:
        await conn.execute(shares.delete().where(shares.c.entry_id == entry_id,
                                                 shares.c.user_id == owner_id))
        await conn.execute(shares.insert().values(entry_id=entry_id, user_id=owner_id,
                                                  permission="admin", created_ms=now))


async def share_project_folder(conn: AsyncConnection, project: str, user_id: int,
                               permission: str | None) -> None:
    """Give ``user_id`` the files of ``tasks/<project>`` with ``permission`` (a project grant
    mirrored on its folder), or take them away (None)."""
    entry_id = (await conn.execute(sa.select(entries.c.id).where(
        entries.c.path == f"{ROOT}/{project}"))).scalar()
    if entry_id is None:
        return
    await conn.execute(shares.delete().where(shares.c.entry_id == entry_id,
                                             shares.c.user_id == user_id))
    if permission is not None:
        await conn.execute(shares.insert().values(
            entry_id=entry_id, user_id=user_id,
            permission="write" if permission == "produce" else permission, created_ms=now_ms()))


async def put_object(lake: Lake, body: AsyncIterator[bytes]) -> Stored:
    """A new lake object with ``body`` (for bundle parts)."""
    return await store_stream(lake, body)


async def save_run_file(store: Store, lake: Lake, system: User, path: str,
                        body: AsyncIterator[bytes], content_type: str | None = None
                        ) -> dict[str, Any]:
    """Store ``body`` as the file ``path`` (replacing it); its file record."""
    stored = await store_stream(lake, body)
    try:
        info, old_key = await save_file(store, system, path, stored, overwrite=True,
                                         content_type=content_type, tag_list=None, meta_map=None)
    except BaseException:
        await lake.delete(stored.key)
        raise
    if old_key:
        await lake.delete(old_key)
    return info


async def file_object(conn: AsyncConnection, path: str) -> Any:
    """The file entry at ``path`` (None when there is none)."""
    return (await conn.execute(sa.select(entries).where(
        entries.c.path == path, entries.c.kind == "file"))).first()


async def chunks_of(data: bytes) -> AsyncIterator[bytes]:
    yield data


__all__ = ["ROOT", "SYSTEM_USER", "chunks_of", "file_object", "make_project_folder",
           "put_object", "run_folder", "save_run_file", "share_project_folder",
           "system_user"]
