"""Reading in bulk: ``recv_block`` hands out the same messages as ``recv`` as Arrow columns."""

from __future__ import annotations

import pytest

from lakeport.streams import Engine

from ._helpers import QUIET, WAIT

pytestmark = pytest.mark.timeout(30)


async def read_blocks(consumer, total: int, max_n: int = 1000) -> list:
    blocks = []
    while sum(map(len, blocks)) < total:
        block = await consumer.recv_block(max_n, timeout=WAIT)
        assert 1 <= len(block) <= max_n
        blocks.append(block)
    return blocks


async def test_blocks_hold_every_message_in_order(engine: Engine, topic: str) -> None:
    async with engine.producer("p", topic) as producer:
        await producer.produce_many([{"n": n} for n in range(2500)])
    async with engine.consumer("c", topic) as consumer:
        blocks = await read_blocks(consumer, 2500, max_n=700)
        messages = [m for block in blocks for m in block.messages()]
        assert [m.seqno for m in messages] == list(range(1, 2501))
        assert [m.payload for m in messages] == [{"n": n} for n in range(2500)]
        assert {m.producer for m in messages} == {"p"}
        assert blocks[0].data_bytes == sum(len(m.data) for m in blocks[0].messages())
        lines = bytes(blocks[0].payload_lines()).split(b"\n")
        assert lines == [m.data for m in blocks[0].messages()]
        with pytest.raises(TimeoutError):
            await consumer.recv_block(10, timeout=QUIET)


async def test_blocks_keep_headers_keys_and_producers(engine: Engine, topic: str) -> None:
    async with engine.producer("a", topic) as first:
        await first.produce({"n": 1}, headers={"unit": "C"}, key="pump-1")
        await first.produce_many([{"n": 2}, {"n": 3}])
    async with engine.producer("b", topic) as second:
        await second.produce_many([{"n": 4}])
    async with engine.consumer("c", topic) as consumer:
        messages = [m for block in await read_blocks(consumer, 4) for m in block.messages()]
    assert [(m.producer, m.headers, m.key, m.payload["n"]) for m in messages] == [
        ("a", {"unit": "C"}, "pump-1", 1), ("a", None, None, 2), ("a", None, None, 3),
        ("b", None, None, 4)]


async def test_acked_blocks_are_not_delivered_again(engine: Engine, topic: str) -> None:
    async with engine.producer("p", topic) as producer:
        await producer.produce_many(list(range(10)))
    async with engine.consumer("c", topic) as consumer:
        block = await consumer.recv_block(6, timeout=WAIT)
        await consumer.ack(block.last_seqno)
    async with engine.consumer("c", topic) as consumer:
        rest = await read_blocks(consumer, 10 - len(block))
    assert rest[0].first_seqno == block.last_seqno + 1
    assert rest[-1].last_seqno == 10


async def test_follow_false_blocks_stop_at_the_end_seen_on_open(engine: Engine,
                                                                topic: str) -> None:
    async with engine.producer("p", topic) as producer:
        await producer.produce_many(list(range(5)))
        async with engine.consumer("c", topic, follow=False) as consumer:
            await producer.produce_many(list(range(5)))
            blocks = await read_blocks(consumer, 5)
            assert blocks[-1].last_seqno == 5
            with pytest.raises(Exception, match="end of topic"):
                await consumer.recv_block(10, timeout=QUIET)


async def test_a_block_starts_at_a_position_inside_a_committed_batch(engine: Engine,
                                                                    topic: str) -> None:
    async with engine.producer("p", topic) as producer:
        await producer.produce_many(list(range(10)))
    async with engine.consumer("c", topic, position="seqno:4") as consumer:
        blocks = await read_blocks(consumer, 7)
    assert [m.payload for block in blocks for m in block.messages()] == list(range(3, 10))
