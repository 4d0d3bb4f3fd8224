"""The recorder stores a topic of sensor readings as observations."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lakeport.apps.messages import Number, String
from server_fixtures import Platform, platform_settings, running_platform
from waiting import wait_until

API = "/api/v1"
TOPIC = "asset-data"


@pytest.fixture
def recording(store_url: str, tmp_path: Path) -> Iterator[Platform]:
    """A server recording the topic ``asset-data`` of its embedded engine."""
    settings = platform_settings(store_url, tmp_path, record_topics=[TOPIC])
    asyncio.run(produce(settings.streams_url, readings(0, 500)))
    with running_platform(settings) as platform:
        yield platform


def readings(first: int, count: int) -> list[object]:
    out: list[object] = []
    for i in range(first, first + count):
        out.append(Number(asset="pump-1", datastream="pressure", value=i, unit="bar",
                          time=f"2026-01-15T08:00:00.{i % 1000:03d}Z").to_payload())
        if i % 100 == 0:
            out.append(String(asset="pump-1", datastream="mode", value="auto").to_payload())
            out.append({"asset": "pump-1", "datastream": "pressure", "value": "high"})
            out.append(["not", "a", "reading"])
    return out


async def produce(url: str, payloads: list[object]) -> None:
    from lakeport.streams import open_engine

    async with open_engine(url) as engine, engine.producer("plc", TOPIC) as producer:
        await producer.produce_many(payloads)


def wait_for_count(http, expected: int) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 30
    while True:
        counts = http.get(f"{API}/counts").json()
        if counts["observations"] >= expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


def test_readings_become_observations_and_bad_ones_are_skipped(recording: Platform) -> None:
    with recording.client() as http:
        counts = wait_for_count(http, 505)
        assert counts == {"features": 1, "sensors": 1, "properties": 2, "datastreams": 2,
                          "observations": 505}
        prop = http.get(f"{API}/properties/pressure").json()
        assert (prop["unit"], prop["data_type"], prop["owner"]) == ("bar", "number", "recorder")
        assert http.get(f"{API}/properties/mode").json()["data_type"] == "string"
        latest = http.get(f"{API}/observations/latest",
                          params={"sensor": "pump-1", "property": "pressure"}).json()["items"]
        assert latest == [{"sensor": "pump-1", "feature": "pump-1", "property": "pressure",
                           "time": "2026-01-15T08:00:00.499Z", "value": 499.0}]
        asyncio.run(produce(recording.settings.streams_url, readings(500, 100)))
        assert wait_for_count(http, 606)["observations"] == 606  # resumes after its acks


async def rename_observations(store_url: str, old: str, new: str) -> None:
    import sqlalchemy as sa

    from lakeport.server.store import Store

    async with Store(store_url) as store, store.begin() as conn:
        await conn.execute(sa.text(f"ALTER TABLE {old} RENAME TO {new}"))


def test_a_block_the_store_refuses_is_retried_not_skipped(
        recording: Platform, caplog: pytest.LogCaptureFixture) -> None:
    """An error that is not the store being away (here its table is missing for a while) is
    retried too: the block is stored once the table is back, none of it is dropped."""
    url = recording.settings.store_url

    def failures() -> int:
        return sum(r.name == "lakeport.server.recorder" and r.levelno >= logging.ERROR
                   for r in caplog.records)

    with recording.client() as http:
        assert wait_for_count(http, 505)["observations"] == 505
        asyncio.run(rename_observations(url, "observations", "observations_away"))
        try:
            asyncio.run(produce(recording.settings.streams_url, readings(500, 100)))
            wait_until(lambda: failures() >= 4, 30)  # the old recorder skipped after 3
            assert failures() >= 3, caplog.text
        finally:
            asyncio.run(rename_observations(url, "observations_away", "observations"))
        assert wait_for_count(http, 606)["observations"] == 606
        assert any("stored seqnos" in r.getMessage() for r in caplog.records)


def test_a_locked_sqlite_file_is_transient_a_missing_table_is_not(tmp_path: Path) -> None:
    import sqlite3

    from lakeport.server.observations.recorder import transient

    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        holder.execute("CREATE TABLE t (x)")
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(sqlite3.OperationalError) as locked:
            other.execute("INSERT INTO t VALUES (1)")
        assert transient(locked.value), locked.value
        holder.execute("ROLLBACK")
        with pytest.raises(sqlite3.OperationalError) as missing:
            other.execute("INSERT INTO nowhere VALUES (1)")
        assert not transient(missing.value), missing.value
    finally:
        holder.close()
        other.close()


GOOD = [Number(asset="pump-1", datastream="pressure", value=i, unit="bar",
               time=f"2026-01-15T08:00:0{i}Z").to_payload() for i in range(5)]
# each invalid message, as produced, and the start of the reason it is dead-lettered with
INVALID = [
    (b'{"asset": "pump-1", "datastream": "pressure", "value": ', "payload is not JSON"),
    (b"\xff\xfe binary \x00", "payload is not JSON"),
    (b'{"asset": "pump-1", "datastream": "pressure", "value": "high"}',
     "value is a string but property 'pressure' holds number values"),
    (b'{"asset": "pump-1", "datastream": "pressure", "value": 7, '
     b'"time": "9999-12-31T23:59:59-05:00"}', "time is outside the years 1-9999"),
    (b'{"asset": "pump-1", "datastream": "pressure", "value": 8, '
     b'"time": "0000-06-01T00:00:00Z"}', "time is outside the years 1-9999"),
    (b'{"asset": "pump 1", "datastream": "pressure", "value": 9}',
     "asset 'pump 1' is not a valid name"),
    (b'{"asset": "pump-1", "datastream": "mode", "value": "a\\u0000b"}',
     "value holds a NUL character"),
]


async def produce_raw(url: str, payloads: list[bytes]) -> None:
    from lakeport.streams import Format, TopicOptions, open_engine

    async with open_engine(url) as engine:
        await engine.create_topic(TOPIC, TopicOptions(format=Format.BYTES))
        async with engine.producer("plc", TOPIC) as producer:
            for payload in payloads:  # one message per block: seqno order as given
                await producer.produce(payload, headers={"origin": "plc-7"})


async def topic_state(url: str) -> tuple[list[object], int]:
    """The recorder's dead letters of ``TOPIC`` and how many messages it has not acked."""
    from lakeport.errors import NotFound
    from lakeport.streams import open_engine

    async with open_engine(url) as engine:
        info = await engine.topic_info(TOPIC)
        acked = next((c.acked for c in info.consumers if c.name == "recorder"), 0)
        try:
            async with engine.consumer("check", "dead-letter.recorder." + TOPIC,
                                       position="beginning", follow=False) as consumer:
                letters: list[object] = [m async for m in consumer]
        except NotFound:
            letters = []
        return letters, info.last_seqno - acked


