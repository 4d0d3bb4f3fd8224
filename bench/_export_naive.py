"""The naive export design for ``bench/export.py``: a local SQLite buffer between topic and lake.

Messages go in one aiosqlite ``INSERT`` + ``COMMIT`` each; an upload loop reads
``SELECT ... ORDER BY timestamp LIMIT batch`` into pandas, writes it with ``to_parquet`` and
``DELETE``\\ s the exported rows. Both sides are measured apart: msgs/s in and rows/s out.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

SCHEMA = ("CREATE TABLE IF NOT EXISTS data (timestamp TEXT, asset TEXT, datastream TEXT, "
          "value REAL, unit TEXT)")
INDEX = "CREATE INDEX IF NOT EXISTS data_timestamp ON data (timestamp)"
COLUMNS = ["timestamp", "asset", "datastream", "value", "unit"]


def row_of(data: bytes) -> tuple[Any, ...]:
    payload = orjson.loads(data)
    return (payload["time"], payload["asset"], payload["datastream"], payload["value"],
            payload.get("unit"))


async def naive_in_rate(path: Path, messages: list[bytes]) -> float:
    """msgs/s of one INSERT + COMMIT per message (rollback journal, synchronous=FULL)."""
    import aiosqlite

    async with aiosqlite.connect(path) as db:
        await db.execute("PRAGMA journal_mode=DELETE")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute(SCHEMA)
        await db.execute(INDEX)
        await db.commit()
        start = time.perf_counter()
        for data in messages:
            await db.execute("INSERT INTO data VALUES (?, ?, ?, ?, ?)", row_of(data))
            await db.commit()
        return len(messages) / (time.perf_counter() - start)


def prefill(path: Path, rows: list[tuple[Any, ...]]) -> None:
    """Fill the buffer table quickly (not measured): one transaction."""
    db = sqlite3.connect(path)
    try:
        db.execute(SCHEMA)
        db.execute(INDEX)
        db.executemany("INSERT INTO data VALUES (?, ?, ?, ?, ?)", rows)
        db.commit()
    finally:
        db.close()


def table_of(records: list[tuple[Any, ...]]) -> Any:
    """A pandas DataFrame of the rows, else a pyarrow Table (when pandas is missing)."""
    try:
        import pandas as pd
    except ImportError:
        import pyarrow as pa

        return pa.Table.from_pylist([dict(zip(COLUMNS, r, strict=True)) for r in records])
    return pd.DataFrame.from_records(records, columns=COLUMNS)


def write_parquet(frame: Any, path: Path) -> None:
    if hasattr(frame, "to_parquet"):
        frame.to_parquet(path, compression="zstd")
    else:
        import pyarrow.parquet as pq

        pq.write_table(frame, path, compression="zstd")


async def naive_out_rate(
    path: Path, folder: Path, batch: int, say: Callable[[str], None]
) -> tuple[float, int]:
    """rows/s of SELECT LIMIT batch → pandas → to_parquet → DELETE until the table is empty.

    Returns the rate and the rows exported.
    """
    import aiosqlite

    folder.mkdir(parents=True, exist_ok=True)
    exported = 0
    async with aiosqlite.connect(path) as db:
        await db.execute("PRAGMA synchronous=FULL")
        start = time.perf_counter()
        while True:
            cursor = await db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM data ORDER BY timestamp LIMIT ?", (batch,))
            records = list(await cursor.fetchall())
            if not records:
                break
            frame = table_of(records)
            write_parquet(frame, folder / f"export-{time.time_ns()}.parquet")
            await db.execute("DELETE FROM data WHERE rowid IN "
                             "(SELECT rowid FROM data ORDER BY timestamp LIMIT ?)", (batch,))
            await db.commit()
            exported += len(records)
            say(f"naive: exported {exported:,} rows")
        elapsed = time.perf_counter() - start
    return exported / elapsed, exported


def pandas_version() -> str | None:
    try:
        import pandas as pd
    except ImportError:
        return None
    return pd.__version__
