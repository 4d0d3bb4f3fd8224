"""Apps reading payloads another client stored (any bytes on a json topic), in-process.

Such a payload does not crash the app or stop its stream: on a subscription it goes to the
app's dead-letter topic with its exact bytes and is acked; on the configuration topic it is
refused with one warning naming the topic and seqno, and acked.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_app_sdk import make_app, produce, read_all, start, temp, until_acked

from lakeport.apps import App, config_topic, dead_letter_topic, filters, send_configuration
from lakeport.streams import open_engine
from lakeport.streams.embedded import EmbeddedEngine

pytestmark = pytest.mark.timeout(30)

# non-JSON text, an empty payload, invalid UTF-8, two JSON documents in one message
FOREIGN = [b"not json", b"", b"\xff\xfe{}", b'{"a": 1}{"b": 2}']


@pytest.fixture
def url(tmp_path: Path) -> str:
    return (tmp_path / "streams").as_uri()


@pytest.fixture
async def engine(url: str) -> AsyncIterator[EmbeddedEngine]:
    async with open_engine(url) as opened:
        assert isinstance(opened, EmbeddedEngine)
        yield opened


async def store_raw(engine: EmbeddedEngine, topic: str, payloads: list[bytes]) -> None:
    """Store ``payloads`` as they are, as a client that skips lakeport's encoding would."""
    await engine.create_topic(topic, exist_ok=True)
    writer = await engine.writer(topic, engine.read_options(topic))
    await writer.add_many(b"foreign", payloads, None)


def assert_dead_lettered(records: list[dict[str, Any]], first_seqno: int) -> None:
    assert [r["seqno"] for r in records] == list(range(first_seqno, first_seqno + len(FOREIGN)))
    assert [base64.b64decode(r["payload_base64"]) for r in records] == FOREIGN
    assert all(r["topic"] == "asset-data" for r in records)
    assert all(r["error"].startswith("payload cannot be decoded") for r in records)


async def test_undecodable_payloads_go_to_the_dead_letter_and_the_handler_goes_on(
        tmp_path: Path, url: str, engine: EmbeddedEngine) -> None:
    app = App(app_dir=make_app(tmp_path / "demo-app"), url=url)
    handled: list[float] = []
    app.stream()(lambda message: handled.append(message.value))
    task = await start(app)
    await produce(engine, "asset-data", temp("p", 1))
    await store_raw(engine, "asset-data", FOREIGN)
    [last] = await produce(engine, "asset-data", temp("p", 2))
    await until_acked(engine, "asset-data", last)
    assert not task.done()
    app.stop()
    await task
    assert handled == [1, 2]
    assert_dead_lettered(await read_all(engine, dead_letter_topic("demo-app")), 2)


async def test_undecodable_payloads_do_not_end_a_stream_filter_loop(
        tmp_path: Path, url: str, engine: EmbeddedEngine) -> None:
    await produce(engine, "asset-data", temp("p", 1))
    await store_raw(engine, "asset-data", FOREIGN)
    await produce(engine, "asset-data", temp("p", 2))
    seen: list[float] = []
    async with App(app_dir=make_app(tmp_path / "demo-app"), url=url) as app:
        async for message in app.stream_filter(filters.asset_equals("p")):
            seen.append(message.value)
            if message.value == 2:
                break
    assert seen == [1, 2]
    assert_dead_lettered(await read_all(engine, dead_letter_topic("demo-app")), 2)


async def test_an_undecodable_configuration_update_is_refused_and_the_next_one_applies(
        tmp_path: Path, url: str, engine: EmbeddedEngine,
        caplog: pytest.LogCaptureFixture) -> None:
    folder = make_app(tmp_path / "live", runtime_update=True)
    topic = config_topic("demo-app")
    async with App(app_dir=folder, url=url) as app:
        await store_raw(engine, topic, [b"\xff not json"])
        # the bad update alone is acked: it is refused, not left for a later message
        await until_acked(engine, topic, 1, app.name)
        seqno = await send_configuration(app.name, {"threshold": 42}, url=url)
        await until_acked(engine, topic, seqno, app.name)
        assert app.app_configuration == {"threshold": 42}
    [line] = [m for m in caplog.messages if "cannot be decoded" in m]
    assert f"seqno 1 of topic {topic!r}" in line
    assert not [m for m in caplog.messages if "reading configuration updates failed" in m]


async def test_a_dead_letter_keeps_a_decodable_payload_as_it_was(
        tmp_path: Path, url: str, engine: EmbeddedEngine) -> None:
    app = App(app_dir=make_app(tmp_path / "demo-app"), url=url)
    app.stream()(lambda message: None)
    task = await start(app)
    [seqno] = await produce(engine, "asset-data", {"temp": 3})
    await until_acked(engine, "asset-data", seqno)
    app.stop()
    await task
    [record] = await read_all(engine, dead_letter_topic("demo-app"))
    assert record["payload"] == {"temp": 3} and "payload_base64" not in record
