"""Consumers sharing one name: exclusive, shared and standby."""

from __future__ import annotations

import asyncio

import pytest

from lakeport.errors import Conflict, Invalid
from lakeport.streams import Engine
from waiting import eventually

from ._helpers import QUIET, WAIT, drain, seqnos, take

pytestmark = pytest.mark.timeout(30)


async def fill(engine: Engine, topic: str, n: int, start: int = 1) -> None:
    async with engine.producer("p", topic) as producer:
        await producer.produce_many([{"n": i} for i in range(start, start + n)])


async def test_second_exclusive_consumer_is_refused(engine: Engine, topic: str) -> None:
    await engine.create_topic(topic)
    async with engine.consumer("c", topic, mode="exclusive"):
        second = engine.consumer("c", topic, mode="exclusive")
        with pytest.raises(Conflict, match="'c'"):
            await second.open()
        async with engine.consumer("other-name", topic, mode="exclusive"):
            pass
    async with engine.consumer("c", topic, mode="exclusive"):
        pass


async def test_bad_mode_is_invalid(engine: Engine, topic: str) -> None:
    with pytest.raises(Invalid, match="bad mode"):
        engine.consumer("c", topic, mode="broadcast")


async def test_shared_members_split_the_messages(engine: Engine, topic: str) -> None:
    await engine.create_topic(topic)
    async with engine.consumer("workers", topic, mode="shared") as a, \
            engine.consumer("workers", topic, mode="shared") as b:
        await fill(engine, topic, 20)
        got_a = await a.recv_batch(5, timeout=WAIT)
        got_b = await b.recv_batch(5, timeout=WAIT)
        assert len(got_a) == len(got_b) == 5
        assert not set(seqnos(got_a)) & set(seqnos(got_b))
        got_a += await drain(a)
        got_b += await drain(b)
        assert sorted(seqnos(got_a) + seqnos(got_b)) == list(range(1, 21))
        for consumer, got in ((a, got_a), (b, got_b)):
            await consumer.ack(max(seqnos(got)))
        assert await a.lag() == await b.lag() == 0


async def test_shared_members_working_concurrently_split_the_messages(engine: Engine,
                                                                      topic: str) -> None:
    """Each member gets some of the work, every message goes to exactly one member, and none
    goes to a member while another one holds it unacked."""
    await engine.create_topic(topic)
    members = ("a", "b", "c")
    received: dict[str, list[int]] = {member: [] for member in members}
    holding: dict[str, set[int]] = {member: set() for member in members}  # received, unacked
    taken_twice: list[str] = []
    opened = {member: asyncio.Event() for member in members}
    everything_acked = asyncio.Event()

    async def work(member: str) -> None:
        async with engine.consumer("workers", topic, mode="shared") as consumer:
            opened[member].set()
            while True:
                try:
                    got = seqnos(await consumer.recv_batch(7, timeout=QUIET))
                except TimeoutError:
                    if everything_acked.is_set():  # and nothing came again for QUIET seconds
                        return
                    continue
                for other in members:
                    if both := holding[other] & set(got):
                        taken_twice.append(f"{sorted(both)} went to {member} while {other} "
                                           "held them")
                holding[member].update(got)
                received[member].extend(got)
                await asyncio.sleep(0)  # the others fetch while this member holds messages
                await consumer.ack(got[-1])
                holding[member].clear()

    def count() -> int:
        return sum(map(len, received.values()))

    workers = [asyncio.create_task(work(member)) for member in members]
    assert await eventually(lambda: all(e.is_set() for e in opened.values())), \
        "the members to open"
    async with engine.producer("p", topic) as producer:
        for start in range(0, 200, 20):  # in steps the members work through side by side
            await producer.produce_many(list(range(start, start + 20)))
            assert await eventually(lambda start=start: count() >= start + 20), \
                f"the members to receive messages {start + 1}-{start + 20}: {received}"

    async def acked() -> int:
        info = await engine.topic_info(topic)
        return next(c.acked for c in info.consumers if c.name == "workers")

    async def all_acked() -> bool:
        return await acked() == 200

    assert await eventually(all_acked), f"the members to ack all 200, not {await acked()}"
    assert await eventually(lambda: not any(holding.values())), "the members to ack"
    everything_acked.set()
    await asyncio.wait_for(asyncio.gather(*workers), WAIT)
    assert taken_twice == []
    assert all(received.values()), f"a member got no work: {received}"
    assert sorted(s for got in received.values() for s in got) == list(range(1, 201))


async def test_shared_unacked_messages_go_to_another_member(engine: Engine,
                                                             topic: str) -> None:
    await fill(engine, topic, 6)
    async with engine.consumer("workers", topic, mode="shared") as b:
        async with engine.consumer("workers", topic, mode="shared") as a:
            taken = await a.recv_batch(3, timeout=WAIT)
            assert seqnos(taken) == [1, 2, 3]
            await a.ack(1)
        # a closed with 2 and 3 unacked: they are b's now, and nothing is delivered twice
        rest = await drain(b)
        assert sorted(seqnos(rest)) == [2, 3, 4, 5, 6]


async def test_shared_ack_timeout_hands_messages_to_another_member(engine: Engine,
                                                                   topic: str) -> None:
    await fill(engine, topic, 2)
    async with engine.consumer("workers", topic, mode="shared", ack_timeout=0.3) as a, \
            engine.consumer("workers", topic, mode="shared", ack_timeout=0.3) as b:
        assert seqnos(await a.recv_batch(2, timeout=WAIT)) == [1, 2]  # never acked
        again = await take(b, 2)
        assert seqnos(again) == [1, 2]
        await b.ack(2)
        assert await b.lag() == 0


async def test_standby_takes_over_after_the_last_ack(engine: Engine, topic: str) -> None:
    await fill(engine, topic, 5)
    async with engine.consumer("pair", topic, mode="standby") as active:
        standby = engine.consumer("pair", topic, mode="standby")
        await standby.open()
        try:
            assert seqnos(await take(active, 5)) == [1, 2, 3, 4, 5]
            await active.ack(3)
            with pytest.raises(TimeoutError):
                await standby.recv(timeout=QUIET)
            await active.close()
            assert seqnos(await take(standby, 2)) == [4, 5]
            await fill(engine, topic, 1, start=6)
            assert seqnos(await take(standby, 1)) == [6]
        finally:
            await standby.close()


async def test_standby_member_that_opens_first_is_active(engine: Engine, topic: str) -> None:
    await fill(engine, topic, 2)
    async with engine.consumer("pair", topic, mode="standby") as first, \
            engine.consumer("pair", topic, mode="standby") as second:
        assert seqnos(await take(first, 2)) == [1, 2]
        await fill(engine, topic, 1, start=3)
        assert seqnos(await take(first, 1)) == [3]
        with pytest.raises(TimeoutError):
            await second.recv(timeout=QUIET)


async def test_mixing_modes_on_one_name_is_refused(engine: Engine, topic: str) -> None:
    await engine.create_topic(topic)
    async with engine.consumer("c", topic, mode="shared"):
        with pytest.raises(Conflict):
            await engine.consumer("c", topic, mode="exclusive").open()
