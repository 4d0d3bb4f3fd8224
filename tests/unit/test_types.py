"""Value types of the topic API: durations, sizes, positions, filters, payloads, options."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from lakeport.errors import Invalid
from lakeport.streams import Filters, Format, Message, Persistence, Position, TopicOptions
from lakeport.streams.types import (
    MAX_DURATION,
    MAX_SIZE,
    TopicInfo,
    decode_payload,
    encode_payload,
    now_ns,
    parse_duration,
    parse_size,
    validate_topic_name,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("10m", 600), ("2h", 7200), ("7d", 604800), ("1w", 604800),
     ("1.5h", 5400), (" 3 s ", 3), ("45", 45), (12, 12.0), (0.25, 0.25),
     (timedelta(minutes=2), 120)],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "ten minutes", "10x", "-5s", "5 m s", "m"])
def test_parse_duration_rejects_bad_input(text: str) -> None:
    with pytest.raises(Invalid, match=f"bad duration {text!r}"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("100", 100), ("100b", 100), ("1k", 1024), ("1KB", 1024), ("1KiB", 1024),
     ("512MB", 512 << 20), ("1GiB", 1 << 30), ("2t", 2 << 40), ("1.5k", 1536), (4096, 4096)],
)
def test_parse_size(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "10 parsecs", "-1k", "1 k b b"])
def test_parse_size_rejects_bad_input(text: str) -> None:
    with pytest.raises(Invalid, match=f"bad size {text!r}"):
        parse_size(text)


@pytest.mark.parametrize("name", ["raw-sensor-data", "a", "A+b_c=d:e@f.g-h", "x" * 200])
def test_valid_topic_names(name: str) -> None:
    assert validate_topic_name(name) == name


@pytest.mark.parametrize("name", ["", "a b", "a/b", "a*", "ü", "x" * 201, "a\n"])
def test_bad_topic_names_say_what_is_allowed(name: str) -> None:
    with pytest.raises(Invalid, match=r"bad name .*A-Z a-z 0-9"):
        validate_topic_name(name)


def test_position_parse_plain_kinds() -> None:
    assert Position.parse("beginning") == Position.beginning()
    assert Position.parse("end") == Position.end()
    assert Position.parse(" unread ") == Position.unread()
    assert Position.parse("seqno:42") == Position.at_seqno(42)
    position = Position.beginning()
    assert Position.parse(position) is position


def test_position_parse_since_and_time() -> None:
    before = now_ns()
    since = Position.parse("since:10m")
    assert since.kind == "time"
    assert before - 600e9 - 1e9 <= since.timestamp_ns <= now_ns() - 600e9
    at = Position.parse("time:2026-01-01T00:00:00Z")
    assert at == Position.timestamp(datetime(2026, 1, 1, tzinfo=UTC))
    assert at.timestamp_ns == 1_767_225_600 * 10**9
    offset = Position.parse("time:2026-01-01T02:00:00+02:00")
    assert offset.timestamp_ns == at.timestamp_ns


@pytest.mark.parametrize(
    "text",
    ["start", "seqno:", "seqno:x", "seqno:0", "seqno:-3", "since:", "since:soon",
     "time:yesterday", "beginning:1", "", "end:now"],
)
def test_position_parse_rejects_bad_input_listing_the_forms(text: str) -> None:
    with pytest.raises(Invalid) as caught:
        Position.parse(text)
    message = str(caught.value)
    assert "\n" not in message
    if text.startswith("seqno:") and text[6:].lstrip("-").isdigit():
        assert "seqnos start at 1" in message
    elif text.startswith("since:") and text[6:]:
        assert "bad duration" in message
    else:
        assert f"bad position {text!r}" in message
        assert "beginning, end, unread, seqno:N, since:10m" in message


def test_position_time_needs_a_time_zone() -> None:
    with pytest.raises(Invalid, match="time zone"):
        Position.timestamp(datetime(2026, 1, 1))
    with pytest.raises(Invalid, match="time zone"):
        Position.parse("time:2026-01-01T00:00:00")


def test_message_time_and_timestamp_position_agree_exactly() -> None:
    stamp = 1_767_225_600_123_456_789
    message = Message(1, stamp, "p", b"{}")
    assert message.time == datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    assert Position.timestamp(message.time).timestamp_ns <= stamp
    eastern = message.time.astimezone(timezone(timedelta(hours=-5)))
    assert Position.timestamp(eastern) == Position.timestamp(message.time)


def test_filters_match_and_exclude() -> None:
    data = b'{"site": "plant-7", "temp": 21.5}'
    assert Filters().accepts(data)
    assert not Filters().active
    assert Filters(match_re=r"plant-\d").accepts(data)
    assert not Filters(match_re=r"^plant").accepts(data)
    assert Filters(match_string="temp").accepts(data)
    assert not Filters(match_string="humidity").accepts(data)
    assert not Filters(no_match_re=r"plant-[0-9]").accepts(data)
    assert Filters(no_match_re=r"depot").accepts(data)
    assert not Filters(no_match_string="plant-7").accepts(data)
    assert Filters(no_match_string="plant-8").accepts(data)
    both = Filters(match_string="temp", no_match_string="plant-7")
    assert both.active
    assert not both.accepts(data)


def test_filters_match_non_ascii_text() -> None:
    data = '{"unit": "°C"}'.encode()
    assert Filters(match_string="°C").accepts(data)
    assert Filters(match_re="°[CF]").accepts(data)


def test_bad_filter_regex_is_invalid() -> None:
    with pytest.raises(Invalid, match="bad filter regular expression"):
        Filters(match_re="(unclosed")
    with pytest.raises(Invalid, match="bad filter regular expression"):
        Filters(no_match_re="[z-a]")


@pytest.mark.parametrize(
    ("payload", "fmt", "data"),
    [
        ({"temp": 10}, Format.JSON, b'{"temp":10}'),
        ([1, None], Format.JSON, b"[1,null]"),
        ("text", Format.JSON, b'"text"'),
        (b'{"raw": 1}', Format.JSON, b'{"raw": 1}'),
        ("grüße", Format.STRING, "grüße".encode()),
        (b"utf-8 bytes", Format.STRING, b"utf-8 bytes"),
        (b"\xff\x00", Format.BYTES, b"\xff\x00"),
        (bytearray(b"ab"), Format.BYTES, b"ab"),
        ("text", Format.BYTES, b"text"),
    ],
)
def test_encode_payload(payload: object, fmt: Format, data: bytes) -> None:
    assert encode_payload(payload, fmt) == data


def test_decode_payload_round_trips() -> None:
    assert decode_payload(encode_payload({"a": [1, 2]}, Format.JSON), Format.JSON) == {"a": [1, 2]}
    assert decode_payload(encode_payload("ü", Format.STRING), Format.STRING) == "ü"
    assert decode_payload(b"\x00\xff", Format.BYTES) == b"\x00\xff"


@pytest.mark.parametrize(
    ("payload", "fmt", "complaint"),
    [
        (b"{not json", Format.JSON, "not valid JSON for a json topic"),
        (b"", Format.JSON, "not valid JSON for a json topic"),
        ({1, 2}, Format.JSON, "cannot be encoded as JSON"),
        (b"\xff\xfe", Format.STRING, "not UTF-8 text for a string topic"),
        (3.5, Format.STRING, "a string topic takes str or bytes payloads, not float"),
        ({"a": 1}, Format.BYTES, "a bytes topic takes str or bytes payloads, not dict"),
    ],
)
def test_encode_payload_rejects_what_does_not_fit(payload: object, fmt: Format,
                                                  complaint: str) -> None:
    with pytest.raises(Invalid, match=complaint) as caught:
        encode_payload(payload, fmt)
    assert "\n" not in str(caught.value)


def test_message_to_dict() -> None:
    message = Message(7, 1_767_225_600_000_000_000, "gw", b'{"t":1}', Format.JSON,
                      {"h": "v"}, "k")
    assert message.to_dict() == {
        "seqno": 7, "time": "2026-01-01T00:00:00Z", "producer": "gw",
        "headers": {"h": "v"}, "key": "k", "payload": {"t": 1},
    }
    plain = Message(1, 0, "gw", b"\x01", Format.BYTES).to_dict()
    assert "headers" not in plain
    assert "key" not in plain
    assert plain["payload"] == "01"


def test_topic_options_defaults_and_parsing() -> None:
    options = TopicOptions()
    assert (options.format, options.persistence) == (Format.JSON, Persistence.DISK)
    assert (options.max_size, options.max_age) == (None, None)
    parsed = TopicOptions(format="string", persistence="ram", max_size="1MiB", max_age="10m",
                          dedup_window="30s")
    assert parsed.format is Format.STRING
    assert parsed.persistence is Persistence.RAM
    assert (parsed.max_size, parsed.max_age, parsed.dedup_window) == (1 << 20, 600, 30)
    assert TopicOptions.model_validate(parsed.model_dump()) == parsed
    assert TopicOptions(max_age=timedelta(hours=1)).max_age == 3600


def test_topic_options_unknown_key_names_the_key() -> None:
    with pytest.raises(ValidationError, match="max_sise"):
        TopicOptions(max_sise=10)


@pytest.mark.parametrize(
    ("field", "value"),
    [("format", "xml"), ("persistence", "tape"), ("max_size", 0), ("max_size", "huge"),
     ("max_age", -1), ("max_age", "forever"), ("dedup_window", -1)],
)
def test_topic_options_reject_bad_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises((ValidationError, Invalid)) as caught:
        TopicOptions(**{field: value})
    assert field in str(caught.value) or repr(value) in str(caught.value)


def test_topic_options_are_frozen() -> None:
    with pytest.raises(ValidationError):
        TopicOptions().max_size = 5  # type: ignore[misc]


def test_topic_info_to_dict() -> None:
    info = TopicInfo("t", TopicOptions(max_size=1024), 2, 9, 8, 800,
                     1_767_225_600_000_000_000, 1_767_225_601_500_000_000)
    record = info.to_dict()
    assert record["first_seqno"] == 2
    assert record["last_seqno"] == 9
    assert record["max_size"] == 1024
    assert record["oldest"] == "2026-01-01T00:00:00Z"
    assert record["newest"] == "2026-01-01T00:00:01.500000Z"
    assert record["consumers"] == []


NUMERIC_OPTIONS = ("max_size", "max_age", "dedup_window")
BOUND_IN_MESSAGE = {"max_size": "2**62 bytes", "max_age": "100 years",
                    "dedup_window": "100 years"}


@pytest.mark.parametrize("field", NUMERIC_OPTIONS)
@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -math.inf, 1e300, 10**400, "inf", "-inf", "Infinity", "nan", "NaN",
     "1e300", "9" * 400, "9" * 400 + "d"],
)
def test_numeric_options_refuse_nan_infinity_and_huge_values_naming_the_field(
        field: str, value: object) -> None:
    with pytest.raises(Invalid) as caught:
        TopicOptions(**{field: value})
    message = str(caught.value)
    assert message.startswith(f"{field}: ")
    assert BOUND_IN_MESSAGE[field] in message
    assert "\n" not in message
    assert len(message) < 400


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_size", MAX_SIZE + 1), ("max_age", MAX_DURATION + 1), ("max_age", "36501d"),
     ("dedup_window", MAX_DURATION * 2.0), ("dedup_window", "5300w"), ("max_size", -1),
     ("max_age", 0), ("dedup_window", -0.5), ("max_size", True)],
)
def test_numeric_options_refuse_values_out_of_range_naming_field_and_bound(
        field: str, value: object) -> None:
    with pytest.raises(Invalid) as caught:
        TopicOptions(**{field: value})
    assert re.match(f"{field}: .*allowed: .*{re.escape(BOUND_IN_MESSAGE[field])}",
                    str(caught.value))


def test_numeric_options_accept_their_bounds() -> None:
    options = TopicOptions(max_size=MAX_SIZE, max_age=MAX_DURATION, dedup_window=0)
    assert (options.max_size, options.max_age, options.dedup_window) == (
        2**62, 100 * 365 * 86400, 0)
    assert TopicOptions(max_age="36500d", dedup_window="5200w").max_age == MAX_DURATION
    assert TopicOptions.model_validate_json(options.model_dump_json()) == options


@pytest.mark.parametrize(
    ("stored", "field"),
    [('{"dedup_window": Infinity}', "dedup_window"), ('{"max_age": NaN}', "max_age"),
     ('{"max_age": 1e300}', "max_age"), ('{"max_size": 1e300}', "max_size"),
     ('{"max_age": "inf"}', "max_age")],
)
def test_options_read_from_json_refuse_what_could_not_be_stored(stored: str,
                                                                field: str) -> None:
    with pytest.raises(Invalid, match=f"^{field}: "):
        TopicOptions.model_validate_json(stored)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_any_float_is_accepted_within_bounds_or_refused_naming_the_field(value: float) -> None:
    for field, low_ok, high in (("max_age", False, MAX_DURATION),
                                ("dedup_window", True, MAX_DURATION)):
        try:
            options = TopicOptions(**{field: value})
        except Invalid as exc:
            assert str(exc).startswith(f"{field}: ")
            assert not (math.isfinite(value) and (value >= 0 if low_ok else value > 0)
                        and value <= high)
            continue
        stored = getattr(options, field)
        assert math.isfinite(stored)
        assert 0 <= stored <= high
        assert TopicOptions.model_validate_json(options.model_dump_json()) == options


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 1e300, 10**400,
                                   "9" * 400 + "s", "5300w"])
def test_parse_duration_refuses_non_finite_and_too_long(value: object) -> None:
    with pytest.raises(Invalid, match="bad duration"):
        parse_duration(value)  # type: ignore[arg-type]


def test_parse_size_refuses_a_number_too_big_for_a_float() -> None:
    with pytest.raises(Invalid, match=r"bad size .*not a finite number"):
        parse_size("9" * 400 + "t")
