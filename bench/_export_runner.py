"""Run the exporter for ``bench/export.py``: as a subprocess (``lakeport export run``) with its
RSS sampled, and count what landed in the lake folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

RSS_INTERVAL = 0.05  # seconds between RSS samples
TAIL_LINES = 5


@dataclass
class ExporterRun:
    """One exporter process from start to exit."""

    wall: float  # spawn → exit, seconds
    landed_at: float | None  # spawn → the folder holding ``expected`` rows, seconds
    peak_rss_mb: float
    returncode: int
    stderr_tail: list[str] = field(default_factory=list)
    rows_landed: int = 0
    cut_short: bool = False  # stopped at the time budget before every row landed

    def failure(self) -> str | None:
        stopped_by_us = self.landed_at is not None or self.cut_short
        if self.returncode == 0 or (
            stopped_by_us and self.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM)
        ):
            return None
        reason = self.stderr_tail[-1] if self.stderr_tail else "no output"
        return f"exporter exited with code {self.returncode}: {reason}"


def export_command(streams_url: str, topic: str, lake: Path, batch_rows: int | None,
                   idle: float, name: str) -> list[str]:
    command = [sys.executable, "-m", "lakeport.cli", "export", "run", "--topic", topic,
               "--to", lake.as_uri(), "--until-idle", f"{idle:g}s", "--url", streams_url,
               "--name", name]
    if batch_rows:
        command += ["--batch-rows", str(batch_rows)]
    return command


class LandedRows:
    """Counts Parquet rows in a folder as files appear (from footers, each file read once).

    Files land atomically (temporary name, then rename), so every ``*.parquet`` is whole.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen: set[str] = set()
        self.rows = 0

    def poll(self) -> int:
        import pyarrow.parquet as pq

        if not self.folder.exists():
            return self.rows
        for root, _, files in os.walk(self.folder):
            for name in files:
                if not name.endswith(".parquet"):
                    continue
                path = os.path.join(root, name)
                if path in self.seen:
                    continue
                try:
                    self.rows += pq.read_metadata(path).num_rows
                except (OSError, ValueError):
                    continue  # not readable yet: try again next poll
                self.seen.add(path)
        return self.rows


def run_exporter(
    command: list[str], lake: Path, expected: int, say: Callable[[str], None], label: str,
    timeout: float, budget: float | None = None,
) -> ExporterRun:
    """Run ``command`` until it exits; sample its RSS (with children) and watch rows land.

    Once ``expected`` rows are in the folder the process gets SIGTERM (a graceful stop), so
    its ``--until-idle`` is only a safety net and no idle wait is measured. After ``budget``
    seconds it gets SIGTERM too (``cut_short``); after ``timeout`` it is killed.
    """
    import psutil

    landed = LandedRows(lake)
    peak = 0
    landed_at: float | None = None
    cut_short = False
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    proc = psutil.Process(child.pid)
    last_poll = last_said = 0.0
    try:
        while child.poll() is None:
            now = time.perf_counter()
            if now - start > timeout:
                raise TimeoutError(f"{label}: exporter still running after {timeout:g} s")
            if budget is not None and not cut_short and landed_at is None \
                    and now - start > budget:
                cut_short = True
                child.send_signal(signal.SIGTERM)
            try:
                rss = proc.memory_info().rss + sum(
                    c.memory_info().rss for c in proc.children(recursive=True))
            except psutil.Error:
                rss = 0  # exiting
            peak = max(peak, rss)
            if landed_at is None and now - last_poll >= 0.1:
                last_poll = now
                if landed.poll() >= expected:
                    landed_at = time.perf_counter() - start
                    child.send_signal(signal.SIGTERM)  # done: no idle wait
            if now - last_said >= 0.5:
                last_said = now
                say(f"{label}: {landed.rows:,} of {expected:,} rows landed, "
                    f"RSS {rss / 2**20:,.0f} MB (peak {peak / 2**20:,.0f} MB)")
            time.sleep(RSS_INTERVAL)
    except BaseException:
        child.kill()
        child.communicate()
        raise
    wall = time.perf_counter() - start
    _, stderr = child.communicate()
    if landed_at is None and landed.poll() >= expected:
        landed_at = wall  # landed between the last poll and the exit
    tail = stderr.decode(errors="replace").strip().splitlines()[-TAIL_LINES:]
    return ExporterRun(wall, landed_at, peak / 2**20, child.returncode, tail, landed.rows,
                       cut_short and landed_at is None)


def count_rows(lake: Path) -> tuple[int, int]:
    """(rows, distinct seqnos) over every Parquet file under ``lake``, read with DuckDB."""
    import duckdb

    pattern = str(lake / "**" / "*.parquet")
    with duckdb.connect() as db:
        rows, distinct = db.execute(
            "SELECT count(*), count(DISTINCT seqno) FROM read_parquet(?, hive_partitioning=false)",
            [pattern],
        ).fetchone()
    return int(rows), int(distinct)


def lake_files(lake: Path) -> tuple[int, int]:
    """(Parquet files, bytes) under ``lake``."""
    files = list(lake.rglob("*.parquet"))
    return len(files), sum(f.stat().st_size for f in files)
