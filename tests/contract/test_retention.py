"""Retention by size: old messages go, the topic stays bounded, consumers start at what is left.

Engines free space in whole segments, so the bound checked here is generous: a topic limited
to 256 KiB that was given 4 MiB must hold well under 4 MiB, and at least its newest message.
"""

from __future__ import annotations

import pytest

from lakeport.streams import Engine, TopicOptions

from ._helpers import WAIT, take

pytestmark = pytest.mark.timeout(60)

MAX_SIZE = 256 * 1024
PAYLOAD = "x" * 1000
COUNT = 4096  # about 4 MiB of payload


async def produce_beyond_the_limit(engine: Engine, topic: str) -> None:
    options = TopicOptions(format="string", max_size=MAX_SIZE)
    await engine.create_topic(topic, options, exist_ok=True)
    async with engine.producer("p", topic) as producer:
        for start in range(0, COUNT, 256):
            await producer.produce_many([f"{i:06d}{PAYLOAD}" for i in range(start, start + 256)])


async def test_max_size_keeps_the_topic_bounded(engine: Engine, topic: str) -> None:
    await produce_beyond_the_limit(engine, topic)
    info = await engine.topic_info(topic)
    assert info.last_seqno == COUNT
    assert 0 < info.bytes <= max(2 * MAX_SIZE, MAX_SIZE + (1 << 20))
    assert info.first_seqno > 1
    assert info.entries == COUNT - info.first_seqno + 1


async def test_consumer_at_beginning_starts_at_the_first_kept_message(engine: Engine,
                                                                      topic: str) -> None:
    await produce_beyond_the_limit(engine, topic)
    first = (await engine.topic_info(topic)).first_seqno
    async with engine.consumer("c", topic, position="beginning") as consumer:
        [message] = await take(consumer, 1, timeout=WAIT)
    assert message.seqno == first
    assert message.payload == f"{first - 1:06d}{PAYLOAD}"


async def test_unread_consumer_behind_retention_resumes_at_the_first_kept_message(
    engine: Engine, topic: str
) -> None:
    await engine.create_topic(topic, TopicOptions(format="string", max_size=MAX_SIZE))
    async with engine.producer("p", topic) as producer:
        await producer.produce("early")
    async with engine.consumer("slow", topic) as consumer:
        await take(consumer, 1)
        await consumer.ack(1)
    await produce_beyond_the_limit(engine, topic)
    first = (await engine.topic_info(topic)).first_seqno
    assert first > 2
    async with engine.consumer("slow", topic) as consumer:
        [message] = await take(consumer, 1)
    assert message.seqno == first
