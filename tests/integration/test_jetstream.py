"""NATS JetStream specifics of the ``nats://`` engine (shared semantics: tests/contract)."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator

import nats
import pytest

from lakeport.errors import Conflict, NotFound, Unavailable
from lakeport.streams import open_engine
from lakeport.streams.jetstream import JetStreamEngine
from lakeport.streams.jetstream.codec import (
    decode_token,
    encode_token,
    stream_name,
    topic_subject,
)
from lakeport.streams.jetstream.lease import LEASE_TTL
from lakeport.streams.types import Format, Persistence, TopicOptions

pytestmark = [pytest.mark.nats, pytest.mark.timeout(60)]

ODD_NAMES = ["a.b:c@d+e=f", "=41", "x", "-_-", "1.2.3", "@@::++==..--"]


@pytest.fixture
def name() -> str:
    return f"a.b:c@d+e=f-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def engine(nats_url: str, name: str) -> AsyncIterator[JetStreamEngine]:
    async with open_engine(nats_url) as opened:
        assert isinstance(opened, JetStreamEngine)
        yield opened
        with contextlib.suppress(NotFound):
            await opened.delete_topic(name)


async def _raw_stream_info(nats_url: str, topic: str) -> dict:
    client = await nats.connect(nats_url)
    try:
        info = await client.jetstream().stream_info(stream_name(topic))
        return {"config": info.config, "state": info.state}
    finally:
        await client.close()


@pytest.mark.parametrize("odd", ODD_NAMES)
def test_names_encode_into_valid_tokens_and_back(odd: str) -> None:
    token = encode_token(odd)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")
    assert decode_token(token) == odd


def test_distinct_names_get_distinct_tokens() -> None:
    tokens = {encode_token(n) for n in [*ODD_NAMES, "a=2Eb", "a.b"]}
    assert len(tokens) == len(ODD_NAMES) + 2


def test_a_name_too_long_for_jetstream_is_hashed() -> None:
    long_name = "a." * 100
    token = encode_token(long_name)
    assert len(stream_name(long_name)) <= 255
    assert decode_token(token) is None
    assert token != encode_token("b." * 100)


async def test_odd_name_is_a_stream_and_lists_under_its_own_name(
    engine: JetStreamEngine, nats_url: str, name: str
) -> None:
    await engine.create_topic(name)
    raw = await _raw_stream_info(nats_url, name)
    assert raw["config"].name.startswith("LP_")
    assert "." not in raw["config"].name
    assert raw["config"].subjects == [topic_subject(name)]
    assert name in [t.name for t in await engine.list_topics()]
    assert (await engine.topic_info(name)).name == name


async def test_list_topics_ignores_streams_that_are_not_topics(
    engine: JetStreamEngine, nats_url: str
) -> None:
    foreign = f"FOREIGN_{uuid.uuid4().hex[:8]}"
    client = await nats.connect(nats_url)
    try:
        await client.jetstream().add_stream(name=foreign, subjects=[f"foreign.{foreign}"])
        names = [t.name for t in await engine.list_topics()]
        assert foreign not in names
    finally:
        await client.jetstream().delete_stream(foreign)
        await client.close()


async def test_a_topic_with_options_out_of_range_still_lists(
    engine: JetStreamEngine, nats_url: str, name: str
) -> None:
    """An older version took a max_age of 158 years; listing must not fail on it now."""
    options = {"format": "string", "persistence": "disk", "max_size": None,
               "max_age": 5e9, "dedup_window": 120.0}
    description = json.dumps({"lakeport_topic": name, "options": options})
    client = await nats.connect(nats_url)
    try:
        await client.jetstream().add_stream(name=stream_name(name),
                                            subjects=[topic_subject(name)],
                                            description=description)
        names = [t.name for t in await engine.list_topics()]
        assert name in names
    finally:
        await client.close()


async def test_long_names_work(engine: JetStreamEngine) -> None:
    long_name = "L." * 99 + uuid.uuid4().hex[:2]
    try:
        await engine.create_topic(long_name)
        async with engine.producer("p", long_name) as producer:
            assert await producer.produce({"n": 1}) == 1
        assert long_name in [t.name for t in await engine.list_topics()]
    finally:
        await engine.delete_topic(long_name)


async def test_unreachable_server_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        url = f"nats://127.0.0.1:{port}"
        with pytest.raises(Unavailable, match=f"cannot reach NATS at {url}: connection refused"):
            async with open_engine(url):
                pass


async def test_options_round_trip_and_map_onto_the_stream(
    engine: JetStreamEngine, nats_url: str, name: str
) -> None:
    options = TopicOptions(format=Format.STRING, persistence=Persistence.RAM,
                           max_size="1MiB", max_age="1h", dedup_window="30s")
    await engine.create_topic(name, options)
    assert (await engine.topic_info(name)).options == options.model_copy(update={"replicas": 1})
    config = (await _raw_stream_info(nats_url, name))["config"]
    assert config.storage == "memory"
    assert config.max_bytes == 1 << 20
    assert config.max_age == 3600
    assert config.duplicate_window == 30


async def test_duplicate_msg_id_returns_the_original_seqno(engine: JetStreamEngine,
                                                           name: str) -> None:
    async with engine.producer("p", name) as producer:
        first = await producer.produce({"n": 1}, msg_id="reading-1")
        await producer.produce({"n": 2})
        again = await producer.produce({"n": 1}, msg_id="reading-1")
        batch = await producer.produce_many([{"n": 3}, {"n": 1}],
                                            msg_ids=["reading-3", "reading-1"])
    assert again == first == 1
    assert batch == [3, 1]
    assert (await engine.topic_info(name)).last_seqno == 3


async def test_headers_are_nats_headers_and_foreign_messages_are_read(
    engine: JetStreamEngine, nats_url: str, name: str
) -> None:
    async with engine.producer("sensor-7", name) as producer:
        await producer.produce({"t": 1}, headers={"site id": " line:2 ", "unit": "°C"}, key="k 1")
    client = await nats.connect(nats_url)
    try:
        await client.jetstream().publish(topic_subject(name), b'{"t": 2}',
                                         headers={"origin": "plc"})
    finally:
        await client.close()
    async with engine.consumer("c", name, position="beginning", follow=False) as consumer:
        ours, foreign = [m async for m in consumer]
    assert (ours.producer, ours.headers, ours.key) == (
        "sensor-7", {"site id": " line:2 ", "unit": "°C"}, "k 1")
    assert (foreign.producer, foreign.headers, foreign.payload) == ("", {"origin": "plc"}, {"t": 2})


async def test_message_time_is_the_stored_timestamp(engine: JetStreamEngine, name: str) -> None:
    async with engine.producer("p", name) as producer:
        await producer.produce_many([{"n": 1}, {"n": 2}])
    info = await engine.topic_info(name)
    async with engine.consumer("c", name, position="beginning", follow=False) as consumer:
        first, last = [m async for m in consumer]
    assert (first.timestamp_ns, last.timestamp_ns) == (info.oldest_ns, info.newest_ns)


async def test_exclusive_lease_conflicts_across_connections(nats_url: str, name: str) -> None:
    async with open_engine(nats_url) as one, open_engine(nats_url) as two:
        try:
            await one.create_topic(name)
            async with one.consumer("c1", name):
                expected = f"consumer 'c1' on topic '{name}' is already open in exclusive mode"
                with pytest.raises(Conflict, match=re.escape(expected)):
                    async with two.consumer("c1", name):
                        pass
                with pytest.raises(Conflict, match="is open in exclusive mode"):
                    async with two.consumer("c1", name, mode="shared"):
                        pass
            async with two.consumer("c1", name):
                pass  # free again once the first one closed
        finally:
            await one.delete_topic(name)


HOLDER = """
import asyncio, sys
from lakeport.streams import open_engine

