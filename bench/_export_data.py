"""Readings for ``bench/export.py``: 100 assets x 10 datastreams of float values.

Payloads follow the app message format (``lakeport.apps.messages.Number``):
``{"asset": "asset-001", "datastream": "ds-01", "value": 21.53, "unit": "C",
"time": "2026-01-15T00:00:00.000Z", "type": "number"}``. Reading ``i`` is asset ``i % 100``,
datastream ``(i // 100) % 10`` at second ``i // 1000`` after midnight: every pair reports
once a second, and 10,000,000 readings stay within one day (one ``date=`` partition).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from lakeport.streams.base import Engine

ASSETS = [f"asset-{n:03d}" for n in range(1, 101)]
DATASTREAMS = [f"ds-{n:02d}" for n in range(1, 11)]
PAIRS = [(asset, ds) for ds in DATASTREAMS for asset in ASSETS]  # 1,000 per second
VALUES = [round(18.0 + (n * 7919 % 1000) / 100, 2) for n in range(997)]
START = datetime(2026, 1, 15, tzinfo=UTC)
BATCH = 10_000  # readings per produce_many call


def stamp(second: int) -> str:
    """ISO time of ``second`` seconds after the start, in milliseconds with ``Z``."""
    return (START + timedelta(seconds=second)).isoformat(timespec="milliseconds")[:-6] + "Z"


def reading(index: int) -> dict[str, Any]:
    """Reading number ``index`` (see the module docstring)."""
    asset, ds = PAIRS[index % len(PAIRS)]
    return {"asset": asset, "datastream": ds, "value": VALUES[index % len(VALUES)],
            "unit": "C", "time": stamp(index // len(PAIRS)), "type": "number"}


def readings(first: int, count: int) -> list[dict[str, Any]]:
    """Readings ``first .. first + count - 1``, built a second (1,000 readings) at a time."""
    out: list[dict[str, Any]] = []
    per_second = len(PAIRS)
    index, end = first, first + count
    while index < end:
        second = index // per_second
        when = stamp(second)
        stop = min(end, (second + 1) * per_second)
        out.extend(
            {"asset": PAIRS[i % per_second][0], "datastream": PAIRS[i % per_second][1],
             "value": VALUES[i % 997], "unit": "C", "time": when, "type": "number"}
            for i in range(index, stop)
        )
        index = stop
    return out


def batches(total: int) -> Iterator[list[dict[str, Any]]]:
    for first in range(0, total, BATCH):
        yield readings(first, min(BATCH, total - first))


async def produce_readings(
    engine: Engine, topic: str, total: int, say: Callable[[str], None], label: str
) -> float:
    """Produce ``total`` readings durably into ``topic``; returns the seconds it took."""
    start = time.perf_counter()
    last_said = 0.0
    async with engine.producer("bench-simulator", topic) as producer:
        done = 0
        for batch in batches(total):
            await producer.produce_many(batch)
            done += len(batch)
            now = time.perf_counter()
            if now - last_said > 0.5:
                rate = done / (now - start)
                say(f"{label}: produced {done:,} of {total:,} readings ({rate:,.0f}/s)")
                last_said = now
    return time.perf_counter() - start
