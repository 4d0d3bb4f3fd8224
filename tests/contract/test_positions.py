"""Where consumers start: beginning, end, unread, seqno:N, a timestamp, since."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from lakeport.errors import Invalid
from lakeport.streams import Engine, Position, open_engine
from waiting import eventually

from ._helpers import QUIET, drain, seqnos, take

pytestmark = pytest.mark.timeout(30)


async def fill(engine: Engine, topic: str, n: int, start: int = 1) -> list[int]:
    async with engine.producer("p", topic) as producer:
        return await producer.produce_many([{"n": i} for i in range(start, start + n)])


async def test_beginning_starts_at_the_first_message(engine: Engine, topic: str) -> None:
    await fill(engine, topic, 5)
    async with engine.consumer("c", topic, position="beginning") as consumer:
        assert seqnos(await take(consumer, 5)) == [1, 2, 3, 4, 5]


async def test_end_gets_only_new_messages(engine: Engine, topic: str) -> None:
    await fill(engine, topic, 5)
    async with engine.consumer("c", topic, position="end") as consumer:
        with pytest.raises(TimeoutError):
            await consumer.recv(timeout=QUIET)
        await fill(engine, topic, 2, start=6)
        messages = await take(consumer, 2)
    assert seqnos(messages) == [6, 7]
    assert messages[0].payload == {"n": 6}


async def test_seqno_position_starts_there(engine: Engine, topic: str) -> None:
    await fill(engine, topic, 5)
    async with engine.consumer("c", topic, position=Position.at_seqno(3)) as consumer:
        assert seqnos(await take(consumer, 3)) == [3, 4, 5]
    async with engine.consumer("d", topic, position="seqno:5") as consumer:
        assert seqnos(await take(consumer, 1)) == [5]


async def test_timestamp_position_starts_at_the_first_message_not_older(engine: Engine,
                                                                      topic: str) -> None:
    async with engine.producer("p", topic) as producer:
        for i in range(1, 5):
            await producer.produce({"n": i})
            await asyncio.sleep(0.02)  # time passes between appends: that is the point
    async with engine.consumer("all", topic, position="beginning") as consumer:
        messages = await take(consumer, 4)
    assert all(a.time < b.time for a, b in itertools.pairwise(messages)), \
        [m.time for m in messages]
    third = messages[2]
    async with engine.consumer("c", topic, position=Position.timestamp(third.time)) as consumer:
        assert seqnos(await take(consumer, 2)) == [3, 4]
    iso = third.time.isoformat().replace("+00:00", "Z")
    async with engine.consumer("d", topic, position=f"time:{iso}") as consumer:
        assert seqnos(await take(consumer, 2)) == [3, 4]


async def test_since_covers_recent_messages(engine: Engine, topic: str) -> None:
    await fill(engine, topic, 3)
    async with engine.consumer("c", topic, position="since:10m") as consumer:
        assert seqnos(await take(consumer, 3)) == [1, 2, 3]
    async with engine.consumer("d", topic, position=Position.since("1h")) as consumer:
        assert seqnos(await take(consumer, 3)) == [1, 2, 3]


async def test_unread_of_a_new_consumer_starts_at_the_beginning(engine: Engine,
                                                                topic: str) -> None:
    await fill(engine, topic, 3)
    async with engine.consumer("c", topic, position="unread") as consumer:
        assert seqnos(await take(consumer, 3)) == [1, 2, 3]


async def test_unread_resumes_after_the_last_ack(engine_url: str, engine: Engine,
                                                 topic: str) -> None:
    await fill(engine, topic, 6)
    async with engine.consumer("c", topic, position="unread") as consumer:
        await take(consumer, 4)
        await consumer.ack(3)
    async with open_engine(engine_url) as reopened, reopened.consumer(
        "c", topic, position="unread"
    ) as consumer:
        assert consumer.acked == 3
        assert seqnos(await take(consumer, 3)) == [4, 5, 6]
        await consumer.ack(6)
    async with engine.consumer("c", topic, position="unread") as consumer:
        with pytest.raises(TimeoutError):
            await consumer.recv(timeout=QUIET)
        await fill(engine, topic, 1, start=7)
        assert seqnos(await take(consumer, 1)) == [7]


async def test_unacked_messages_are_delivered_again_after_a_restart(engine: Engine,
                                                                    topic: str) -> None:
    await fill(engine, topic, 5)
    async with engine.consumer("c", topic) as consumer:
        assert seqnos(await take(consumer, 2)) == [1, 2]
        await consumer.ack(2)
        assert seqnos(await take(consumer, 2)) == [3, 4]  # received, never acked
    async with engine.consumer("c", topic) as consumer:
        assert seqnos(await drain(consumer)) == [3, 4, 5]


async def test_consumer_cancelled_while_receiving_loses_nothing(engine: Engine,
                                                                topic: str) -> None:
    await fill(engine, topic, 3)
    got: list[int] = []

    async def work() -> None:
        async with engine.consumer("c", topic) as consumer:
            while True:
                got.append((await consumer.recv()).seqno)

    task = asyncio.create_task(work())
    assert await eventually(lambda: len(got) == 3), f"the consumer to receive 3, not {got}"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with engine.consumer("c", topic) as consumer:
        assert seqnos(await drain(consumer)) == [1, 2, 3]


async def test_cumulative_ack(engine: Engine, topic: str) -> None:
    await fill(engine, topic, 5)
    async with engine.consumer("c", topic) as consumer:
        await take(consumer, 5)
        await consumer.ack(5)
        assert consumer.acked == 5
        assert await consumer.lag() == 0
    async with engine.consumer("c", topic) as consumer:
        with pytest.raises(TimeoutError):
            await consumer.recv(timeout=QUIET)


async def test_ack_beyond_the_last_stored_seqno_is_invalid_and_changes_nothing(
        engine_url: str, engine: Engine, topic: str) -> None:
    await fill(engine, topic, 3)
    async with engine.consumer("c", topic, position="unread") as consumer:
        with pytest.raises(Invalid, match=r"seqno 10\b.*last stored seqno is 3\b"):
            await consumer.ack(10)  # nothing received yet
        assert seqnos(await take(consumer, 3)) == [1, 2, 3]
        with pytest.raises(Invalid, match=r"seqno 10\b.*last stored seqno is 3\b"):
            await consumer.ack(10)
        assert consumer.acked == 0
        assert await consumer.lag() == 3
        await consumer.ack(3)
        assert consumer.acked == 3
    await fill(engine, topic, 1, start=4)
    async with open_engine(engine_url) as reopened, reopened.consumer(
        "c", topic, position="unread"
    ) as consumer:
        assert consumer.acked == 3
        received = await take(consumer, 1)
        assert [(m.seqno, m.payload) for m in received] == [(4, {"n": 4})]
        assert await drain(consumer) == []
