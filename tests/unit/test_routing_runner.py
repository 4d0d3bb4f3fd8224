"""The rule runner: topic → topic with message ids, dead letters, and restarts after a crash
between produce and ack that store nothing twice and count no window twice."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

import duckdb
import orjson
import pytest

from lakeport.routing.rule import Rule
from lakeport.routing.runner import RuleRunner
from lakeport.streams.base import Engine
from lakeport.streams.registry import open_engine

FILTER = ('SELECT asset, value * 1.8 + 32 AS value_f FROM "raw-sensor-data" '
          "WHERE datastream = 'temperature' AND value > 80")
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def memory_url() -> str:
    """A memory engine of the test's own (memory engines share their topics by URL)."""
    return f"memory://runner-{uuid.uuid4().hex}"


class Crash(Exception):
    pass


def reading(asset: str, value: object, datastream: str = "temperature", **extra: object) -> dict:
    return {"asset": asset, "datastream": datastream, "value": value, **extra}


async def produce(engine: Engine, payloads: list[Any]) -> None:
    async with engine.producer("sim", "raw-sensor-data") as producer:
        for p in payloads:
            await producer.produce(p)


async def read_all(engine: Engine, topic: str) -> list[Any]:
    async with engine.consumer("check", topic, position="beginning", follow=False,
                               ephemeral=True) as consumer:
        return [m async for m in consumer]


async def drain(runner: RuleRunner, max_n: int = 100_000) -> None:
    """Step until the rule's topic is acked to its end (a deadline, no sleeps)."""
    deadline = asyncio.get_running_loop().time() + 10
    while await runner.lag():
        assert asyncio.get_running_loop().time() < deadline, "runner did not catch up"
        await runner.step(max_n, timeout=0.5)


async def test_filter_topic_to_topic_with_msg_ids() -> None:
    async with open_engine(memory_url()) as engine:
        await produce(engine, [reading("p1", 85), reading("p2", 20), reading("p3", 90.5),
                               reading("p4", 99, "pressure")])
        async with RuleRunner(engine, Rule(FILTER), "hot", "hot-readings") as runner:
            assert await runner.step(100, timeout=5) == 4
            assert await runner.step(100, timeout=0.01) == 0
            info = await runner.info()
        out = await read_all(engine, "hot-readings")
        assert [orjson.loads(m.data) for m in out] == [
            {"asset": "p1", "value_f": 185.0}, {"asset": "p3", "value_f": pytest.approx(194.9)}]
        assert info == {"blocks": 1, "rows_in": 4, "rows_out": 2, "dropped": 2, "late": 0,
                        "errors": 0, "acked": 4, "lag": 0, "action_errors": {},
                        "rate": 0.0, "last_error": None}
        # the msg ids: producing them again stores nothing
        async with engine.producer("again", "hot-readings") as producer:
            assert await producer.produce_many([{"x": 1}, {"x": 3}],
                                               msg_ids=["rule:hot:1", "rule:hot:3"]) == [
                out[0].seqno, out[1].seqno]
        assert len(await read_all(engine, "hot-readings")) == 2
        async with engine.consumer("rule.hot", "raw-sensor-data") as consumer:
            assert consumer.acked == 4


async def test_bad_payload_goes_to_the_dead_letter_topic() -> None:
    async with open_engine(memory_url()) as engine:
        async with engine.producer("sim", "raw-sensor-data") as producer:
            await producer.produce(reading("p1", 85))
            await producer.produce(reading("p2", "hot"))
            await producer.produce(reading("p3", 95))
        async with RuleRunner(engine, Rule(FILTER), "hot", "hot-readings") as runner:
            await drain(runner)
            assert runner.stats.errors == 1
        assert [orjson.loads(m.data)["asset"] for m in await read_all(engine, "hot-readings")
                ] == ["p1", "p3"]
        dead = await read_all(engine, "dead-letter.rule.hot")
        assert len(dead) == 1
        assert orjson.loads(dead[0].data) == reading("p2", "hot")
        headers = dead[0].headers
        assert headers["dead-letter-seqno"] == "2"
        assert headers["dead-letter-topic"] == "raw-sensor-data"
        assert headers["dead-letter-reason"].startswith("field 'value' is not a number")
        assert headers["dead-letter-rule"] == "hot"


