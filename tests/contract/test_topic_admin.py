"""Creating, listing, inspecting and deleting topics, and ``on_no_exists``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from lakeport.errors import Conflict, Invalid, NotFound
from lakeport.streams import Engine, Format, Persistence, TopicOptions
from lakeport.streams.types import TopicInfo
from lakeport.streams.unacked import with_oldest_unacked
from waiting import still_waiting

from ._helpers import QUIET, WAIT, take

pytestmark = pytest.mark.timeout(30)

BAD_NAMES = ["has space", "a/b", "star*", "gt>", "", "x" * 201, "tab\tname", "ümlaut", "eol\n"]


async def test_create_round_trips_options(engine: Engine, topic: str) -> None:
    options = TopicOptions(format="string", persistence="ram", max_size="1MiB", max_age="1h")
    created = await engine.create_topic(topic, options)
    for info in (created, await engine.topic_info(topic)):
        assert info.name == topic
        assert info.options.format is Format.STRING
        assert info.options.persistence is Persistence.RAM
        assert info.options.max_size == 1 << 20
        assert info.options.max_age == 3600


async def test_default_options_are_json_on_disk_without_retention(engine: Engine,
                                                                  topic: str) -> None:
    await engine.create_topic(topic)
    info = await engine.topic_info(topic)
    assert info.options.format is Format.JSON
    assert info.options.persistence is Persistence.DISK
    assert (info.options.max_size, info.options.max_age) == (None, None)


async def test_new_topic_is_empty(engine: Engine, topic: str) -> None:
    await engine.create_topic(topic)
    info = await engine.topic_info(topic)
    assert (info.last_seqno, info.entries, info.bytes) == (0, 0, 0)
    assert (info.oldest_ns, info.newest_ns) == (None, None)
    assert info.consumers == []


async def test_create_twice_is_a_conflict(engine: Engine, topic: str) -> None:
    await engine.create_topic(topic)
    with pytest.raises(Conflict, match=topic):
        await engine.create_topic(topic)


async def test_exist_ok_returns_the_existing_topic_unchanged(engine: Engine, topic: str) -> None:
    await engine.create_topic(topic, TopicOptions(format="bytes"))
    async with engine.producer("p", topic) as producer:
        await producer.produce(b"\x00\x01")
    again = await engine.create_topic(topic, TopicOptions(format="string"), exist_ok=True)
    assert again.options.format is Format.BYTES
    assert again.last_seqno == 1
    assert (await engine.topic_info(topic)).options.format is Format.BYTES


async def test_list_topics_is_sorted_and_has_every_topic(engine: Engine, topic_names) -> None:
    names = [topic_names("list-b"), topic_names("list-a"), topic_names("list-c")]
    for name in names:
        await engine.create_topic(name)
    listed = [info.name for info in await engine.list_topics()]
    assert listed == sorted(listed)
    assert [name for name in listed if name in names] == sorted(names)


async def test_info_counts_messages_bytes_and_times(engine: Engine, topic: str) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    async with engine.producer("p", topic) as producer:
        await producer.produce({"n": 1})
        await producer.produce_many([{"n": 2}, {"n": 3}])
    after = datetime.now(UTC) + timedelta(seconds=5)
    info = await engine.topic_info(topic)
    assert (info.first_seqno, info.last_seqno, info.entries) == (1, 3, 3)
    assert info.bytes > 0
    assert info.oldest_ns is not None and info.newest_ns is not None
    assert info.oldest_ns <= info.newest_ns
    for ns in (info.oldest_ns, info.newest_ns):
        assert before <= datetime.fromtimestamp(ns / 1e9, UTC) <= after
    assert info.to_dict()["last_seqno"] == 3


async def test_info_gives_each_consumers_oldest_unacked_message_time(engine: Engine,
                                                                        topic: str) -> None:
    """What ``topics show`` prints as "oldest unacked" (a forwarder's oldest unforwarded)."""
    async with engine.producer("p", topic) as producer:
        for n in range(3):
            await producer.produce({"n": n})
    async with engine.consumer("c", topic, position="beginning") as consumer:
        messages = await take(consumer, 3)
        await consumer.ack(messages[0].seqno)
        assert (await engine.topic_info(topic)).consumers[0].lag == 2
        (info,) = (await shown(engine, topic)).consumers
        assert (info.lag, info.oldest_unacked_ns) == (2, messages[1].timestamp_ns)
        shown_json = (await shown(engine, topic)).to_dict()["consumers"][0]["oldest_unacked"]
        assert datetime.fromisoformat(shown_json) == datetime.fromtimestamp(
            messages[1].timestamp_ns // 1000 / 1e6, UTC)
        await consumer.ack(messages[2].seqno)
        (info,) = (await shown(engine, topic)).consumers
        assert (info.lag, info.oldest_unacked_ns) == (0, None)


async def shown(engine: Engine, topic: str) -> TopicInfo:
    """The info as ``topics show`` gets it (the server's route for the http engine)."""
    return await with_oldest_unacked(engine, await engine.topic_info(topic))


async def test_delete_topic(engine: Engine, topic: str) -> None:
    async with engine.producer("p", topic) as producer:
        await producer.produce({"n": 1})
    await engine.delete_topic(topic)
    with pytest.raises(NotFound, match=topic):
        await engine.topic_info(topic)
    assert topic not in [info.name for info in await engine.list_topics()]
    with pytest.raises(NotFound, match=topic):
        await engine.delete_topic(topic)


async def test_deleted_topic_can_be_created_again_empty(engine: Engine, topic: str) -> None:
    async with engine.producer("p", topic) as producer:
        await producer.produce_many([1, 2, 3])
    await engine.delete_topic(topic)
    async with engine.producer("p", topic) as producer:
        assert await producer.produce(4) == 1


async def test_missing_topic_info_is_not_found(engine: Engine, topic: str) -> None:
    with pytest.raises(NotFound, match=topic):
        await engine.topic_info(topic)


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_bad_topic_name_is_invalid(engine: Engine, name: str) -> None:
    with pytest.raises(Invalid, match="bad name"):
        await engine.create_topic(name)
    with pytest.raises(Invalid, match="bad name"):
        engine.producer("p", name)
    with pytest.raises(Invalid, match="bad name"):
        engine.consumer("c", name)


async def test_names_with_every_allowed_character_work(engine: Engine, topic_names) -> None:
    name = topic_names("A-z_0+9=x:y@z.")
    async with engine.producer("p:1@host.x", name) as producer:
        await producer.produce({"n": 1})
    async with engine.consumer("c+1=a_b.c@d:e", name, position="beginning") as consumer:
        [message] = await take(consumer, 1)
    assert message.payload == {"n": 1}
    assert name in [info.name for info in await engine.list_topics()]
    assert (await engine.topic_info(name)).name == name


async def test_consumer_fail_on_missing_topic(engine: Engine, topic: str) -> None:
    with pytest.raises(NotFound, match=topic):
        async with engine.consumer("c", topic, on_no_exists="fail"):
            pass
    with pytest.raises(NotFound, match=topic):
        await engine.topic_info(topic)


async def test_producer_fail_on_missing_topic(engine: Engine, topic: str) -> None:
    with pytest.raises(NotFound, match=topic):
        async with engine.producer("p", topic, on_no_exists="fail"):
            pass


async def test_create_on_missing_topic_uses_the_options(engine: Engine, topic_names) -> None:
    consumed, produced = topic_names("by-consumer"), topic_names("by-producer")
    async with engine.consumer("c", consumed, on_no_exists="create",
                               options=TopicOptions(format="string")):
        pass
    async with engine.producer("p", produced, options=TopicOptions(format="bytes")):
        pass
    assert (await engine.topic_info(consumed)).options.format is Format.STRING
    assert (await engine.topic_info(produced)).options.format is Format.BYTES


async def test_consumer_waits_for_a_topic_created_later(engine: Engine, topic: str) -> None:
    async def first_message() -> object:
        async with engine.consumer("c", topic, on_no_exists="wait",
                                   position="beginning") as consumer:
            return (await take(consumer, 1))[0].payload

    waiting = asyncio.create_task(first_message())
    assert await still_waiting(waiting, QUIET), "the consumer did not wait for the topic"
    with pytest.raises(NotFound):  # waiting does not create it
        await engine.topic_info(topic)
    async with engine.producer("p", topic) as producer:
        await producer.produce({"hello": "world"})
    assert await asyncio.wait_for(waiting, WAIT) == {"hello": "world"}


async def test_producer_waits_for_a_topic_created_later(engine: Engine, topic: str) -> None:
    async def produce_one() -> int:
        async with engine.producer("p", topic, on_no_exists="wait") as producer:
            return await producer.produce("late")

    waiting = asyncio.create_task(produce_one())
    assert await still_waiting(waiting, QUIET), "the producer did not wait for the topic"
    with pytest.raises(NotFound):  # waiting does not create it
        await engine.topic_info(topic)
    await engine.create_topic(topic, TopicOptions(format="string"))
    assert await asyncio.wait_for(waiting, WAIT) == 1
