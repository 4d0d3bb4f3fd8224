"""The ``file://`` sink cleans up after writers that were killed mid-write."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from _batches import make_batch

from lakeport.export.sinks.local import STALE_PROBE_SECONDS, LocalSink


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


async def test_a_rewritten_batch_removes_the_temp_file_of_a_dead_writer(tmp_path: Path) -> None:
    sink = LocalSink(tmp_path.as_uri())
    batch = make_batch(4, 6)
    [first] = await sink.write(batch)
    target = Path(first)
    dead = target.with_name(f".{target.name}.tmp-{dead_pid()}")
    living = target.with_name(f".{target.name}.tmp-{os.getppid()}")
    for temp in (dead, living):
        temp.write_bytes(b"half a file")
    assert await sink.write(batch) == [first]
    assert not dead.exists(), "a dead writer's temp file is swept"
    assert living.exists(), "a live writer's temp file is left alone"


def probe_name(pid: int | None = None) -> str:
    return f".lakeport-probe-{uuid.uuid4().hex}" + ("" if pid is None else f".tmp-{pid}")


async def test_the_start_up_check_removes_probes_left_by_killed_exporters(
        tmp_path: Path) -> None:
    long_ago = time.time() - STALE_PROBE_SECONDS - 60
    old_unnamed = tmp_path / probe_name()  # as exporters before pids in probe names left it
    old_unnamed.write_bytes(b"probe")
    os.utime(old_unnamed, (long_ago, long_ago))
    dead = tmp_path / probe_name(dead_pid())
    dead.write_bytes(b"probe")
    old_living = tmp_path / probe_name(os.getppid())
    old_living.write_bytes(b"probe")
    os.utime(old_living, (long_ago, long_ago))
    fresh_living = tmp_path / probe_name(os.getppid())
    fresh_unnamed = tmp_path / probe_name()
    for fresh in (fresh_living, fresh_unnamed):
        fresh.write_bytes(b"probe")
    async with LocalSink(tmp_path.as_uri()) as sink:
        await sink.healthcheck()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([fresh_living.name, fresh_unnamed.name]), \
        "stale and dead probes are swept; a fresh probe of a live process is kept"


def test_an_exporter_killed_during_its_probe_leaves_nothing(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    script = (
        "import asyncio, os\n"
        "from lakeport.export.sinks.local import LocalSink\n"
        "os.fsync = lambda fd: os._exit(9)  # killed in the middle of the probe\n"
        f"asyncio.run(LocalSink({lake.as_uri()!r}).healthcheck())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == 9, done.stderr
    assert lake.is_dir() and list(lake.iterdir()) == []


async def test_the_probe_works_where_files_without_names_are_not_supported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    sink = LocalSink(tmp_path.as_uri())
    await sink.healthcheck()
    assert list(tmp_path.iterdir()) == []
