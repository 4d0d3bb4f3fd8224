"""Payloads → typed rows: every value type, times, and dead letters for what is not a reading."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pyarrow as pa
import pytest

from lakeport import readings
from lakeport.readings import ROW_SCHEMA
from lakeport.streams.block import MessageBlock
from lakeport.streams.types import Format, Message, datetime_to_ns

MESSAGE_TIME = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


def message(seqno: int, payload: object, producer: str = "sim") -> Message:
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return Message(seqno, datetime_to_ns(MESSAGE_TIME), producer, data)


def build_rows(messages: list[Message]) -> tuple[pa.Table, list[readings.DeadLetter]]:
    return readings.build_rows(MessageBlock.from_messages(messages, Format.JSON))


def reading(i: int, **extra: object) -> dict[str, object]:
    return {"asset": f"pump-{i % 3}", "datastream": "temperature", "value": i * 0.5,
            "unit": "C", "time": "2026-01-02T03:04:05.123456Z", "type": "number", **extra}


def test_number_readings_become_typed_rows() -> None:
    messages = [message(i + 1, reading(i)) for i in range(10)]
    table, dead = build_rows(messages)
    assert dead == []
    assert table.schema == ROW_SCHEMA
    assert table["value_number"].to_pylist() == [i * 0.5 for i in range(10)]
    assert table["seqno"].to_pylist() == list(range(1, 11))
    assert set(table["producer"].to_pylist()) == {"sim"}
    assert table["time"][0].as_py() == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert table["value_string"].null_count == 10


def test_every_value_type_lands_in_its_own_column() -> None:
    values = [1.5, 7, "open", True, {"x": 1, "y": [2]}, [1, 2]]
    messages = [message(i + 1, {"asset": "a", "datastream": "d", "value": v})
                for i, v in enumerate(values)]
    table, dead = build_rows(messages)
    assert dead == []
    rows = table.to_pylist()
    assert [r["value_number"] for r in rows] == [1.5, 7.0, None, None, None, None]
    assert [r["value_string"] for r in rows] == [None, None, "open", None, None, None]
    assert [r["value_bool"] for r in rows] == [None, None, None, True, None, None]
    assert [orjson.loads(r["value_object"]) if r["value_object"] else None for r in rows] == [
        None, None, None, None, {"x": 1, "y": [2]}, [1, 2]]
    assert [r["unit"] for r in rows] == [None] * 6


def test_missing_time_takes_the_message_time() -> None:
    table, _ = build_rows([message(1, {"asset": "a", "datastream": "d", "value": 1})])
    assert table["time"][0].as_py() == MESSAGE_TIME


def test_time_with_an_offset_is_stored_in_utc() -> None:
    payload = {"asset": "a", "datastream": "d", "value": "x", "time": "2026-01-01T02:00:00+02:00"}
    table, _ = build_rows([message(1, payload)])
    assert table["time"][0].as_py() == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not JSON"),
        ([1, 2], "not an object"),
        ({"datastream": "d", "value": 1}, "asset"),
        ({"asset": "a", "value": 1}, "datastream"),
        ({"asset": "a", "datastream": "d"}, "value"),
        ({"asset": "a", "datastream": "d", "value": None}, "value"),
        ({"asset": "a", "datastream": "d", "value": 1, "type": "control_change"}, "type"),
        ({"asset": "a", "datastream": "d", "value": 1, "time": "yesterday"}, "time"),
        ({"asset": "a", "datastream": "d", "value": 1, "time": 12}, "time"),
        ({"asset": 5, "datastream": "d", "value": 1}, "asset"),
    ],
)
def test_a_payload_that_is_not_a_reading_is_a_dead_letter(payload: object, reason: str) -> None:
    messages = [message(1, reading(1)), message(2, payload), message(3, reading(3))]
    table, dead = build_rows(messages)
    assert table["seqno"].to_pylist() == [1, 3]
    assert [(m.seqno, reason in why) for m, why in dead] == [(2, True)]


def test_many_producers_and_gaps_in_seqnos() -> None:
    messages = [message(2, reading(0), "a"), message(5, reading(1), "b")]
    table, _ = build_rows(messages)
    assert table["producer"].to_pylist() == ["a", "b"]
    assert table["seqno"].to_pylist() == [2, 5]


def test_a_payload_spanning_lines_is_read() -> None:
    pretty = orjson.dumps(reading(1), option=orjson.OPT_INDENT_2)
    table, dead = build_rows([message(1, pretty), message(2, reading(2))])
    assert dead == [] and table.num_rows == 2


def test_no_messages_give_an_empty_table() -> None:
    table, dead = build_rows([])
    assert table.num_rows == 0 and table.schema == ROW_SCHEMA and dead == []


def test_all_dead_letters_give_an_empty_table() -> None:
    table, dead = build_rows([message(1, b"[]"), message(2, b"3")])
    assert table.num_rows == 0 and len(dead) == 2
    assert isinstance(table, pa.Table)
