"""Exactly one copy after crashes: an exporter killed with SIGKILL at random points and
restarted 20 times while readings are produced leaves every reading in the lake once.

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
import pytest

ROWS = int(os.environ.get("LAKEPORT_CRASH_ROWS", "200000"))
RESTARTS = 20
TOPIC = "transformed-data"

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


def exporter(streams: str, lake: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "lakeport.cli", "export", "run", "--topic", TOPIC,
         "--to", lake.as_uri(), "--name", "crash", "--batch-rows", "20000",
         "--max-delay", "0.3s", "--url", streams, *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def landed(lake: Path) -> int:
    return sum(1 for _ in lake.rglob("*.parquet")) if lake.exists() else 0


def kill_when_a_file_lands(lake: Path, deadline: float) -> None:
    """Return as soon as one more file landed: the moment between a write and its ack."""
    before = landed(lake)
    while landed(lake) == before and time.monotonic() < deadline:
        time.sleep(0.0005)


def test_sigkill_and_restart_leave_exactly_one_copy_of_every_reading(tmp_path: Path) -> None:
    streams = (tmp_path / "streams").as_uri()
    lake = tmp_path / "lake"
    rng = random.Random(int(os.environ.get("LAKEPORT_CRASH_SEED", "4")))
    producer = subprocess.Popen([sys.executable, "-c", PRODUCER, streams, str(ROWS), "20"])
    try:
        for restart in range(RESTARTS):
            process = exporter(streams, lake)
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
    final = exporter(streams, lake, "--until-idle", "1s")
    _, err = final.communicate(timeout=60 + ROWS // 10_000)
    assert final.returncode == 0, err.decode()
    count, distinct, assets = duckdb.sql(
        f"SELECT count(*), count(DISTINCT seqno), count(DISTINCT asset) "
        f"FROM read_parquet('{lake}/**/*.parquet')").fetchall()[0]
    assert (count, distinct) == (ROWS, ROWS)
    assert assets == 100
