"""Rules on blocks: filter and project, nested fields, CASE, types, and error rows that do not
stop the block."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pytest

from lakeport.errors import Invalid
from lakeport.routing.rule import RowError, Rule
from lakeport.streams.block import BLOCK_SCHEMA, MessageBlock
from lakeport.streams.registry import open_engine
from lakeport.streams.types import Format, Message, datetime_to_ns

TIME = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
FILTER = ('SELECT asset, value * 1.8 + 32 AS value_f FROM "raw-sensor-data" '
          "WHERE datastream = 'temperature' AND value > 80")


def block(*payloads: object, first: int = 1, key: str | None = None) -> MessageBlock:
    messages = [Message(first + i, datetime_to_ns(TIME), "sim",
                        p if isinstance(p, bytes) else orjson.dumps(p), Format.JSON, None, key)
                for i, p in enumerate(payloads)]
    return MessageBlock.from_messages(messages, Format.JSON)


def reading(asset: str, value: object, datastream: str = "temperature", **extra: object) -> dict:
    return {"asset": asset, "datastream": datastream, "value": value, **extra}


def test_filter_and_project() -> None:
    with Rule(FILTER) as rule:
        out = rule.evaluate(block(reading("p1", 85), reading("p2", 20), reading("p3", 90.5),
                                  reading("p4", 99, "pressure"), first=10))
    assert out.table.column_names == ["asset", "value_f", "_seqno"]
    assert out.table.to_pylist() == [
        {"asset": "p1", "value_f": 185.0, "_seqno": 10},
        {"asset": "p3", "value_f": pytest.approx(194.9), "_seqno": 12}]
    assert (out.rows_in, out.rows_out, out.dropped, out.errors) == (4, 2, 2, [])
    assert (rule.stats.rows_in, rule.stats.rows_out, rule.stats.dropped) == (4, 2, 2)


def test_apply_on_a_block_built_from_arrow() -> None:
    count = 10_000
    payloads = [orjson.dumps(reading(f"p{i % 7}", i % 100)) for i in range(count)]
    table = pa.Table.from_arrays(
        [pa.array(np.arange(1, count + 1)), pa.array(np.full(count, datetime_to_ns(TIME))),
         pa.array(["sim"] * count), pa.array(payloads, pa.binary()),
         pa.nulls(count, pa.string()), pa.nulls(count, pa.string())], schema=BLOCK_SCHEMA)
    with Rule(FILTER) as rule:
        rows = rule.apply(MessageBlock(table, Format.JSON))
    expected = [i + 1 for i in range(count) if i % 100 > 80]
    assert rows.column("_seqno").to_pylist() == expected
    assert rows.column("value_f").to_pylist() == [(i % 100) * 1.8 + 32 for i in range(count)
                                                   if i % 100 > 80]
    assert rule.stats.dropped == count - len(expected)


def test_nested_fields_case_and_optional_fields() -> None:
    sql = ("SELECT asset, payload.meta.site AS site, "
           "CASE WHEN value >= 90 THEN 'hot' WHEN value >= 50 THEN 'warm' ELSE 'cold' END AS level,"
           " coalesce(unit, 'C') AS unit, upper(concat(asset, '-', payload.meta.site)) AS tag "
           "FROM raw WHERE payload.meta.active")
    meta = {"site": "north", "active": True}
    with Rule(sql) as rule:
        out = rule.evaluate(block(
            reading("p1", 95, payload={"meta": meta}, unit="F"),
            reading("p2", 60, payload={"meta": meta}),
            reading("p3", 10, payload={"meta": {**meta, "active": False}}),
            reading("p4", 10, payload={"meta": meta})))
    assert out.table.select(["asset", "site", "level", "unit", "tag"]).to_pylist() == [
        {"asset": "p1", "site": "north", "level": "hot", "unit": "F", "tag": "P1-NORTH"},
        {"asset": "p2", "site": "north", "level": "warm", "unit": "C", "tag": "P2-NORTH"},
        {"asset": "p4", "site": "north", "level": "cold", "unit": "C", "tag": "P4-NORTH"}]
    assert out.errors == [] and out.dropped == 1


def test_bad_rows_are_errors_and_the_block_goes_on() -> None:
    with Rule(FILTER) as rule:
        out = rule.evaluate(block(
            reading("p1", 85),
            b'{"asset": "p2", "value": 9',  # cut short
            b"\xff\xfe not text",
            b"[1, 2, 3]",
            {"asset": "p5", "datastream": "temperature"},  # no value
            reading("p6", None),
            reading("p7", "hot"),
            reading("p8", 88),
            {"datastream": "temperature", "value": 99},  # passes WHERE, no asset to select
            {"datastream": "status", "text": "restarted"},  # WHERE is false: dropped
        ))
    assert out.table.column("_seqno").to_pylist() == [1, 8]
    reasons = {e.seqno: e.reason for e in out.errors}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 9]
    assert reasons[2].startswith("payload is not JSON")
    assert reasons[3] == "payload is not UTF-8 text"
    assert reasons[4].startswith("payload is not a JSON object")
    assert reasons[5] == "no field 'value'"
    assert reasons[6] == "field 'value' is null"
    assert reasons[7].startswith("field 'value' is not a number")
    assert reasons[9] == "no field 'asset'"
    assert out.dropped == 1
    assert all(isinstance(e, RowError) for e in out.errors)
    assert rule.stats.errors == 7


def test_a_row_the_statement_fails_on_is_an_error() -> None:
    with Rule("SELECT asset, CAST(code AS INTEGER) AS code FROM raw") as rule:
        out = rule.evaluate(block({"asset": "a", "code": "12"}, {"asset": "b", "code": "x1"},
                                  {"asset": "c", "code": 7}, {"asset": "d", "code": "8"}))
    assert out.table.to_pylist() == [{"asset": "a", "code": 12, "_seqno": 1},
                                     {"asset": "c", "code": 7, "_seqno": 3},
                                     {"asset": "d", "code": 8, "_seqno": 4}]
    assert [e.seqno for e in out.errors] == [2]
    assert out.errors[0].reason.startswith("cannot evaluate the statement: Conversion Error")


def test_untyped_fields_take_the_type_of_the_data() -> None:
    sql = "SELECT asset, value, ok, meta FROM raw"
    with Rule(sql) as rule:
        rows = rule.apply(block({"asset": "a", "value": 1, "ok": True, "meta": {"x": [1, 2]}},
                                {"asset": "b", "value": 2.5, "ok": False, "meta": [3]}))
        assert rows.schema.field("value").type == pa.float64()
        assert rows.schema.field("ok").type == pa.bool_()
        assert rows.to_pylist()[0] | {"meta": None} == {
            "asset": "a", "value": 1.0, "ok": True, "meta": None, "_seqno": 1}
        assert [orjson.loads(m) for m in rows.column("meta").to_pylist()] == [{"x": [1, 2]},
                                                                               [3]]
        # the type stays: a later string where numbers came is an error row
        out = rule.evaluate(block({"asset": "c", "value": "n/a", "ok": True, "meta": 1},
                                  first=3))
    assert out.errors == [RowError(3, "field 'value' is not a number: b'\"n/a\"'")]


def test_numbers_in_strings_and_epoch_numbers() -> None:
    with Rule("SELECT asset FROM raw WHERE value > 10") as rule:
        rows = rule.apply(block(reading("a", "12.5"), reading("b", "9"), reading("c", 1e3)))
    assert rows.column("asset").to_pylist() == ["a", "c"]


def test_select_star_and_message_columns() -> None:
    with Rule("SELECT * FROM raw WHERE value > 1") as rule:
        rows = rule.apply(block(reading("a", 5), reading("b", 0)))
    assert rows.column_names == ["_payload", "_seqno"]
    assert orjson.loads(rows.column("_payload")[0].as_py()) == reading("a", 5)
    sql = "SELECT _seqno * 10 AS s, _timestamp AS t, _producer AS p, _key AS k FROM raw"
    with Rule(sql) as rule:
        rows = rule.apply(block(reading("a", 5), first=4, key="pump"))
    assert rows.to_pylist() == [{"s": 40, "t": TIME, "p": "sim", "k": "pump", "_seqno": 4}]


def test_empty_block_gives_the_columns() -> None:
    with Rule(FILTER) as rule:
        out = rule.evaluate(MessageBlock.empty())
    assert out.table.num_rows == 0 and out.table.column_names == ["asset", "value_f", "_seqno"]
    assert (out.rows_in, out.dropped, out.errors) == (0, 0, [])


def test_rules_without_windows_have_no_state() -> None:
    with Rule(FILTER) as rule:
        assert rule.state() == b""
        rule.restore(b"")
        with pytest.raises(Invalid, match="no window"):
            rule.flush()
        with pytest.raises(Invalid, match="no window"):
            rule.restore(b"something")


def test_bad_options() -> None:
    with pytest.raises(Invalid, match="bad duration"):
        Rule(FILTER, lateness="soon")
    with pytest.raises(Invalid, match="must not be empty"):
        Rule("SELECT avg(v) FROM raw GROUP BY TUMBLING(1s)", event_time="a..b")


def test_no_process_wide_settings() -> None:
    """The rule's DuckDB is its own (UTC, one thread): the process's default connection and
    environment stay as they were."""
    def setting() -> object:
        return duckdb.sql("SELECT current_setting('TimeZone'), current_setting('threads')"
                          ).fetchall()

    duckdb.execute("SET TimeZone = 'America/New_York'")
    before, environ = setting(), dict(os.environ)
    try:
        with Rule("SELECT avg(value) AS v FROM raw GROUP BY TUMBLING(1s)") as rule:
            rule.apply(block(reading("a", 1, time="2026-01-01T00:00:00")))
            assert rule.flush().column("v").to_pylist() == [1.0]
        assert setting() == before and dict(os.environ) == environ
    finally:
        duckdb.execute("RESET TimeZone")


async def test_blocks_from_a_consumer() -> None:
    async with open_engine("memory://") as engine:
        async with engine.producer("sim", "raw-sensor-data") as producer:
            await producer.produce_many([reading(f"p{i}", 70 + i) for i in range(20)])
        async with engine.consumer("rule", "raw-sensor-data", position="beginning",
                                   follow=False) as consumer:
            got = await consumer.recv_block(100, timeout=5.0)
    with Rule(FILTER) as rule:
        rows = rule.apply(got)
    assert rows.column("asset").to_pylist() == [f"p{i}" for i in range(11, 20)]
    assert rows.column("_seqno").to_pylist() == got.table.column("seqno").to_pylist()[11:]
