"""The store's transactions: many writers at once (async ``begin`` and synchronous
``transact``) all commit, none sees SQLite's "database is locked"; a failed ``transact`` changes
nothing; a write that waits too long for another is a clear Unavailable; ``transact`` inside
``begin`` is refused rather than waiting for itself. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

import lakeport.server.store as store_module
from lakeport.errors import Unavailable
from lakeport.server.store import Store

pytestmark = pytest.mark.timeout(60)
ROWS = sa.table("transact_rows", sa.column("id", sa.Integer), sa.column("who", sa.String))


async def _table(store: Store) -> None:
    async with store.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE transact_rows (id INTEGER PRIMARY KEY, "
                                   "who VARCHAR(20) NOT NULL)"))


async def test_many_writers_at_once_all_commit(store_url: str) -> None:
    async with Store(store_url) as store:
        await _table(store)

        async def by_begin(number: int) -> None:
            async with store.begin() as conn:
                await conn.execute(sa.insert(ROWS).values(id=number, who="begin"))
                await asyncio.sleep(0)  # others queue meanwhile
                await conn.execute(sa.update(ROWS).where(ROWS.c.id == number).values(
                    who="begin!"))

        def inserting(number: int) -> Callable[[sa.Connection], int]:
            def work(conn: sa.Connection) -> int:
                conn.execute(sa.insert(ROWS).values(id=number, who="transact"))
                return int(conn.execute(sa.select(sa.func.count()).select_from(ROWS))
                           .scalar_one())
            return work

        results = await asyncio.gather(
            *(by_begin(n) for n in range(0, 100, 2)),
            *(store.transact(inserting(n)) for n in range(1, 100, 2)))
        assert all(isinstance(seen, int) and seen >= 1 for seen in results[50:])
        async with store.connect() as conn:
            rows = (await conn.execute(sa.select(ROWS.c.who, sa.func.count())
                                       .group_by(ROWS.c.who))).all()
        assert dict(rows) == {"begin!": 50, "transact": 50}


async def test_a_failed_transact_changes_nothing(store_url: str) -> None:
    async with Store(store_url) as store:
        await _table(store)

        def fails(conn: sa.Connection) -> None:
            conn.execute(sa.insert(ROWS).values(id=1, who="x"))
            raise ValueError("no")

        with pytest.raises(ValueError):
            await store.transact(fails)
        assert await store.transact(lambda conn: conn.execute(
            sa.select(sa.func.count()).select_from(ROWS)).scalar_one()) == 0


async def test_transact_inside_begin_is_refused(tmp_path: Path) -> None:
    async with Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        async with store.begin() as conn:
            await conn.execute(sa.text("SELECT 1"))
            with pytest.raises(RuntimeError, match=r"inside Store\.begin"):
                await store.transact(lambda c: None)


async def test_a_write_waiting_too_long_is_unavailable(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "BUSY_SECONDS", 0.3)
    async with Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        await _table(store)
        holding = asyncio.Event()
        release = asyncio.Event()

        async def slow_writer() -> None:
            async with store.begin() as conn:
                await conn.execute(sa.insert(ROWS).values(id=1, who="slow"))
                holding.set()
                await release.wait()

        slow = asyncio.create_task(slow_writer())
        await holding.wait()
        with pytest.raises(Unavailable, match="the store is busy"):
            await store.transact(lambda conn: conn.execute(sa.insert(ROWS).values(
                id=2, who="late")))
        release.set()
        await slow
        assert await store.transact(lambda conn: conn.execute(
            sa.select(ROWS.c.who).order_by(ROWS.c.id)).scalars().all()) == ["slow"]
