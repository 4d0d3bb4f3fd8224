"""The SOS JSON of a sensor as reading rows (``build_rows(..., sos=True)``, the recorder's)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pyarrow as pa

from lakeport import readings
from lakeport.streams.block import MessageBlock
from lakeport.streams.types import Format, Message, datetime_to_ns

MESSAGE_TIME = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


def message(seqno: int, payload: object) -> Message:
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return Message(seqno, datetime_to_ns(MESSAGE_TIME), "plc", data)


def build_rows(payloads: list[object], sos: bool = True
               ) -> tuple[pa.Table, list[tuple[int, str]]]:
    block = MessageBlock.from_messages([message(i + 1, p) for i, p in enumerate(payloads)],
                                       Format.JSON)
    table, dead = readings.build_rows(block, sos=sos)
    return table, [(m.seqno, why) for m, why in dead]


def test_one_row_per_observation_with_the_sensor_as_asset() -> None:
    table, dead = build_rows([
        {"sensor": "s1", "feature": "f1", "observations": {"obs1": 1.5, "obs2": "x"},
         "time": "2026-01-02T03:04:05Z"},
        {"asset": "pump", "datastream": "p", "value": 2, "unit": "bar", "feature": "no"},
        {"sensor": "s2", "observations": {"on": True}},
    ])
    assert dead == []
    rows = table.select(["asset", "datastream", "value_number", "value_string", "value_bool",
                         "unit", "seqno"]).to_pylist()
    assert [tuple(r.values()) for r in rows] == [
        ("s1", "obs1", 1.5, None, None, None, 1),
        ("s1", "obs2", None, "x", None, None, 1),
        ("pump", "p", 2.0, None, None, "bar", 2),
        ("s2", "on", None, None, True, None, 3),
    ]
    assert table["feature"].to_pylist() == ["f1", "f1", None, None]
    times = table["time"].to_pylist()
    assert times[0] == times[1] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert times[3] == MESSAGE_TIME  # no time: the message's


def test_a_bad_sos_message_is_one_dead_letter_with_its_reason() -> None:
    table, dead = build_rows([
        {"sensor": "s1", "observations": {}},
        {"sensor": 5, "observations": {"a": 1}},
        {"sensor": "s1", "observations": {"a": 1}, "colour": "red"},
        {"sensor": "s1", "observations": {"a": 1, "b": None}},
        {"sensor": "s1", "observations": {"a": 1, "b": 2}, "time": "yesterday"},
        {"sensor": "s1", "observations": {"ok": 3}},
        {"sensor": "s1", "feature": ["f"], "observations": {"a": 1}},
    ])
    assert table["datastream"].to_pylist() == ["ok"] and table["seqno"].to_pylist() == [6]
    assert [seqno for seqno, _ in dead] == [1, 2, 3, 4, 5, 7]
    assert dead[5][1] == "feature is not a non-empty string"
    assert dead[0][1].startswith("not SOS JSON: expected {\"sensor\"")
    assert dead[1][1].startswith("not SOS JSON")
    assert dead[2][1] == "not SOS JSON: unknown key 'colour'"
    assert dead[3][1] == "observation 'b': value is missing or null"
    assert dead[4][1].startswith("time 'yesterday' is not an ISO 8601 time")


def test_without_sos_an_sos_payload_is_no_reading() -> None:
    table, dead = build_rows([{"sensor": "s1", "observations": {"a": 1}}], sos=False)
    assert table.num_rows == 0
    assert dead == [(1, "asset is missing or not a non-empty string")]


def test_number_batches_still_take_the_fast_path() -> None:
    payloads = [{"asset": "a", "datastream": "d", "value": i} for i in range(3)]
    block = MessageBlock.from_messages([message(i + 1, p) for i, p in enumerate(payloads)],
                                       Format.JSON)
    assert readings._numeric_fast_path(block) is not None
    table, dead = readings.build_rows(block, sos=True)
    assert dead == [] and table["value_number"].to_pylist() == [0.0, 1.0, 2.0]
