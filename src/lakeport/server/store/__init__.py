"""The platform store: SQL through SQLAlchemy (async) on SQLite or PostgreSQL.

``sqlite:///path`` (the embedded default) and ``postgresql://user@host/db`` are accepted as
users write them; the store picks the async driver (aiosqlite, asyncpg) and migrates the
schema to the latest revision (alembic) when it opens. Each service keeps its tables and
queries in its own module next to this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from lakeport.errors import Invalid, Unavailable
from lakeport.home import open_private, private_folder

MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")
BUSY_SECONDS = 10.0
"""How long a write waits for another (SQLite's ``busy_timeout``; this process's lock)."""
_WRITING: ContextVar[Store | None] = ContextVar("lakeport_store_writing", default=None)
_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg",
            "postgres": "postgresql+asyncpg"}


def async_url(url: str) -> tuple[str, str]:
    """(SQLAlchemy async URL, dialect) of a store URL; Invalid for other schemes."""
    scheme, sep, rest = url.partition("://")
    base = scheme.split("+", 1)[0]
    if not sep or base not in _DRIVERS:
        raise Invalid(f"bad store URL {url!r}: use sqlite:///path/to/file.db or "
                      "postgresql://user@host:5432/database")
    dialect = "sqlite" if base == "sqlite" else "postgresql"
    if dialect == "sqlite":
        path = (rest[1:] if rest.startswith("/") else rest).split("?", 1)[0]
        if path and path != ":memory:" and not path.startswith("file:"):
            # the store holds API key hashes: its folder is 0700 and its file 0600 when made
            # here (SQLite gives its -wal and -shm files the mode of the database file)
            file = Path(path).expanduser()
            if not file.exists():
                private_folder(file.parent)
                with contextlib.suppress(FileExistsError):
                    os.close(open_private(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    return f"{_DRIVERS[base]}://{rest}", dialect


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON",
                   "busy_timeout=10000", "temp_store=MEMORY"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


class Store:
    """An open platform store. ``async with Store(url) as store: ...``."""

    def __init__(self, url: str) -> None:
        self.url = url
        sa_url, self.dialect = async_url(url)
        options: dict[str, Any] = {}
        if self.dialect == "postgresql":
            options.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(sa_url, **options)
        self._writer: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._sync: tuple[sa.Engine, ThreadPoolExecutor] | None = None
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            if ":memory:" not in sa_url and "mode=memory" not in sa_url:
                sync_engine = sa.create_engine(sa_url.replace("sqlite+aiosqlite", "sqlite", 1))
                event.listen(sync_engine, "connect", _sqlite_pragmas)
                self._sync = (sync_engine, ThreadPoolExecutor(1, "lakeport-store"))

    async def open(self) -> Store:
        """Reach the database and migrate it to the latest schema."""
        try:
            async with self.engine.begin() as conn:
                await conn.run_sync(_upgrade)
        except (OperationalError, DBAPIError, OSError) as exc:
            await self.engine.dispose()
            raise Unavailable(f"cannot open the store {self.display_url}: "
                              f"{str(exc).splitlines()[0]}") from exc
        return self

    async def close(self) -> None:
        await self.engine.dispose()
        if self._sync is not None:
            self._sync[1].shutdown(wait=True)
            self._sync[0].dispose()

    async def __aenter__(self) -> Store:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def display_url(self) -> str:
        """The URL without a password."""
        return self.engine.url.render_as_string(hide_password=True).replace(
            "+aiosqlite", "").replace("+asyncpg", "")

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction (committed on success, rolled back on error).

        On SQLite, which has one writer at a time, this process's transactions take turns
        on a lock: waiting on it is a queue, where SQLite's own busy handler would poll
        with sleeps of up to 100 ms (another process still waits by ``busy_timeout``)."""
        if self.dialect != "sqlite" or _WRITING.get() is self:
            async with self.engine.begin() as conn:
                yield conn
            return
        lock = await self._take_write_lock()
        mark = _WRITING.set(self)
        try:
            async with self.engine.begin() as conn:
                yield conn
        finally:
            _WRITING.reset(mark)
            lock.release()

    async def transact(self, work: Callable[[sa.Connection], T]) -> T:
        """``work(conn)``, plain synchronous SQLAlchemy code, in one transaction; its result.

        For the hot paths that run several statements per request: on SQLite the whole
        transaction runs in one hop to the store's thread, on a synchronous connection (each
        statement of an ``AsyncConnection`` is a round trip to aiosqlite's thread); on
        PostgreSQL it runs on the async engine (``run_sync``)."""
        if self._sync is None:
            async with self.begin() as conn:
                return await conn.run_sync(work)
        engine, thread = self._sync

        def run() -> T:
            with engine.begin() as conn:
                return work(conn)

        if _WRITING.get() is self:
            raise RuntimeError("Store.transact inside Store.begin would wait for itself")
        lock = await self._take_write_lock()
        try:
            done = asyncio.get_running_loop().run_in_executor(thread, run)
        except BaseException:
            lock.release()
            raise
        done.add_done_callback(lambda _: lock.release())  # not before the thread is done
        return await asyncio.shield(done)

    async def _take_write_lock(self) -> asyncio.Lock:
        """This process's SQLite write lock, taken; Unavailable after waiting as long as
        SQLite would (``busy_timeout``) for another transaction."""
        loop = asyncio.get_running_loop()
        if self._writer is None or self._writer[0] is not loop:
            self._writer = (loop, asyncio.Lock())
        lock = self._writer[1]
        try:
            async with asyncio.timeout(BUSY_SECONDS):
                await lock.acquire()
        except TimeoutError:
            raise Unavailable(f"the store is busy: a write waited {BUSY_SECONDS:g} s for "
                              "another one to end") from None
        return lock

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads."""
        async with self.engine.connect() as conn:
            yield conn


def _upgrade(connection: Any) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def insert_ignore(dialect: str, table: Any) -> Any:
    """INSERT that skips rows whose unique key exists (``dialect``: ``Store.dialect``)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table).on_conflict_do_nothing()


__all__ = ["MIGRATIONS", "Store", "async_url", "insert_ignore"]
