"""What producing stores: seqnos, time, producer name, headers, key, payload formats, dedup."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from lakeport.errors import Closed, Invalid
from lakeport.streams import Engine, TopicOptions

from ._helpers import drain, seqnos, take

pytestmark = pytest.mark.timeout(30)


async def read_all(engine: Engine, topic: str) -> list:
    async with engine.consumer("reader", topic, position="beginning", follow=False) as consumer:
        return [message async for message in consumer]


async def test_seqnos_are_gapless_from_one(engine: Engine, topic: str) -> None:
    async with engine.producer("p", topic) as producer:
        first = await producer.produce({"n": 0})
        batch = await producer.produce_many([{"n": i} for i in range(1, 6)])
        last = await producer.produce({"n": 6})
        empty = await producer.produce_many([])
    assert [first, *batch, last] == list(range(1, 8))
    assert empty == []
    messages = await read_all(engine, topic)
    assert seqnos(messages) == list(range(1, 8))
    assert [m.payload for m in messages] == [{"n": i} for i in range(7)]


async def test_two_producers_share_one_sequence(engine: Engine, topic: str) -> None:
    async with engine.producer("a", topic) as a, engine.producer("b", topic) as b:
        produced = [await a.produce(1), await b.produce(2), await a.produce(3)]
    assert produced == [1, 2, 3]
    assert [m.producer for m in await read_all(engine, topic)] == ["a", "b", "a"]


async def test_time_is_utc_and_set_on_append(engine: Engine, topic: str) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    async with engine.producer("p", topic) as producer:
        await producer.produce({"n": 1})
    after = datetime.now(UTC) + timedelta(seconds=5)
    [message] = await read_all(engine, topic)
    assert message.time.tzinfo is not None
    assert message.time.utcoffset() == timedelta(0)
    assert before <= message.time <= after
    assert message.to_dict()["time"].endswith("Z")


async def test_producer_name_headers_and_key_round_trip(engine: Engine, topic: str) -> None:
    headers = {"site": "plant-7", "unit": "°C", "empty": ""}
    async with engine.producer("sensor-gw.1", topic) as producer:
        await producer.produce({"temp": 10}, headers=headers, key="line-4")
        await producer.produce({"temp": 11})
    with_extras, plain = await read_all(engine, topic)
    assert with_extras.producer == plain.producer == "sensor-gw.1"
    assert with_extras.headers == headers
    assert with_extras.key == "line-4"
    assert not plain.headers
    assert plain.key is None
    record = with_extras.to_dict()
    assert (record["seqno"], record["producer"], record["key"]) == (1, "sensor-gw.1", "line-4")
    assert record["payload"] == {"temp": 10}


async def test_json_payloads_round_trip(engine: Engine, topic: str) -> None:
    payloads = [{"a": [1, 2.5, None, True]}, [1, "x"], "text", 42, None, {"ü": "ß"}]
    async with engine.producer("p", topic) as producer:
        await producer.produce_many(payloads)
        await producer.produce(b'{"raw": "json text"}')
    messages = await read_all(engine, topic)
    assert [m.payload for m in messages] == [*payloads, {"raw": "json text"}]


async def test_string_payloads_round_trip(engine: Engine, topic: str) -> None:
    await engine.create_topic(topic, TopicOptions(format="string"))
    async with engine.producer("p", topic) as producer:
        await producer.produce("plain text ü")
        await producer.produce("grüne\nZeilen".encode())
        await producer.produce("")
    messages = await read_all(engine, topic)
    assert [m.payload for m in messages] == ["plain text ü", "grüne\nZeilen", ""]


async def test_bytes_payloads_round_trip(engine: Engine, topic: str) -> None:
    await engine.create_topic(topic, TopicOptions(format="bytes"))
    blob = bytes(range(256)) * 4
    async with engine.producer("p", topic) as producer:
        await producer.produce(blob)
        await producer.produce(b"\xff\xfe\x00")
        await producer.produce("text")
    messages = await read_all(engine, topic)
    assert [m.payload for m in messages] == [blob, b"\xff\xfe\x00", b"text"]
    assert messages[1].to_dict()["payload"] == "fffe00"


@pytest.mark.parametrize(
    ("fmt", "bad", "complaint"),
    [
        ("json", b"{not json", "not valid JSON"),
        ("json", object(), "cannot be encoded as JSON"),
        ("string", b"\xff\xfe", "not UTF-8"),
        ("string", 12, "takes str or bytes"),
        ("bytes", {"a": 1}, "takes str or bytes"),
    ],
)
async def test_payload_not_fitting_the_format_is_invalid_and_not_stored(
    engine: Engine, topic: str, fmt: str, bad: object, complaint: str
) -> None:
    await engine.create_topic(topic, TopicOptions(format=fmt))
    good = "ok" if fmt != "json" else {"ok": True}
    async with engine.producer("p", topic) as producer:
        await producer.produce(good)
        with pytest.raises(Invalid, match=complaint):
            await producer.produce(bad)
        with pytest.raises(Invalid, match=complaint):
            await producer.produce_many([good, bad])
        assert await producer.produce(good) == 2
    assert (await engine.topic_info(topic)).last_seqno == 2


async def test_same_msg_id_is_stored_once(engine: Engine, topic: str) -> None:
    async with engine.producer("p", topic) as producer:
        first = await producer.produce({"v": 1}, msg_id="reading-1")
        again = await producer.produce({"v": "changed"}, msg_id="reading-1")
        other = await producer.produce({"v": 2}, msg_id="reading-2")
    assert (first, again, other) == (1, 1, 2)
    info = await engine.topic_info(topic)
    assert (info.last_seqno, info.entries) == (2, 2)
    assert [m.payload for m in await read_all(engine, topic)] == [{"v": 1}, {"v": 2}]


async def test_msg_ids_dedup_across_producers_and_batches(engine: Engine, topic: str) -> None:
    async with engine.producer("a", topic) as a, engine.producer("b", topic) as b:
        assert await a.produce_many(["x", "y"], msg_ids=["id-x", "id-y"]) == [1, 2]
        assert await b.produce("y again", msg_id="id-y") == 2
        assert await b.produce_many(["z", "x again"], msg_ids=["id-z", "id-x"]) == [3, 1]
        assert await a.produce("no id") == 4
    assert [m.payload for m in await read_all(engine, topic)] == ["x", "y", "z", "no id"]


async def test_many_concurrent_produces_get_distinct_gapless_seqnos(engine: Engine,
                                                                    topic: str) -> None:
    async with engine.producer("p", topic) as producer:
        produced = await asyncio.gather(*(producer.produce({"i": i}) for i in range(500)))
    assert sorted(produced) == list(range(1, 501))
    async with engine.consumer("c", topic, position="beginning") as consumer:
        messages = await take(consumer, 500)
        assert await drain(consumer) == []
    assert seqnos(messages) == list(range(1, 501))
    by_seqno = {m.seqno: m.payload for m in messages}
    assert all(by_seqno[seqno] == {"i": i} for i, seqno in enumerate(produced))


async def test_produce_on_closed_producer_is_refused(engine: Engine, topic: str) -> None:
    producer = engine.producer("p", topic)
    with pytest.raises(Closed):
        await producer.produce({"n": 1})
    async with producer:
        await producer.produce({"n": 1})
    with pytest.raises(Closed):
        await producer.produce({"n": 2})
    assert (await engine.topic_info(topic)).last_seqno == 1
