"""Run ``lakeport.export.runtime.Exporter`` in this process for ``bench/export.py``."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

WATCH_INTERVAL = 0.01  # seconds between looks at the exporter's row counter


def in_process_available() -> bool:
    return importlib.util.find_spec("lakeport.export.runtime") is not None


async def drain_in_process(
    url: str, topic: str, lake: Path, name: str, expected: int, batch_rows: int | None,
    say: Callable[[str], None], label: str, timeout: float = 600.0,
) -> float:
    """Seconds from creating an exporter to ``expected`` rows landed and acked.

    The exporter counts a batch's rows only after the sink wrote them and the consumer acked
    its last seqno; it is stopped once the count is reached (no idle wait is measured).
    """
    from lakeport.export.config import ExportConfig
    from lakeport.export.runtime import Exporter

    options: dict[str, object] = {"topics": [topic], "to": lake.as_uri(), "name": name,
                                  "streams_url": url}
    if batch_rows:
        options["batch_rows"] = batch_rows
    stop = asyncio.Event()
    start = time.perf_counter()
    exporter = Exporter(ExportConfig(**options))
    task = asyncio.create_task(exporter.run(stop))
    last_said = start
    try:
        while exporter.status.rows < expected:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError(f"{label}: exporter stopped after "
                                   f"{exporter.status.rows:,} of {expected:,} rows")
            now = time.perf_counter()
            if now - start > timeout:
                raise TimeoutError(f"{label}: {exporter.status.rows:,} of {expected:,} rows "
                                   f"after {timeout:g} s")
            if now - last_said >= 0.5:
                last_said = now
                say(f"{label}: {exporter.status.rows:,} of {expected:,} rows landed")
            await asyncio.sleep(WATCH_INTERVAL)
        seconds = time.perf_counter() - start
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, 60)
        except BaseException:
            task.cancel()
            raise
    return seconds
