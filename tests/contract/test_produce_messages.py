"""``Producer.produce_block``: messages stored with their own time, producer, headers and key,
deduplicated by msg_id, checked against the topic's format (every engine)."""

from __future__ import annotations

import pytest

from lakeport.errors import Invalid
from lakeport.streams import Engine, TopicOptions
from lakeport.streams.block import MessageBlock
from lakeport.streams.types import Format, Message

pytestmark = pytest.mark.timeout(60)

T0 = 1_600_000_000_123_456_000  # 2020-09-13, a time no engine would stamp today


def source_block(n: int = 5, fmt: Format = Format.JSON) -> MessageBlock:
    """Messages as another topic held them: older times, two producers, some headers."""
    messages = [
        Message(100 + i, T0 + (i // 2) * 1000, "sensor-a" if i < 3 else "sensor-b",
                b'{"n": %d}' % i, fmt, {"unit": "C"} if i % 2 else None,
                "k" if i == 4 else None)
        for i in range(n)
    ]
    return MessageBlock.from_messages(messages, fmt)


async def read_all(engine: Engine, topic: str) -> list[Message]:
    async with engine.consumer("reader", topic, position="beginning", follow=False) as consumer:
        return [message async for message in consumer]


def own_time(engine: Engine, message: Message) -> int:
    """The message's original time: JetStream keeps it in a header (it stamps its own)."""
    if engine.url.startswith("nats://"):
        from lakeport.streams.jetstream.producer import ORIGINAL_TIME_HEADER

        return int((message.headers or {})[ORIGINAL_TIME_HEADER])
    return message.timestamp_ns


def user_headers(engine: Engine, message: Message) -> dict[str, str] | None:
    if engine.url.startswith("nats://"):
        from lakeport.streams.jetstream.producer import ORIGINAL_TIME_HEADER

        rest = {k: v for k, v in (message.headers or {}).items() if k != ORIGINAL_TIME_HEADER}
        return rest or None
    return message.headers


async def test_time_producer_headers_and_key_are_kept(engine: Engine, topic: str) -> None:
    block = source_block()
    async with engine.producer("forwarder", topic) as producer:
        seqnos = await producer.produce_block(block)
    assert seqnos == [1, 2, 3, 4, 5]
    stored = await read_all(engine, topic)
    originals = block.messages()
    assert [m.seqno for m in stored] == seqnos
    assert [m.data for m in stored] == [m.data for m in originals]
    assert [own_time(engine, m) for m in stored] == [m.timestamp_ns for m in originals]
    assert [m.producer for m in stored] == [m.producer for m in originals]
    assert [user_headers(engine, m) for m in stored] == [m.headers for m in originals]
    assert [m.key for m in stored] == [m.key for m in originals]


async def test_a_msg_id_is_stored_once(engine: Engine, topic: str) -> None:
    block = source_block(4)
    ids = [f"site:src:{i}" for i in range(4)]
    async with engine.producer("forwarder", topic) as producer:
        first = await producer.produce_block(block, msg_ids=ids)
        again = await producer.produce_block(block.slice(2), msg_ids=ids[2:])
        empty = await producer.produce_block(MessageBlock.empty())
    assert first == [1, 2, 3, 4]
    assert again == [3, 4]
    assert empty == []
    assert len(await read_all(engine, topic)) == 4


async def test_payloads_must_fit_the_topic_format(engine: Engine, topic: str) -> None:
    bad = MessageBlock.from_messages([Message(1, T0, "p", b"not json", Format.BYTES)],
                                     Format.BYTES)
    async with engine.producer("forwarder", topic) as producer:
        with pytest.raises(Invalid, match="JSON"):
            await producer.produce_block(bad)
        with pytest.raises(Invalid, match="msg_ids"):
            await producer.produce_block(source_block(2), msg_ids=["only-one"])
    assert await read_all(engine, topic) == []


async def test_bytes_topics_take_any_bytes(engine: Engine, topic: str) -> None:
    await engine.create_topic(topic, TopicOptions(format=Format.BYTES))
    raw = MessageBlock.from_messages([Message(1, T0, "p", b"\xff\x00", Format.BYTES)],
                                     Format.BYTES)
    async with engine.producer("forwarder", topic) as producer:
        assert await producer.produce_block(raw) == [1]
    [stored] = await read_all(engine, topic)
    assert stored.data == b"\xff\x00"


async def test_last_msg_id_finds_the_newest_with_a_prefix(engine: Engine, topic: str) -> None:
    find = engine.last_msg_id  # type: ignore[attr-defined]  # every engine of the suite
    async with engine.producer("forwarder", topic) as producer:
        await producer.produce_block(source_block(3), msg_ids=["a:t:1", "a:t:2", "a:t:3"])
        await producer.produce_block(source_block(2), msg_ids=["b:t:1", "b:t:2"])
    assert await find(topic, None, "a:t:") == "a:t:3"
    assert await find(topic, None, "b:t:") == "b:t:2"
    assert await find(topic, None, "c:t:") is None
    assert await find(topic, "sensor-b", "a:t:") is None  # a:t:1-3 came from sensor-a
