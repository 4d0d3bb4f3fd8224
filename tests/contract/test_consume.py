"""Receiving: credits, ack timeouts, filters, stopping at the end, lag, and deleted topics."""

from __future__ import annotations

import asyncio

import pytest

from lakeport.errors import Closed
from lakeport.streams import EndMarker, EndOfTopic, Engine, Filters
from waiting import still_waiting

from ._helpers import QUIET, WAIT, drain, seqnos, take

pytestmark = pytest.mark.timeout(30)


async def fill(engine: Engine, topic: str, payloads: list) -> list[int]:
    async with engine.producer("p", topic) as producer:
        return await producer.produce_many(payloads)


async def test_recv_times_out_on_an_empty_topic(engine: Engine, topic: str) -> None:
    await engine.create_topic(topic)
    async with engine.consumer("c", topic) as consumer:
        with pytest.raises(TimeoutError):
            await consumer.recv(timeout=QUIET)
        with pytest.raises(TimeoutError):
            await consumer.recv_batch(10, timeout=QUIET)


async def test_follower_gets_messages_produced_while_it_waits(engine: Engine,
                                                              topic: str) -> None:
    await engine.create_topic(topic)
    async with engine.consumer("c", topic) as consumer:
        waiting = asyncio.create_task(consumer.recv(timeout=WAIT))
        assert await still_waiting(waiting, QUIET), "recv returned on an empty topic"
        await fill(engine, topic, [{"n": 1}])
        assert (await waiting).payload == {"n": 1}


async def test_recv_batch_returns_at_most_max_n(engine: Engine, topic: str) -> None:
    await fill(engine, topic, list(range(10)))
    async with engine.consumer("c", topic) as consumer:
        received: list = []
        while len(received) < 10:
            batch = await consumer.recv_batch(4, timeout=WAIT)
            assert 1 <= len(batch) <= 4
            received.extend(batch)
    assert seqnos(received) == list(range(1, 11))


async def test_async_iteration_yields_messages_in_order(engine: Engine, topic: str) -> None:
    await fill(engine, topic, ["a", "b", "c"])
    async with engine.consumer("c", topic) as consumer:
        payloads = []
        async for message in consumer:
            payloads.append(message.payload)
            await consumer.ack(message.seqno)
            if len(payloads) == 3:
                break
    assert payloads == ["a", "b", "c"]


async def test_credits_limit_unacked_deliveries(engine: Engine, topic: str) -> None:
    await fill(engine, topic, list(range(5)))
    async with engine.consumer("c", topic, credits=0) as consumer:
        with pytest.raises(TimeoutError):
            await consumer.recv(timeout=QUIET)
        consumer.more(2)
        assert seqnos(await take(consumer, 2)) == [1, 2]
        with pytest.raises(TimeoutError):
            await consumer.recv(timeout=QUIET)
        await consumer.ack(2)
        assert seqnos(await take(consumer, 2)) == [3, 4]
        with pytest.raises(TimeoutError):
            await consumer.recv(timeout=QUIET)
        consumer.more(1)
        assert seqnos(await take(consumer, 1)) == [5]


async def test_unacked_messages_are_delivered_again_after_the_ack_timeout(engine: Engine,
                                                                          topic: str) -> None:
    await fill(engine, topic, ["a", "b", "c"])
    async with engine.consumer("c", topic, ack_timeout=0.3) as consumer:
        assert seqnos(await take(consumer, 3)) == [1, 2, 3]
        await consumer.ack(1)
        again = await take(consumer, 2)
        assert seqnos(again) == [2, 3]
        assert [m.payload for m in again] == ["b", "c"]
        await consumer.ack(3)
        with pytest.raises(TimeoutError):
            await consumer.recv(timeout=0.6)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (Filters(match_re=r'"site":\s*"plant-[12]"'), [1, 2]),
        (Filters(match_string="plant-3"), [3]),
        (Filters(no_match_re=r"plant-[23]"), [1, 4]),
        (Filters(no_match_string="plant-1"), [2, 3, 4]),
        (Filters(match_string="temp", no_match_string="plant-2"), [1, 3]),
    ],
    ids=["match_re", "match_string", "no_match_re", "no_match_string", "combined"],
)
async def test_filters(engine: Engine, topic: str, filters: Filters,
                       expected: list[int]) -> None:
    payloads = [{"site": "plant-1", "temp": 1}, {"site": "plant-2", "temp": 2},
                {"site": "plant-3", "temp": 3}, {"site": "depot", "humidity": 4}]
    await fill(engine, topic, payloads)
    async with engine.consumer("c", topic, filters=filters, follow=False) as consumer:
        received = [message async for message in consumer]
    assert seqnos(received) == expected


