"""A query's whole range as a download: CSV or Parquet, streamed in chunks.

Columns: ``sensor, feature, property, time, value``. In Parquet ``time`` is
``timestamp[ms, UTC]`` and ``value`` is float64 when every datastream holds numbers, else text
(booleans as ``true``/``false``, objects as JSON).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from fastapi.responses import StreamingResponse

from lakeport.allocator import collector_paused
from lakeport.server.observations.catalog import text_value
from lakeport.server.observations.select import Stream, in_range
from lakeport.server.observations.tables import observations
from lakeport.server.store import Store
from lakeport.server.times import format_times

CHUNK = 50_000
PARQUET = "application/vnd.apache.parquet"
obs = observations.c


def response(store: Store, streams: Sequence[Stream], low: int | None, high: int | None,
             order: str, fmt: str) -> StreamingResponse:
    """The download of ``streams`` between ``low`` and ``high`` (ms) as ``fmt``."""
    chunks = _chunks(store, streams, low, high, order)
    numeric = all(s.data_type == "number" for s in streams)
    if fmt == "csv":
        return StreamingResponse(_csv(chunks), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition":
                                          'attachment; filename="observations.csv"'})
    return StreamingResponse(_parquet(chunks, numeric), media_type=PARQUET,
                             headers={"Content-Disposition":
                                      'attachment; filename="observations.parquet"'})


async def _chunks(store: Store, streams: Sequence[Stream], low: int | None, high: int | None,
                  order: str) -> AsyncIterator[pa.Table]:
    """Tables of (sensor, feature, property, time ms, number, text) in query order."""
    if not streams:
        return
    index = {s.id: i for i, s in enumerate(streams)}
    names = [pa.array([getattr(s, key) for s in streams], pa.string())
             for key in ("sensor", "feature", "property")]
    query = in_range(sa.select(obs.datastream_id, obs.time, obs.value_number, obs.value_text),
                     index, low, high)
    keys = [obs.time, obs.datastream_id]
    query = query.order_by(*(k.desc() if order == "desc" else k for k in keys))
    async with store.connect() as conn:
        result = await conn.stream(query.execution_options(yield_per=CHUNK))
        async for rows in result.partitions(CHUNK):
            with collector_paused():
                ids, times, numbers, texts = zip(*rows, strict=True)
                del rows
                positions = pa.array(np.fromiter((index[d] for d in ids), np.int32, len(ids)))
                table = pa.table({
                    "sensor": names[0].take(positions), "feature": names[1].take(positions),
                    "property": names[2].take(positions), "time": pa.array(times, pa.int64()),
                    "number": pa.array(numbers, pa.float64()),
                    "text": pa.array(texts, pa.string())})
                del ids, times, numbers, texts
            yield table


def _text_values(table: pa.Table) -> list[str]:
    return [text_value(number, text) for number, text
            in zip(table["number"].to_pylist(), table["text"].to_pylist(), strict=True)]


async def _csv(chunks: AsyncIterator[pa.Table]) -> AsyncIterator[bytes]:
    yield b"sensor,feature,property,time,value\r\n"
    async for table in chunks:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerows(zip(table["sensor"].to_pylist(), table["feature"].to_pylist(),
                             table["property"].to_pylist(),
                             format_times(table["time"]).to_pylist(), _text_values(table),
                             strict=True))
        yield buffer.getvalue().encode()


class _Sink(io.RawIOBase):
    """A write-only file whose bytes are taken out after each row group."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


async def _parquet(chunks: AsyncIterator[pa.Table], numeric: bool) -> AsyncIterator[bytes]:
    schema = pa.schema([("sensor", pa.string()), ("feature", pa.string()),
                        ("property", pa.string()), ("time", pa.timestamp("ms", tz="UTC")),
                        ("value", pa.float64() if numeric else pa.string())])
    sink = _Sink()
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema)
    try:
        async for table in chunks:
            value = table["number"] if numeric else pa.array(_text_values(table), pa.string())
            writer.write_table(pa.table([table["sensor"], table["feature"], table["property"],
                                         table["time"].cast(pa.timestamp("ms", tz="UTC")),
                                         value], schema=schema))
            yield sink.take()
    finally:
        writer.close()
    yield sink.take()


__all__ = ["PARQUET", "response"]
