"""Chained steps on the embedded engine stay exactly-once after a crash between produce and
ack, however long the step stays down (longer than the output topic's dedup window here)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from lakeport import open_engine
from lakeport.streams.base import Consumer
from lakeport.streams.flow import Step, run_step, step
from lakeport.streams.types import TopicOptions

pytestmark = pytest.mark.timeout(60)

WINDOW = 1.0  # the output topic's dedup window, in seconds


@step(input="raw", output="out", batch_size=5)
def fan(payload):
    n = payload["n"]
    if n % 4 == 3:
        return None  # dropped
    if n % 4 == 1:
        return [{"n": n, "part": 0}, {"n": n, "part": 1}]  # two outputs
    return {"n": n}


@step(input="raw", output="out", batch_size=5, batch=True)
def fan_batch(payloads):
    return [fan(p) for p in payloads]


def expected(inputs: range) -> list[Any]:
    results = [fan({"n": n}) for n in inputs]
    return [item for r in results if r is not None for item in (r if isinstance(r, list) else [r])]


async def setup(url: str, inputs: range) -> None:
    async with open_engine(url) as engine:
        await engine.create_topic("out", TopicOptions(dedup_window=WINDOW))
        async with engine.producer("test", "raw") as producer:
            await producer.produce_many([{"n": n} for n in inputs])


async def read_all(url: str, topic: str) -> list[Any]:
    async with open_engine(url) as engine, engine.consumer(
        f"reader-{uuid.uuid4().hex[:8]}", topic, position="beginning", follow=False
    ) as consumer:
        return [message.payload async for message in consumer]


async def crash_before_ack_after(url: str, step_: Step, acked_upto: int,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the step until its outputs of the batch after ``acked_upto`` are durable, then fail
    its ack as a killed process would (the engine is closed without the ack)."""
    real_ack = Consumer.ack

    async def ack(self: Consumer, seqno: int) -> None:
        if seqno > acked_upto:
            raise RuntimeError("killed before the ack")
        await real_ack(self, seqno)

    monkeypatch.setattr(Consumer, "ack", ack)
    with pytest.raises(RuntimeError, match="killed"):
        await run_step(step_, url, follow=False)
    monkeypatch.setattr(Consumer, "ack", real_ack)


async def wait_out_the_dedup_window(url: str, topic: str) -> None:
    """Wait (polling the clock, with a deadline) until the newest message of ``topic`` is
    older than its dedup window."""
    async with open_engine(url) as engine:
        newest = (await engine.topic_info(topic)).newest_ns
    assert newest
    deadline = time.monotonic() + 10 * WINDOW
    while time.time_ns() <= newest + int(WINDOW * 1e9) + 50_000_000:
        assert time.monotonic() < deadline, "the clock did not pass the dedup window"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("step_", [fan, fan_batch], ids=["per-message", "batch"])
async def test_restart_after_the_dedup_window_writes_no_duplicates(
    tmp_path: Path, step_: Step, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"file://{tmp_path}"
    await setup(url, range(12))
    await crash_before_ack_after(url, step_, 5, monkeypatch)  # batch 6-10 stored, not acked
    assert await read_all(url, "out") == expected(range(10))
    await wait_out_the_dedup_window(url, "out")

    stats = await run_step(step_, url, follow=False)
    assert await read_all(url, "out") == expected(range(12))
    assert stats.received == 7 and stats.skipped > 0
    async with open_engine(url) as engine:
        info = await engine.topic_info("raw")
    assert next(c.acked for c in info.consumers if c.name == step_.name) == 12


KILLED_STEP = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, sys.argv[2])
    from lakeport.streams.base import Consumer
    from lakeport.streams.flow import run_step
    from test_flow_exactly_once import fan

    real_ack = Consumer.ack

    async def ack(self, seqno):
        if seqno > 5:
            print("stored", seqno, flush=True)  # the outputs are durable: kill me now
            await asyncio.Event().wait()
        await real_ack(self, seqno)

    Consumer.ack = ack
    asyncio.run(run_step(fan, sys.argv[1], follow=False))
    """
)


@pytest.mark.slow
async def test_a_step_killed_before_its_ack_resumes_exactly_once(tmp_path: Path) -> None:
    url = f"file://{tmp_path}"
    await setup(url, range(12))
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_STEP, url, str(Path(__file__).parent)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)  # type: ignore[union-attr]
        assert line.split() == ["stored", "10"]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
    assert await read_all(url, "out") == expected(range(10))
    await wait_out_the_dedup_window(url, "out")

    stats = await run_step(fan, url, follow=False)
    assert await read_all(url, "out") == expected(range(12))
    assert stats.received == 7


async def test_a_partly_stored_fan_out_is_completed_not_repeated(tmp_path: Path) -> None:
    """An engine that stores a batch's outputs in pieces may have kept the first outputs of an
    input only: the restarted step writes the rest of them."""
    url = f"file://{tmp_path}"
    await setup(url, range(4))  # seqnos 1-4: n = 0..3; n = 1 (seqno 2) fans out to two
    async with open_engine(url) as engine, engine.producer("fan", "out") as producer:
        outputs = expected(range(1))
        ids = ["fan:raw:1.0"]
        outputs.append({"n": 1, "part": 0})
        ids.append("fan:raw:2.0")  # part 1 of seqno 2 was not stored
        await producer.produce_many(outputs, msg_ids=ids)
    await wait_out_the_dedup_window(url, "out")

    stats = await run_step(fan, url, follow=False)
    assert await read_all(url, "out") == expected(range(4))
    assert stats.skipped == 1 and stats.produced == 2  # part 1 of n = 1, and n = 2


async def test_outputs_of_inputs_already_acked_are_not_a_resume_point(tmp_path: Path) -> None:
    url = f"file://{tmp_path}"
    await setup(url, range(3))
    first = await run_step(fan, url, follow=False)
    assert first.received == 3 and first.skipped == 0
    async with open_engine(url) as engine, engine.producer("test", "raw") as producer:
        await producer.produce_many([{"n": n} for n in range(3, 6)])
    second = await run_step(fan, url, follow=False)
    assert second.received == 3 and second.skipped == 0
    assert await read_all(url, "out") == expected(range(6))
