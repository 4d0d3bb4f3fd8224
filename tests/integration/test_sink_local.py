"""The ``file://`` sink cleans up after writers that were killed mid-write."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from _batches import make_batch

from lakeport.export.sinks.local import LocalSink


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
