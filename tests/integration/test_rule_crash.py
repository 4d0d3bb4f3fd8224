"""A windowed rule killed with SIGKILL mid-stream, twice, and restarted: every window is
emitted exactly once with the values DuckDB computes over the same input."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pytest

from lakeport.errors import NotFound
from lakeport.streams import open_engine
from waiting import wait_until

pytestmark = pytest.mark.timeout(180)

ASSETS = 500
WINDOWS = 40  # 10 s windows of input
PER_WINDOW = 2_500  # readings per window: 5 per asset
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SQL = ('SELECT asset, avg(value) AS avg, count(*) AS n, min(value) AS lo, max(value) AS hi, '
       'window_start() AS ws FROM "crash-input" GROUP BY asset, TUMBLING(10s)')
RUNNER = textwrap.dedent(f"""
    import asyncio
    from lakeport.routing.actions import rule_runner
    from lakeport.routing.spec import RuleSpec
    from lakeport.streams import open_engine

    async def main():
        spec = RuleSpec(name="crash", sql={SQL!r},
                        actions=[{{"type": "topic", "topic": "crash-averages"}}])
        async with open_engine() as engine:
            runner = rule_runner(spec, engine)
            await runner.open()
            print("open", flush=True)
            while True:
                await runner.step(1_000, timeout=0.5)

    asyncio.run(main())
""")


def readings() -> list[dict[str, Any]]:
    """In event-time order; a last reading far ahead closes every window of the input."""
    out = []
    for w in range(WINDOWS):
        for i in range(PER_WINDOW):
            ms = BASE_MS + w * 10_000 + (i * 10_000) // PER_WINDOW
            out.append({"asset": f"a{i % ASSETS:03d}", "value": (w * 7 + i * 13) % 1000 / 10,
                        "time": ms})
    out.append({"asset": "closer", "value": 0.0, "time": BASE_MS + (WINDOWS + 5) * 10_000})
    return out


async def _produce(payloads: list[dict[str, Any]]) -> None:
    async with open_engine() as engine, engine.producer("sim", "crash-input") as producer:
        for start in range(0, len(payloads), 10_000):
            await producer.produce_many(payloads[start:start + 10_000])


async def _states() -> int:
    """How many window states the rule saved (one per block acked)."""
    async with open_engine() as engine:
        try:
            return (await engine.topic_info("rule-state.crash")).last_seqno
        except NotFound:
            return 0


async def _output() -> list[dict[str, Any]]:
    async with open_engine() as engine, engine.consumer(
            "check", "crash-averages", position="beginning", follow=False,
            ephemeral=True) as consumer:
        return [orjson.loads(m.data) async for m in consumer]


def _start(folder: Path) -> subprocess.Popen[bytes]:
    script = folder / "run_rule.py"
    script.write_text(RUNNER)
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=os.environ.copy())


def test_a_killed_window_rule_emits_every_window_once(tmp_path: Path) -> None:
    payloads = readings()
    asyncio.run(_produce(payloads))
    blocks = len(payloads) // 1_000
    for kill_after in (blocks // 4, blocks // 2):
        process = _start(tmp_path)
        try:
            assert wait_until(lambda k=kill_after: asyncio.run(_states()) >= k, timeout=90), \
                "the rule did not get on"
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(30)
        assert asyncio.run(_states()) < blocks + 1, "killed too late to be mid-stream"
    process = _start(tmp_path)
    try:
        expected_windows = ASSETS * WINDOWS
        assert wait_until(lambda: len(asyncio.run(_output())) >= expected_windows,
                          timeout=90), "the restarted rule did not finish"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)

    out = asyncio.run(_output())
    keys = Counter((row["asset"], row["ws"]) for row in out)
    assert [k for k, n in keys.items() if n > 1] == [], "windows emitted twice"
    input_rows = pa.Table.from_pylist(payloads[:-1])  # noqa: F841 - read by DuckDB
    want = duckdb.connect().execute("""
        SELECT asset, (time // 10000) * 10000 AS ws_ms, avg(value) AS avg, count(*) AS n,
               min(value) AS lo, max(value) AS hi
        FROM input_rows GROUP BY ALL ORDER BY ALL""").fetchall()
    got = sorted((row["asset"], _ms(row["ws"]), row["avg"], row["n"], row["lo"], row["hi"])
                 for row in out)
    assert len(got) == len(want) == ASSETS * WINDOWS
    for g, w in zip(got, want, strict=True):
        assert g[:2] == w[:2] and g[3:] == w[3:], (g, w)
        assert g[2] == pytest.approx(w[2]), (g, w)


def _ms(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