def test_invalid_readings_go_to_the_dead_letter_topic_with_their_bytes(
        store_url: str, tmp_path: Path) -> None:
    """Good readings are stored; every invalid one lands in ``dead-letter.recorder.<topic>``
    with its exact bytes, its headers and why; the block is acked only after that."""
    import orjson

    settings = platform_settings(store_url, tmp_path, record_topics=[TOPIC])
    good = [orjson.dumps(p) for p in GOOD]
    payloads = [good[0], good[1], *(raw for raw, _ in INVALID[:4]), good[2],
                *(raw for raw, _ in INVALID[4:]), good[3], good[4]]
    asyncio.run(produce_raw(settings.streams_url, payloads))
    with running_platform(settings) as platform, platform.client() as http:
        state: list[tuple[list[object], int]] = []

        def settled() -> bool:
            state[:] = [asyncio.run(topic_state(settings.streams_url))]
            return len(state[0][0]) == len(INVALID) and state[0][1] == 0

        assert wait_until(settled, 30), state
        letters, unacked = state[0]
        counts = http.get(f"{API}/counts").json()
        assert counts["observations"] == len(GOOD)
        values = http.get(f"{API}/observations", params={"sensor": "pump-1"}).json()["items"]
        assert [v["value"] for v in values] == [0.0, 1.0, 2.0, 3.0, 4.0]
    seqnos = {raw: str(i + 1) for i, raw in enumerate(payloads)}
    assert [m.data for m in letters] == [raw for raw, _ in INVALID]  # type: ignore[attr-defined]
    for message, (raw, reason) in zip(letters, INVALID, strict=True):
        headers = message.headers or {}  # type: ignore[attr-defined]
        assert headers["dead-letter-reason"].startswith(reason), headers
        assert headers["dead-letter-topic"] == TOPIC and headers["origin"] == "plc-7"
        assert headers["dead-letter-seqno"] == seqnos[raw]
    assert unacked == 0