async def test_filtered_out_messages_count_as_done(engine: Engine, topic: str) -> None:
    await fill(engine, topic, ["keep 1", "drop", "keep 3", "drop", "drop"])
    keep = Filters(match_string="keep")
    async with engine.consumer("c", topic, filters=keep) as consumer:
        first, third = await take(consumer, 2)
        assert await drain(consumer) == []
        await consumer.ack(first.seqno)
        assert await consumer.lag() == 4
        await consumer.ack(third.seqno)
        assert await consumer.lag() == 0


async def test_filtered_consumer_resumes_at_the_first_unacked_match(engine: Engine,
                                                                    topic: str) -> None:
    await fill(engine, topic, ["drop", "keep 2", "drop", "keep 4"])
    keep = Filters(match_string="keep")
    async with engine.consumer("c", topic, filters=keep) as consumer:
        assert seqnos(await take(consumer, 2)) == [2, 4]  # received, never acked
    async with engine.consumer("c", topic, filters=keep) as consumer:
        assert seqnos(await take(consumer, 2)) == [2, 4]


async def test_follow_false_stops_at_the_end_seen_on_open(engine: Engine, topic: str) -> None:
    await fill(engine, topic, [1, 2, 3])
    async with engine.consumer("c", topic, follow=False) as consumer:
        await fill(engine, topic, [4])
        assert [m.seqno async for m in consumer] == [1, 2, 3]
        with pytest.raises(EndOfTopic):
            await consumer.recv(timeout=WAIT)


async def test_follow_false_on_an_empty_topic_ends_at_once(engine: Engine, topic: str) -> None:
    await engine.create_topic(topic)
    async with engine.consumer("c", topic, follow=False) as consumer:
        assert [m async for m in consumer] == []


async def test_end_marker_comes_once_when_caught_up(engine: Engine, topic: str) -> None:
    await fill(engine, topic, [1, 2, 3])
    async with engine.consumer("c", topic, end_marker=True) as consumer:
        assert seqnos(await take(consumer, 3)) == [1, 2, 3]
        marker = await consumer.recv(timeout=WAIT)
        assert isinstance(marker, EndMarker)
        assert marker.seqno == 3
        with pytest.raises(TimeoutError):
            await consumer.recv(timeout=QUIET)
        await fill(engine, topic, [4])
        assert seqnos(await take(consumer, 1)) == [4]
        marker = await consumer.recv(timeout=WAIT)
        assert isinstance(marker, EndMarker)
        assert marker.seqno == 4


async def test_end_marker_on_an_empty_topic(engine: Engine, topic: str) -> None:
    await engine.create_topic(topic)
    async with engine.consumer("c", topic, end_marker=True) as consumer:
        marker = await consumer.recv(timeout=WAIT)
    assert isinstance(marker, EndMarker)
    assert marker.seqno == 0


async def test_lag_and_consumer_info(engine: Engine, topic: str) -> None:
    await fill(engine, topic, list(range(5)))
    async with engine.consumer("reader", topic) as consumer:
        assert await consumer.lag() == 5
        assert consumer.position == 1
        await take(consumer, 5)
        assert consumer.position == 6
        assert await consumer.lag() == 5
        await consumer.ack(3)
        assert await consumer.lag() == 2
        assert consumer.acked == 3
        info = await consumer.info()
        assert (info.name, info.mode, info.acked, info.lag) == ("reader", "exclusive", 3, 2)
        [listed] = [c for c in (await engine.topic_info(topic)).consumers if c.name == "reader"]
        assert (listed.mode, listed.acked, listed.lag) == ("exclusive", 3, 2)
        await fill(engine, topic, [5])
        assert await consumer.lag() == 3
    [listed] = (await engine.topic_info(topic)).consumers
    assert (listed.name, listed.acked, listed.lag) == ("reader", 3, 3)


async def test_deleting_the_topic_closes_a_waiting_consumer(engine: Engine, topic: str) -> None:
    await fill(engine, topic, [1])
    async with engine.consumer("c", topic) as consumer:
        await take(consumer, 1)
        waiting = asyncio.create_task(consumer.recv(timeout=WAIT))
        assert await still_waiting(waiting, QUIET), "recv returned with nothing to receive"
        await engine.delete_topic(topic)
        with pytest.raises(Closed):
            await waiting
        with pytest.raises(Closed):
            await consumer.recv(timeout=QUIET)
