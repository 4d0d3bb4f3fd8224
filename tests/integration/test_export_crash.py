"""Exactly one copy after crashes: an exporter killed with SIGKILL at random points and
restarted 20 times while readings are produced leaves every reading in the lake once, in a
folder of Parquet files and in a Delta table.

``LAKEPORT_CRASH_ROWS=1000000 pytest tests/integration/test_export_crash.py`` runs the full
check of the issue (default 200,000 readings to keep the suite quick).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

ROWS = int(os.environ.get("LAKEPORT_CRASH_ROWS", "200000"))
RESTARTS = 20
TOPIC = "transformed-data"
ASSETS = 100

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120 + ROWS // 2000)]

PRODUCER = """
import asyncio, sys, time
from lakeport.streams import open_engine

async def main(url: str, total: int, seconds: float) -> None:
    chunk = 2000
    pause = seconds / max(1, total // chunk)
    async with open_engine(url) as engine:
        async with engine.producer("simulator", "transformed-data") as producer:
            for start in range(0, total, chunk):
                await producer.produce_many([
                    {"asset": f"asset-{i % 100}", "datastream": f"ds-{(i // 100) % 10}",
                     "value": i * 0.5, "unit": "C", "type": "number",
                     "time": f"2026-06-01T00:{(i // 60000) % 60:02d}:{(i // 1000) % 60:02d}Z"}
                    for i in range(start, min(total, start + chunk))])
                await asyncio.sleep(pause)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
"""


def exporter(streams: str, to: str, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "lakeport.cli", "export", "run", "--topic", TOPIC,
         "--to", to, "--name", "crash", "--batch-rows", "20000",
         "--max-delay", "0.3s", "--url", streams, *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def landed(lake: Path) -> int:
    """Data files under ``lake`` (a Delta table's log checkpoints are not data)."""
    if not lake.exists():
        return 0
    return sum(1 for path in lake.rglob("*.parquet") if "_delta_log" not in path.parts)


def kill_when_a_file_lands(lake: Path, deadline: float) -> None:
    """Return as soon as one more file landed: the moment between a write and its ack."""
    before = landed(lake)
    while landed(lake) == before and time.monotonic() < deadline:
        time.sleep(0.0005)


def export_through_crashes(tmp_path: Path, to: str, lake: Path) -> None:
    """Produce ROWS readings while an exporter to ``to`` (writing under ``lake``) is killed
    with SIGKILL and restarted RESTARTS times, then drain the topic with a last exporter."""
    streams = (tmp_path / "streams").as_uri()
    rng = random.Random(int(os.environ.get("LAKEPORT_CRASH_SEED", "4")))
    producer = subprocess.Popen([sys.executable, "-c", PRODUCER, streams, str(ROWS), "20"])
    try:
        for restart in range(RESTARTS):
            process = exporter(streams, to)
            if restart % 2:
                kill_when_a_file_lands(lake, deadline=time.monotonic() + 3)
            else:
                time.sleep(rng.uniform(0.3, 1.8))
            process.send_signal(signal.SIGKILL)
            process.wait()
        assert producer.wait(timeout=60 + ROWS // 10_000) == 0
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait()
    final = exporter(streams, to, "--until-idle", "1s")
    _, err = final.communicate(timeout=60 + ROWS // 10_000)
    assert final.returncode == 0, err.decode()


def count_readings(files: str | list[str]) -> tuple[int, int, int]:
    """Rows, distinct seqnos and distinct assets in the Parquet ``files`` (a glob or a list)."""
    with duckdb.connect() as connection:
        [row] = connection.execute(
            "SELECT count(*), count(DISTINCT seqno), count(DISTINCT asset) FROM read_parquet(?)",
            [files]).fetchall()
    return row


def test_parquet_folder_holds_exactly_one_copy_of_every_reading(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    export_through_crashes(tmp_path, lake.as_uri(), lake)
    assert count_readings(f"{lake}/**/*.parquet") == (ROWS, ROWS, ASSETS)
    leftovers = [p.name for p in lake.rglob(".*.tmp-*")]
    assert not leftovers, f"temporary files of killed writers stayed: {leftovers}"


def test_delta_table_holds_exactly_one_copy_of_every_reading(tmp_path: Path) -> None:
    """Only the files of the table's current snapshot count: a file written by an exporter
    killed before its commit is not part of the table."""
    from deltalake import DeltaTable

    table = tmp_path / "table"
    export_through_crashes(tmp_path, f"delta+{table.as_uri()}", table)
    snapshot = DeltaTable(str(table))
    assert count_readings(snapshot.file_uris()) == (ROWS, ROWS, ASSETS)
    assert pa.table(snapshot.to_pyarrow_table()).num_rows == ROWS
