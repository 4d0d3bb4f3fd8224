"""Payloads that once stopped the exporter for good: whatever a batch holds, its readings
land and the rest goes to the dead-letter topic with the exact original bytes."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
from _engines import memory_or_file_engine  # noqa: F401 (the engine fixture)

from lakeport.export.config import ExportConfig
from lakeport.export.runtime import Exporter
from lakeport.streams import Engine
from lakeport.streams.types import Format, Message, TopicOptions

pytestmark = pytest.mark.timeout(60)
TOPIC = "plant-data"
DEAD = "dead-letter.export.lake"
BIG = 123456789012345678  # above 2**53
BINARY = b"\xff\xfe\x00{"


def reading(value: Any, asset: str = "pump-1") -> dict[str, Any]:
    return {"asset": asset, "datastream": "counter", "value": value,
            "time": "2026-04-05T06:07:08Z"}


def config(lake: Path) -> ExportConfig:
    return ExportConfig(topics=[TOPIC], to=lake.as_uri(), name="lake", until_idle=0.3,
                        retry_initial=0.01)


def lake_values(lake: Path) -> list[tuple[Any, ...]]:
    return duckdb.sql(f"SELECT seqno, value_number, value_string FROM "
                      f"read_parquet('{lake}/**/*.parquet') ORDER BY seqno").fetchall()


async def dead_letters(engine: Engine) -> list[Message]:
    async with engine.consumer("check", DEAD, position="beginning", follow=False) as consumer:
        return [m async for m in consumer]


async def lag(engine: Engine) -> int:
    info = await engine.topic_info(TOPIC)
    acked = next(c.acked for c in info.consumers if c.name == "lake")
    return info.last_seqno - acked


async def test_a_big_integer_beside_a_string_lands_and_the_exporter_goes_on(
        engine: Engine, tmp_path: Path) -> None:
    async with engine.producer("sim", TOPIC) as producer:
        await producer.produce_many([reading(1.5), reading(BIG), reading("open"), reading(-BIG)])
    lake = tmp_path / "lake"
    status = await Exporter(config(lake), engine=engine).run()
    assert status.state == "stopped" and status.rows == 4 and status.dead_letters == 0
    assert lake_values(lake) == [(1, 1.5, None), (2, float(BIG), str(BIG)),
                                 (3, None, "open"), (4, -float(BIG), str(-BIG))]
    exact = duckdb.sql(f"SELECT CAST(value_string AS HUGEINT) FROM "
                       f"read_parquet('{lake}/**/*.parquet') WHERE seqno = 2").fetchall()
    assert exact == [(BIG,)]
    assert await lag(engine) == 0


async def test_a_binary_payload_is_dead_lettered_with_its_exact_bytes(
        engine: Engine, tmp_path: Path) -> None:
    await engine.create_topic(TOPIC, TopicOptions(format=Format.BYTES))
    async with engine.producer("sim", TOPIC) as producer:
        await producer.produce(orjson.dumps(reading(1.0)))
        await producer.produce(BINARY, headers={"origin": "plc-7"}, key="k1")
        await producer.produce(b"null")
        await producer.produce(orjson.dumps(reading(2.0)))
    lake = tmp_path / "lake"
    status = await Exporter(config(lake), engine=engine).run()
    assert status.rows == 2 and status.dead_letters == 2
    assert [row[:2] for row in lake_values(lake)] == [(1, 1.0), (4, 2.0)]
    letters = await dead_letters(engine)
    assert [m.data for m in letters] == [BINARY, b"null"]
    first = letters[0]
    headers = first.headers or {}
    assert first.key == "k1" and headers["origin"] == "plc-7"
    assert headers["dead-letter-topic"] == TOPIC and headers["dead-letter-seqno"] == "2"
    assert headers["dead-letter-format"] == "bytes" and headers["dead-letter-producer"] == "sim"
    assert headers["dead-letter-reason"].startswith("payload is not JSON")
    assert (await engine.topic_info(DEAD)).options.format is Format.BYTES
    assert await lag(engine) == 0


async def test_a_json_dead_letter_topic_from_before_gets_the_bytes_in_base64(
        engine: Engine, tmp_path: Path) -> None:
    await engine.create_topic(DEAD, TopicOptions(format=Format.JSON))
    await engine.create_topic(TOPIC, TopicOptions(format=Format.BYTES))
    async with engine.producer("sim", TOPIC) as producer:
        await producer.produce(BINARY)
        await producer.produce(orjson.dumps(reading(3.0)))
    lake = tmp_path / "lake"
    status = await Exporter(config(lake), engine=engine).run()
    assert status.rows == 1 and status.dead_letters == 1
    [letter] = [m.payload for m in await dead_letters(engine)]
    assert letter["seqno"] == 1 and letter["topic"] == TOPIC
    assert base64.b64decode(letter["message"]["payload_base64"]) == BINARY
    assert await lag(engine) == 0


async def test_a_null_payload_first_in_a_batch_does_not_stop_the_exporter(
        engine: Engine, tmp_path: Path) -> None:
    async with engine.producer("sim", TOPIC) as producer:
        await producer.produce(None)  # stored as the JSON text null
        await producer.produce(reading(4.0))
    lake = tmp_path / "lake"
    status = await Exporter(config(lake), engine=engine).run()
    assert status.rows == 1 and status.dead_letters == 1
    assert [m.data for m in await dead_letters(engine)] == [b"null"]
    assert await lag(engine) == 0
