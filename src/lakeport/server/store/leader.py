"""One server among several on one PostgreSQL store: the one holding a session advisory lock
(on SQLite there is one server, which always holds it)."""

from __future__ import annotations

import contextlib
import logging

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from lakeport.server.store import Store

log = logging.getLogger("lakeport.server")


class AdvisoryLock:
    """``await lock.held()`` each round: True while this server holds ``key``, taken when it
    is free (False the round its session is found lost; it is tried again the next round);
    ``release()`` at the end. ``what`` names the job in the log (``leads the task scheduler``)."""

    def __init__(self, store: Store, key: int, what: str) -> None:
        self.store, self.key, self.what = store, key, what
        self._conn: AsyncConnection | None = None

    async def held(self) -> bool:
        if self.store.dialect != "postgresql":
            return True
        if self._conn is not None:
            try:
                await self._conn.execute(sa.text("SELECT 1"))
                return True
            except Exception:  # the session and its lock are gone
                await self.release()
                return False
        conn = await self.store.engine.connect()
        try:
            got = (await conn.execute(sa.select(sa.func.pg_try_advisory_lock(self.key)))
                   ).scalar()
            await conn.commit()
        except BaseException:
            await conn.close()
            raise
        if not got:
            await conn.close()
            return False
        self._conn = conn
        log.info("this server %s", self.what)
        return True

    async def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None


__all__ = ["AdvisoryLock"]