async def main():
    async with open_engine(sys.argv[1]) as engine:
        async with engine.consumer("c1", sys.argv[2], mode=sys.argv[3]):
            print("holding", flush=True)
            await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["exclusive", "standby"])
async def test_a_consumer_restarted_after_its_predecessor_was_killed_takes_over(
    nats_url: str, name: str, mode: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """The killed holder's lease is still there for up to its TTL: the new member waits it
    out (and says so) instead of refusing to start."""
    async with open_engine(nats_url) as engine:
        await engine.create_topic(name)
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, nats_url, name, mode],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
            holder.kill()
            holder.wait()
            caplog.set_level(logging.INFO, logger="lakeport.streams.jetstream")
            async with engine.producer("p", name) as producer:
                await producer.produce({"n": 1})
            started = time.monotonic()
            async with engine.consumer("c1", name, mode=mode, position="beginning") as consumer:
                message = await consumer.recv(timeout=LEASE_TTL + 5)
            waited = time.monotonic() - started
            assert message.payload == {"n": 1}
            assert waited <= LEASE_TTL + 2, f"waited {waited:.1f} s"
            if mode == "exclusive":  # a standby waits for a lease anyway
                assert "may have died" in caplog.text
        finally:
            holder.kill()
            await engine.delete_topic(name)


async def test_topic_info_lists_durables_with_ack_floor_lag_and_mode(
    engine: JetStreamEngine, name: str
) -> None:
    async with engine.producer("p", name) as producer:
        await producer.produce_many([{"n": i} for i in range(5)])
    async with engine.consumer("reader", name, mode="shared", position="beginning") as consumer:
        await consumer.recv_batch(3, timeout=5)
        await consumer.ack(3)
        info = await engine.topic_info(name)
        assert [(c.name, c.mode, c.acked, c.lag, c.active) for c in info.consumers] == [
            ("reader", "shared", 3, 2, 1)]


async def test_standby_takes_over_when_the_active_member_dies(nats_url: str, name: str) -> None:
    """A member that vanishes without closing loses its lease once it expires."""
    async with open_engine(nats_url) as survivor_engine:
        await survivor_engine.create_topic(name)
        try:
            async with survivor_engine.producer("p", name) as producer:
                await producer.produce_many([{"n": i} for i in range(4)])
            doomed_engine = open_engine(nats_url)
            await doomed_engine.connect()
            doomed = doomed_engine.consumer("s", name, mode="standby", position="beginning")
            await doomed.open()
            first = await doomed.recv(timeout=5)
            await doomed.ack(first.seqno)
            await doomed.recv(timeout=5)  # delivered, never acked
            async with survivor_engine.consumer("s", name, mode="standby") as survivor:
                doomed._keeper.cancel()  # the process "dies": no refresh, no release
                await doomed_engine._nc.close()
                taken = await survivor.recv(timeout=20)
                assert taken.seqno == first.seqno + 1
        finally:
            await survivor_engine.delete_topic(name)


async def test_deleted_topic_reports_not_found(engine: JetStreamEngine, name: str) -> None:
    await engine.create_topic(name)
    await engine.delete_topic(name)
    with pytest.raises(NotFound, match=re.escape(f"topic '{name}' does not exist")):
        await engine.delete_topic(name)
