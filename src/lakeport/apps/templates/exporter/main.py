"""Export asset data to Parquet files: one file per batch, named by its seqno range.

Reads every data message (number, string, boolean, object) from ``asset-data`` and writes a
batch when it has ``batch_rows`` rows, or ``max_delay`` seconds after its first row, to
``<output_dir>/<first seqno>-<last seqno>.parquet``. A file is written under a temporary
name and renamed once complete, so readers never see half a file, and a batch read again
after a crash lands under the same name instead of a new one.

Acknowledgement: messages are acked only once the file holding them is on disk
(``stream_filter(..., auto_ack=False)`` and ``stream.ack``), so a crash loses nothing: the
unwritten batch is read again after a restart. On a graceful stop the batch is written first.

Run it with ``lakeport app run .`` and feed it with ``lakeport app test simulator .``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from lakeport.apps import App, DataMessage, MessageStream, filters

logger = logging.getLogger("exporter")

SCHEMA = pa.schema([
    ("seqno", pa.int64()),
    ("time", pa.timestamp("us", tz="UTC")),
    ("asset", pa.string()),
    ("datastream", pa.string()),
    ("type", pa.string()),
    ("unit", pa.string()),
    ("number", pa.float64()),
    ("string", pa.string()),
    ("boolean", pa.bool_()),
    ("object", pa.string()),  # JSON text
])


def to_row(message: DataMessage) -> dict[str, Any]:
    """One Parquet row: the value goes to the column of its data type."""
    row: dict[str, Any] = {
        "seqno": message.seqno, "time": message.time, "asset": message.asset,
        "datastream": message.datastream, "type": message.type, "unit": message.unit,
        "number": None, "string": None, "boolean": None, "object": None,
    }
    value = message.value
    row[message.type] = json.dumps(value) if message.type == "object" else value
    return row


def write_batch(rows: list[dict[str, Any]], folder: Path) -> Path:
    """Write ``rows`` to ``folder/<first>-<last>.parquet`` (temporary name, then rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{rows[0]['seqno']}-{rows[-1]['seqno']}.parquet"
    partial = folder / f".{path.name}.partial"
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), partial)
    os.replace(partial, path)
    return path


class ParquetExporter:
    """Collects rows into batches and writes each batch as one Parquet file."""

    def __init__(self, output_dir: Path, batch_rows: int = 1000, max_delay: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.output_dir = output_dir
        self.batch_rows = batch_rows
        self.max_delay = max_delay
        self.clock = clock
        self.received = 0
        self.rows_written = 0
        self.files: list[Path] = []
        self.last_flushed: DataMessage | None = None  # the last message of the last file
        self._rows: list[dict[str, Any]] = []
        self._last: DataMessage | None = None
        self._started = 0.0

    def add(self, message: DataMessage) -> Path | None:
        """Add a message to the batch; write the batch if it is full (return the file)."""
        if not self._rows:
            self._started = self.clock()
        self._rows.append(to_row(message))
        self._last = message
        self.received += 1
        return self.flush() if len(self._rows) >= self.batch_rows else None

    def due(self) -> bool:
        """Whether the batch has waited ``max_delay`` seconds since its first row."""
        return bool(self._rows) and self.clock() - self._started >= self.max_delay

    def flush(self) -> Path | None:
        """Write the batch now (if it has rows); return the file."""
        if not self._rows:
            return None
        rows, self._rows = self._rows, []
        path = write_batch(rows, self.output_dir)
        self.last_flushed = self._last
        self.files.append(path)
        self.rows_written += len(rows)
        logger.info("wrote %d rows to %s", len(rows), path)
        return path


async def write_and_ack(exporter: ParquetExporter, stream: MessageStream) -> None:
    """Write the batch, then ack its messages: only rows on disk count as done."""
    if exporter.flush() is not None and exporter.last_flushed is not None:
        await stream.ack(exporter.last_flushed)


async def flush_when_due(exporter: ParquetExporter, stream: MessageStream) -> None:
    """Write batches that waited long enough, even when no new message arrives."""
    while True:
        await asyncio.sleep(min(0.5, exporter.max_delay / 2))
        if exporter.due():
            await write_and_ack(exporter, stream)


def output_folder(configured: str) -> Path:
    """``output_dir`` relative to the app folder (``lakeport app run`` sets it)."""
    return Path(os.environ.get("LAKEPORT_APP_DIR", ".")) / configured


async def main() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = App()
    configuration = app.app_configuration
    exporter = ParquetExporter(output_folder(configuration.get("output_dir", "output")),
                               batch_rows=int(configuration.get("batch_rows", 1000)),
                               max_delay=float(configuration.get("max_delay", 5)))
    async with app:
        stream = app.stream_filter(filters.is_data_message, auto_ack=False)
        ticker = asyncio.create_task(flush_when_due(exporter, stream))
        try:
            async for message in stream:
                if exporter.add(message) is not None:
                    await stream.ack(message)  # a full batch was just written
        finally:
            ticker.cancel()
        await write_and_ack(exporter, stream)  # the last batch, on a graceful stop
    print(f"received {exporter.received} messages", flush=True)
    print(f"wrote {exporter.rows_written} rows in {len(exporter.files)} files to "
          f"{exporter.output_dir}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
