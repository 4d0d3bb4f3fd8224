"""Whatever a payload holds, the rows builder either makes a row of it or a dead letter:
numbers float64 cannot hold exactly, deep nesting, arbitrary JSON documents."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakeport import readings
from lakeport.readings import ROW_SCHEMA
from lakeport.streams.block import MessageBlock
from lakeport.streams.types import Format, Message, datetime_to_ns

MESSAGE_NS = datetime_to_ns(datetime(2026, 3, 1, 8, 30, tzinfo=UTC))
BIG = 123456789012345678  # above 2**53: float64 holds 123456789012345680


def block(datas: list[bytes], fmt: Format = Format.JSON) -> MessageBlock:
    return MessageBlock.from_messages(
        [Message(i + 1, MESSAGE_NS, "sim", data, fmt) for i, data in enumerate(datas)], fmt)


def reading(value: Any) -> bytes:
    return orjson.dumps({"asset": "a", "datastream": "d", "value": value})


def test_a_big_integer_beside_a_string_is_kept_exactly() -> None:
    table, dead = readings.build_rows(block([reading(BIG), reading("open")]))
    assert dead == []
    assert table["value_number"].to_pylist() == [float(BIG), None]
    assert table["value_string"].to_pylist() == [str(BIG), "open"]


def test_big_integers_alone_and_in_the_all_number_path_keep_their_digits() -> None:
    for values in ([BIG, 1.5], [BIG], [-BIG, 2, 2**53, 2**53 + 1, 2**64 - 1]):
        table, dead = readings.build_rows(block([reading(v) for v in values]))
        assert dead == []
        assert table["value_number"].to_pylist() == [float(v) for v in values]
        assert table["value_string"].to_pylist() == [
            str(v) if type(v) is int and abs(v) > 2**53 else None for v in values]


def test_integers_beyond_64_bits_keep_their_digits() -> None:
    huge = 123456789012345678901234567890
    datas = [b'{"asset":"a","datastream":"d","value":%d}' % huge,
             b'{"asset":"a","datastream":"d","value":-%d}' % huge,
             b'{"asset":"a","datastream":"d","value":1.0e29}',
             reading("x")]
    table, dead = readings.build_rows(block(datas))
    assert dead == []
    assert table["value_number"].to_pylist() == [float(huge), -float(huge), 1e29, None]
    assert table["value_string"].to_pylist() == [str(huge), f"-{huge}", None, "x"]


def test_a_value_nested_deeper_than_the_json_writer_goes_is_still_written() -> None:
    deep = b"[" * 400 + b"]" * 400
    datas = [b'{"asset":"a","datastream":"d","value":' + deep + b"}", reading("x")]
    table, dead = readings.build_rows(block(datas))
    assert dead == []
    assert json.loads(table["value_object"][0].as_py()) == json.loads(deep)


def test_a_value_nested_too_deep_to_write_is_a_dead_letter() -> None:
    deep = b"[" * 1000 + b"]" * 1000
    datas = [b'{"asset":"a","datastream":"d","value":' + deep + b"}", reading("x")]
    table, dead = readings.build_rows(block(datas))
    assert table["value_string"].to_pylist() == ["x"]
    assert [(m.seqno, reason) for m, reason in dead] == [
        (1, "value is nested too deeply to be written as JSON text")]


def test_a_null_payload_first_in_a_batch_is_a_dead_letter() -> None:
    # Arrow's JSON reader crashes the process on a body starting with null
    for fmt in (Format.JSON, Format.BYTES):
        table, dead = readings.build_rows(block([b"null", reading(1.5)], fmt))
        assert table["value_number"].to_pylist() == [1.5]
        assert [m.seqno for m, _ in dead] == [1]


# -- any JSON at all -------------------------------------------------------------------------
_SCALARS = (st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
            | st.integers() | st.sampled_from([0.0, -0.0, 2**53, 2**53 + 1, -(2**63), 2**64 - 1,
                                               2**64, BIG, -BIG, 10**30])
            | st.text()
            # lone surrogates (written as \udXXX escapes) and control characters such as NUL
            | st.text(st.characters(categories=["Cs", "Cc", "Ll"]), max_size=4))
_JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=12)
_TIMES = st.none() | st.sampled_from(["2026-01-02T03:04:05Z", "2026-01-02T03:04:05+02:00",
                                      "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z",
                                      "2026-01-02", "yesterday", ""]) | st.text(max_size=8)
_READING = st.fixed_dictionaries(
    {"asset": st.text(max_size=4) | _SCALARS, "datastream": st.text(max_size=4) | _SCALARS,
     "value": _JSON},
    optional={"unit": st.text(max_size=3) | _SCALARS, "time": _TIMES | _SCALARS,
              "type": st.sampled_from(["number", "string", "boolean", "object", "other"])})
_ESCAPES = st.sampled_from([b'"\\ud800"', b'"\\udfff x"', b'"a\\u0000b"', b'"\\ud83d\\ude00"',
                            b"\xff\xfe\x00{", b"", b"{", b"NaN", b"1e400", b"  7  "])


def _encode(value: Any) -> bytes:
    # the stdlib writes every integer exactly and escapes lone surrogates as \udXXX
    return json.dumps(value).encode()


def _with_raw(doc: dict[str, Any], raw: bytes, name: str) -> bytes:
    """``doc`` with field ``name`` set to the raw (possibly invalid) JSON text ``raw``."""
    rest = {k: v for k, v in doc.items() if k != name}
    text = _encode(rest)
    return text[:-1] + (b", " if rest else b"") + _encode(name) + b": " + raw + b"}"


def _payloads() -> st.SearchStrategy[bytes]:
    spliced = st.builds(_with_raw, _READING, _ESCAPES,
                        st.sampled_from(["value", "asset", "time", "unit"]))
    return st.builds(_encode, _READING) | spliced | st.builds(_encode, _JSON) | _ESCAPES


def _check(datas: list[bytes], fmt: Format) -> None:
    table, dead = readings.build_rows(block(datas, fmt))
    assert table.schema == ROW_SCHEMA
    table.validate(full=True)
    row_seqnos = table["seqno"].to_pylist()
    dead_seqnos = [m.seqno for m, _ in dead]
    assert len(row_seqnos) + len(dead_seqnos) == len(datas)
    assert sorted(row_seqnos + dead_seqnos) == list(range(1, len(datas) + 1))
    assert all(isinstance(reason, str) and reason for _, reason in dead)
    for row in table.to_pylist():
        values = [row[c] for c in ("value_number", "value_string", "value_bool", "value_object")]
        assert any(v is not None for v in values)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_payloads(), min_size=1, max_size=12))
def test_any_payloads_become_rows_or_dead_letters(datas: list[bytes]) -> None:
    _check(datas, Format.JSON)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_payloads(), min_size=1, max_size=12))
def test_any_bytes_on_a_bytes_topic_become_rows_or_dead_letters(datas: list[bytes]) -> None:
    _check(datas, Format.BYTES)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.builds(_encode, _READING), min_size=1, max_size=12))
def test_readings_with_arbitrary_fields_become_rows_or_dead_letters(datas: list[bytes]) -> None:
    _check(datas, Format.JSON)


def test_numbers_keep_their_sign_and_zero() -> None:
    table, dead = readings.build_rows(block([reading(-0.0), reading(0.0), reading("s")]))
    assert dead == []
    numbers = table["value_number"].to_pylist()
    assert str(numbers[0]) == "-0.0" and str(numbers[1]) == "0.0"
    assert pa.types.is_floating(table.schema.field("value_number").type)
