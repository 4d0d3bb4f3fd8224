"""SQLite baselines for ``bench/topics.py``: the naive per-message commit and batched WAL."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

BATCH = 10_000  # rows per transaction in the WAL baseline


async def naive_sqlite_rate(
    path: Path, total: int, payload: Callable[[int], dict[str, Any]]
) -> float:
    """One INSERT + COMMIT per message through aiosqlite; rollback journal, synchronous=FULL."""
    import aiosqlite

    async with aiosqlite.connect(path) as db:
        await db.execute("PRAGMA journal_mode=DELETE")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute("CREATE TABLE messages (seqno INTEGER PRIMARY KEY, data BLOB)")
        await db.commit()
        start = time.perf_counter()
        for index in range(total):
            data = orjson.dumps(payload(index))
            await db.execute("INSERT INTO messages (data) VALUES (?)", (data,))
            await db.commit()
        return total / (time.perf_counter() - start)


def sqlite_wal_batched_rate(
    path: Path, total: int, payload: Callable[[int], dict[str, Any]]
) -> float:
    """WAL mode, synchronous=FULL, ``executemany`` of ``BATCH`` rows per transaction."""
    batch = [payload(i) for i in range(BATCH)]
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS messages (seqno INTEGER PRIMARY KEY, data BLOB)")
        start = time.perf_counter()
        done = 0
        while done < total:
            take = min(BATCH, total - done)
            rows = [(orjson.dumps(p),) for p in batch[:take]]
            db.execute("BEGIN")
            db.executemany("INSERT INTO messages (data) VALUES (?)", rows)
            db.execute("COMMIT")
            done += take
        return total / (time.perf_counter() - start)
    finally:
        db.close()
