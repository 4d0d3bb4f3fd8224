"""Chained steps on the memory engine: transform, drop, fan-out, dedup after a crash, stop."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from lakeport.errors import Invalid
from lakeport.streams import open_engine
from lakeport.streams.base import Consumer
from lakeport.streams.flow import Step, StepStats, batches, load_step, run_step, step

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def engine():
    async with open_engine(f"memory://flow-{uuid.uuid4().hex}") as opened:
        yield opened


async def produce(engine, topic: str, payloads: list[Any]) -> list[int]:
    async with engine.producer("test", topic) as producer:
        return await producer.produce_many(payloads)


async def read_all(engine, topic: str) -> list[Any]:
    async with engine.consumer(f"reader-{uuid.uuid4().hex[:8]}", topic, position="beginning",
                               follow=False) as consumer:
        return [message.payload async for message in consumer]


async def acked(engine, topic: str, consumer: str) -> int:
    info = await engine.topic_info(topic)
    return next(c.acked for c in info.consumers if c.name == consumer)


@step(input="raw", output="out")
def mark(payload):
    payload["processed"] = True
    return payload


async def test_step_transforms_every_message_and_acks_its_input(engine):
    await produce(engine, "raw", [{"temp": t} for t in range(5)])
    stats = await run_step(mark, engine=engine, follow=False)
    assert await read_all(engine, "out") == [{"temp": t, "processed": True} for t in range(5)]
    assert await acked(engine, "raw", "mark") == 5
    assert (stats.received, stats.produced, stats.dropped) == (5, 5, 0)
    assert stats.last_input_seqno == 5 and stats.last_output_seqno == 5


async def test_none_drops_and_a_list_fans_out(engine):
    @step(input="raw", output="out", name="split")
    def split(payload):
        if payload["n"] == 0:
            return None
        return [{"n": payload["n"], "part": i} for i in range(payload["n"])]

    await produce(engine, "raw", [{"n": 0}, {"n": 2}, {"n": 1}])
    stats = await run_step(split, engine=engine, follow=False)
    assert await read_all(engine, "out") == [
        {"n": 2, "part": 0}, {"n": 2, "part": 1}, {"n": 1, "part": 0}
    ]
    assert (stats.received, stats.produced, stats.dropped) == (3, 3, 1)
    assert await acked(engine, "raw", "split") == 3


async def test_async_and_batch_transforms(engine):
    @step(input="raw", output="out", batch=True)
    async def doubled(values):
        await asyncio.sleep(0)
        return [v * 2 if v % 2 else None for v in values]

    await produce(engine, "raw", [1, 2, 3])
    await run_step(doubled, engine=engine, follow=False)
    assert await read_all(engine, "out") == [2, 6]


async def test_batch_transform_must_return_one_result_per_input(engine):
    @step(input="raw", output="out", batch=True)
    def total(values):
        return [sum(values)]

    await produce(engine, "raw", [1, 2, 3])
    with pytest.raises(Invalid, match="one result per input"):
        await run_step(total, engine=engine, follow=False)
    assert await acked(engine, "raw", "total") == 0


async def test_rerun_after_crash_between_produce_and_ack_adds_no_duplicates(engine, monkeypatch):
    await produce(engine, "raw", [{"temp": t} for t in range(4)])
    real_ack = Consumer.ack

    async def crash(self, seqno):
        raise RuntimeError("process died before the ack")

    monkeypatch.setattr(Consumer, "ack", crash)
    with pytest.raises(RuntimeError):
        await run_step(mark, engine=engine, follow=False)
    assert len(await read_all(engine, "out")) == 4
    assert await acked(engine, "raw", "mark") == 0

    monkeypatch.setattr(Consumer, "ack", real_ack)
    stats = await run_step(mark, engine=engine, follow=False)
    assert stats.received == 4
    assert await read_all(engine, "out") == [{"temp": t, "processed": True} for t in range(4)]
    assert await acked(engine, "raw", "mark") == 4


async def test_stop_lets_the_current_batch_finish_and_be_acked(engine):
    entered, release = asyncio.Event(), asyncio.Event()

    @step(input="raw", output="out")
    async def slow(payload):
        entered.set()
        await release.wait()
        return payload

    stop = asyncio.Event()
    stats = StepStats()
    task = asyncio.create_task(run_step(slow, engine=engine, stop=stop, stats=stats))
    await produce(engine, "raw", [{"temp": 1}])
    await entered.wait()
    stop.set()
    release.set()
    assert await task is stats
    assert await read_all(engine, "out") == [{"temp": 1}]
    assert await acked(engine, "raw", "slow") == 1


async def test_a_following_step_processes_messages_as_they_arrive(engine):
    stop = asyncio.Event()
    stats = StepStats()
    task = asyncio.create_task(run_step(mark, engine=engine, stop=stop, stats=stats))
    for temp in range(3):
        await produce(engine, "raw", [{"temp": temp}])
        while stats.received <= temp:
            await asyncio.sleep(0.01)
    stop.set()
    await task
    assert [p["temp"] for p in await read_all(engine, "out")] == [0, 1, 2]


async def test_unencodable_output_names_the_step_and_seqnos(engine):
    @step(input="raw", output="out")
    def broken(payload):
        return {"value": object()}

    await produce(engine, "raw", [{"temp": 1}])
    with pytest.raises(Invalid, match=r"step 'broken' \(input 'raw' seqnos 1-1\)"):
        await run_step(broken, engine=engine, follow=False)


async def test_batches_end_when_idle_or_stopped(engine):
    await produce(engine, "raw", [1, 2])
    async with engine.consumer("idle", "raw", position="beginning") as consumer:
        received = [m.payload async for batch in batches(consumer, idle_timeout=0.3)
                    for m in batch]
    assert received == [1, 2]
    stop = asyncio.Event()
    stop.set()
    async with engine.consumer("stopped", "raw", position="beginning") as consumer:
        assert [batch async for batch in batches(consumer, stop)] == []


def test_step_declaration_is_validated():
    with pytest.raises(Invalid, match="output of step 'f'"):
        Step(lambda p: p, "raw", "bad name", name="f")
    with pytest.raises(Invalid, match="same topic"):
        Step(lambda p: p, "raw", "raw", name="f")
    assert mark({"a": 1}) == {"a": 1, "processed": True}


def test_load_step_finds_a_step_and_explains_what_is_wrong(tmp_path, monkeypatch):
    (tmp_path / "my_steps.py").write_text(
        "from lakeport.streams.flow import step\n"
        "@step(input='a', output='b')\n"
        "def go(p):\n    return p\n"
        "def plain(p):\n    return p\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_step("my_steps:go").name == "go"
    with pytest.raises(Invalid, match="not a step"):
        load_step("my_steps:plain")
    with pytest.raises(Invalid, match="has no 'missing'"):
        load_step("my_steps:missing")
    with pytest.raises(Invalid, match="cannot import 'no_such_module'"):
        load_step("no_such_module:go")
    with pytest.raises(Invalid, match="use module:step"):
        load_step("my_steps")


@pytest.mark.parametrize("messages", [False, True], ids=["payloads", "messages"])
async def test_undecodable_input_goes_to_the_dead_letter_and_the_step_goes_on(tmp_path, messages):
    @step(input="raw", output="out", name="tolerant", messages=messages, batch=True)
    def tolerant(values):
        return [dict(v.payload if messages else v, processed=True) for v in values]

    bad = [b"not json", b"", b"\xff\xfe{"]
    async with open_engine(f"file://{tmp_path}") as embedded:
        await produce(embedded, "raw", [{"n": 0}])
        # another client wrote raw bytes that are no JSON
        writer = await embedded.writer("raw", embedded.read_options("raw"))
        await writer.add_many(b"other-client", bad, None)
        await produce(embedded, "raw", [{"n": 4}])

        stats = await run_step(tolerant, engine=embedded, follow=False)
        assert await read_all(embedded, "out") == [{"n": 0, "processed": True},
                                                   {"n": 4, "processed": True}]
        assert await acked(embedded, "raw", "tolerant") == 5
        assert (stats.received, stats.produced, stats.dead_letters) == (5, 2, 3)
        async with embedded.consumer("reader", "dead-letter.step.tolerant",
                                     position="beginning", follow=False) as consumer:
            letters = [message async for message in consumer]
    assert [(d.headers["dead-letter-step"], d.headers["dead-letter-topic"],
             d.headers["dead-letter-seqno"]) for d in letters] == [
        ("tolerant", "raw", "2"), ("tolerant", "raw", "3"), ("tolerant", "raw", "4")
    ]
    assert [d.payload for d in letters] == bad  # the original bytes, unchanged
    assert all("cannot decode the json payload" in d.headers["dead-letter-reason"]
               for d in letters)
    assert letters[0].headers["dead-letter-producer"] == "other-client"


async def test_a_dead_letter_topic_can_be_named(engine):
    @step(input="raw", output="out", dead_letter="raw.dead")
    def named(payload):
        return payload

    assert named.dead_letter == "raw.dead"
    with pytest.raises(Invalid, match="dead_letter of step 'named'"):
        step(input="raw", output="out", dead_letter="bad name")(named.transform)