async def test_restart_after_a_crash_between_produce_and_ack() -> None:
    async with open_engine(memory_url()) as engine:
        await produce(engine, [reading(f"p{i}", 70 + i) for i in range(30)])
        runner = RuleRunner(engine, Rule(FILTER), "hot", "hot-readings")
        await runner.open()
        assert runner._consumer is not None

        async def crash(seqno: int) -> None:
            raise Crash

        runner._consumer.ack = crash  # type: ignore[method-assign]
        with pytest.raises(Crash):
            await runner.step(20, timeout=5)
        await runner.close()
        assert len(await read_all(engine, "hot-readings")) == 9  # p11..p19 produced, not acked
        async with RuleRunner(engine, Rule(FILTER), "hot", "hot-readings") as again:
            await drain(again, 7)
        out = [orjson.loads(m.data)["asset"] for m in await read_all(engine, "hot-readings")]
        assert out == [f"p{i}" for i in range(11, 30)]


WINDOW = ('SELECT asset, avg(value) AS mean, min(value) AS lo, max(value) AS hi, '
          'count(*) AS n, first(value) AS f, last(value) AS l, window_start() AS ws '
          'FROM "raw-sensor-data" GROUP BY asset, TUMBLING(10s)')


def window_input(count: int) -> list[dict]:
    return [{"asset": f"a{i % 3}", "value": (i * 7) % 23,
             "time": BASE_MS + i * 700} for i in range(count)]


def expected(rows: list[dict]) -> list[dict]:
    con = duckdb.connect()
    con.execute("CREATE TABLE r (asset VARCHAR, value DOUBLE, t BIGINT, s BIGINT)")
    con.executemany("INSERT INTO r VALUES (?, ?, ?, ?)",
                    [(r["asset"], r["value"], r["time"], i) for i, r in enumerate(rows)])
    got = con.execute(
        "SELECT asset, t // 10000 * 10000 AS ws, avg(value), min(value), max(value), "
        "count(*), arg_min(value, s), arg_max(value, s) FROM r GROUP BY ALL "
        "ORDER BY ws, asset").fetchall()
    return [{"asset": a, "ws": ws, "mean": pytest.approx(m), "lo": lo, "hi": hi, "n": n,
             "f": f, "l": last} for a, ws, m, lo, hi, n, f, last in got]


@pytest.mark.parametrize("crash_at", ["before_state", "after_state"])
async def test_window_rule_restart_emits_each_window_once(crash_at: str) -> None:
    rows = window_input(200)  # 140 s of readings: 14 windows, the last still open
    async with open_engine(memory_url()) as engine:
        await produce(engine, rows)
        runner = RuleRunner(engine, Rule(WINDOW), "avg", "averages")
        await runner.open()
        for _ in range(3):
            assert await runner.step(23, timeout=5) == 23
        assert runner._consumer is not None and runner._state is not None

        async def crash(*args: object, **kwargs: object) -> None:
            raise Crash

        if crash_at == "after_state":
            runner._consumer.ack = crash  # type: ignore[method-assign]
        else:
            runner._state.produce = crash  # type: ignore[method-assign]
        with pytest.raises(Crash):
            await runner.step(31, timeout=5)
        await runner.close()
        # the rows of the crashed block are out already; the restart adds none twice
        async with RuleRunner(engine, Rule(WINDOW), "avg", "averages") as again:
            # died after saving the state: the state's ack is taken, the block not redone
            assert again.stats.acked == (100 if crash_at == "after_state" else 69)
            await drain(again, 17)
        out = [orjson.loads(m.data) for m in await read_all(engine, "averages")]
    want = [w for w in expected(rows) if w["ws"] + 10_000 <= rows[-1]["time"]]
    for row in out:
        assert set(row) == {"asset", "mean", "lo", "hi", "n", "f", "l", "ws"}
        row["ws"] = round(datetime.fromisoformat(row["ws"]).timestamp() * 1000)
    assert sorted(out, key=lambda r: (r["ws"], r["asset"])) == want
    assert len(want) == 13 * 3


async def test_run_until_stopped() -> None:
    async with open_engine(memory_url()) as engine:
        await produce(engine, [reading("p1", 85), reading("p2", 95)])
        stop = asyncio.Event()
        runner = RuleRunner(engine, Rule(FILTER), "hot", "hot-readings")
        task = asyncio.create_task(runner.run(stop))
        async with engine.consumer("check", "hot-readings", position="beginning",
                                   on_no_exists="wait", ephemeral=True) as consumer:
            got = [await consumer.recv(timeout=5), await consumer.recv(timeout=5)]
        stop.set()
        await asyncio.wait_for(task, 5)
        assert [orjson.loads(m.data)["asset"] for m in got] == ["p1", "p2"]
