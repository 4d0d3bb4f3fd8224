"""The sensor-reading model: the four data types, the Arrow row schema every reading lands in,
and the builder that turns a block of topic messages into those rows.

Shared by the exporter and the observation recorder. One row per reading:

| column         | type                       | from the message                           |
|----------------|----------------------------|--------------------------------------------|
| time           | timestamp[us, tz=UTC]      | payload ``time`` (else the topic's time)   |
| asset          | string                     | payload ``asset``                          |
| datastream     | string                     | payload ``datastream``                     |
| value_number   | float64                    | ``value`` when a number                    |
| value_string   | string                     | ``value`` when a string                    |
| value_bool     | bool                       | ``value`` when a boolean                   |
| value_object   | string (JSON text)         | ``value`` when an object or a list         |
| unit           | string                     | payload ``unit`` (optional)                |
| seqno          | int64                      | the topic message's seqno                  |
| producer       | string                     | the topic message's producer               |

Exactly one ``value_*`` column is set per row, except for an integer beyond ±2**53
(float64 no longer holds every integer there): ``value_number`` holds the nearest
float64 and ``value_string`` the exact digits. Payloads follow the app message format
(``lakeport.apps.messages``: ``{"asset", "datastream", "value", "unit", "time", "type"}``);
with ``sos=True`` (the recorder) also the SOS JSON ``{"sensor", "feature", "observations":
{name: value}, "time"}``, one row per observation (read by the general path only).

:func:`build_rows` is the hot path of every exporter. A block of such payloads is parsed in
one C call by Arrow's JSON reader when every value is a number; otherwise (strings, booleans,
objects, bad payloads) the batch is parsed with orjson and checked row by row, so only the bad
messages become dead letters (:data:`DeadLetter`).
"""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from lakeport.routing.bridge_payloads import Unreadable, sos_readings
from lakeport.streams.block import MessageBlock
from lakeport.streams.types import Message, datetime_to_ns

DataType = Literal["number", "string", "boolean", "object"]
"""The data type of a reading's value."""

DATA_TYPES: tuple[DataType, ...] = get_args(DataType)
"""The four data types, in the order of the ``value_*`` columns."""

ROW_SCHEMA = pa.schema(
    [
        pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("asset", pa.string(), nullable=False),
        pa.field("datastream", pa.string(), nullable=False),
        pa.field("value_number", pa.float64()),
        pa.field("value_string", pa.string()),
        pa.field("value_bool", pa.bool_()),
        pa.field("value_object", pa.string()),
        pa.field("unit", pa.string()),
        pa.field("seqno", pa.int64(), nullable=False),
        pa.field("producer", pa.string(), nullable=False),
    ]
)

DeadLetter = tuple[Message, str]
"""A message that is not a sensor reading, and why."""

_TIME_TYPE = ROW_SCHEMA.field("time").type
_NUMERIC_SCHEMA = pa.schema(
    [
        pa.field("asset", pa.string()),
        pa.field("datastream", pa.string()),
        pa.field("value", pa.float64()),
        pa.field("unit", pa.string()),
        pa.field("time", _TIME_TYPE),
        pa.field("type", pa.string()),
    ]
)
_PARSE_OPTIONS = pa_json.ParseOptions(
    explicit_schema=_NUMERIC_SCHEMA, unexpected_field_behavior="ignore"
)
_READ_OPTIONS = pa_json.ReadOptions(block_size=1 << 20)  # blocks parse in parallel
_EXACT_LIMIT = 2**53  # float64 holds every integer up to this exactly, not all beyond it
_data = operator.attrgetter("data")
_seqno = operator.attrgetter("seqno")
_producer = operator.attrgetter("producer")
_timestamp_ns = operator.attrgetter("timestamp_ns")


def empty_table() -> pa.Table:
    return ROW_SCHEMA.empty_table()


def build_rows(block: MessageBlock, *, sos: bool = False) -> tuple[pa.Table, list[DeadLetter]]:
    """The rows of ``block``'s messages (in order) and the dead letters among them.

    ``sos``: a payload with ``observations`` and no ``asset`` is the SOS JSON of a sensor,
    ``{"sensor", "feature", "observations": {name: value}, "time"}``: one row per observation
    (asset = the sensor, datastream = the observation's name), all with the message's seqno;
    rows the general path made then carry a ``feature`` column after the others (null where
    no SOS feature was given). A message with any bad observation is a dead letter."""
    if not len(block):
        return empty_table(), []
    table = _numeric_fast_path(block)  # SOS payloads have no asset: never taken here
    if table is not None:
        return table, []
    table, dead = _general_path(block.messages(), sos=sos)
    if sos and dead:  # one letter per message (its first reason), in seqno order
        dead = sorted({m.seqno: (m, why) for m, why in reversed(dead)}.values(),
                      key=lambda letter: letter[0].seqno)
    return table, dead


# -- all-number batches: one C call ---------------------------------------------------------
def _numeric_fast_path(block: MessageBlock) -> pa.Table | None:
    """Rows through Arrow's JSON reader, or None when the batch needs the general path."""
    # every message must be one line starting with "{": then each line is one message, and
    # Arrow's reader never sees a line starting with ``null`` (which crashes pyarrow 26)
    if not pc.all(pc.starts_with(block.data, pattern="{")).as_py():
        return None
    body = block.payload_lines()
    count = len(block)
    if _count_newlines(body) != count - 1:
        return None
    try:
        parsed = pa_json.read_json(
            pa.BufferReader(body), read_options=_READ_OPTIONS, parse_options=_PARSE_OPTIONS
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    if parsed.num_rows != count:
        return None
    for column in ("asset", "datastream", "value"):
        if parsed[column].null_count:
            return None
    if pc.max(pc.abs(parsed["value"])).as_py() >= _EXACT_LIMIT:
        return None  # maybe an integer float64 cannot hold: its digits go to value_string
    if pc.any(pc.equal(parsed["asset"], "")).as_py() or pc.any(
        pc.equal(parsed["datastream"], "")
    ).as_py():
        return None
    kinds = parsed["type"]
    if kinds.null_count < len(kinds) and pc.any(pc.not_equal(kinds, "number")).as_py():
        return None
    times = parsed["time"]
    if times.null_count:
        times = pc.coalesce(times, _to_time(block.table.column("timestamp_ns")))
    return _table(
        times=times,
        asset=parsed["asset"],
        datastream=parsed["datastream"],
        value_number=parsed["value"],
        value_string=pa.nulls(count, pa.string()),
        value_bool=pa.nulls(count, pa.bool_()),
        value_object=pa.nulls(count, pa.string()),
        unit=parsed["unit"],
        seqnos=block.table.column("seqno"),
        producers=block.table.column("producer"),
    )


def _count_newlines(body: pa.Buffer) -> int:
    return int(np.count_nonzero(np.frombuffer(body, np.uint8) == 10))


def _to_time(nanos: Any) -> Any:
    return pc.divide(nanos, 1000).cast(pa.timestamp("us")).cast(_TIME_TYPE)


def _table(*, times: Any, asset: Any, datastream: Any, value_number: Any, value_string: Any,
           value_bool: Any, value_object: Any, unit: Any, seqnos: Any,
           producers: Any) -> pa.Table:
    return pa.Table.from_arrays(
        [times, asset, datastream, value_number, value_string, value_bool, value_object, unit,
         seqnos, producers],
        schema=ROW_SCHEMA,
    )


# -- everything else: orjson and a check per row -------------------------------------------
def _parse_all(messages: Sequence[Message]) -> list[Any]:
    try:
        payloads = orjson.loads(b"[" + b",".join(map(_data, messages)) + b"]")
        if len(payloads) == len(messages):
            return payloads
    except orjson.JSONDecodeError:
        pass
    out: list[Any] = []
    for message in messages:
        try:
            out.append(orjson.loads(message.data))
        except orjson.JSONDecodeError as exc:
            out.append(_NotJson(str(exc)))
    return out


class _NotJson:
    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def reading_problem(payload: Any) -> str | None:
    """Why ``payload`` is not a sensor reading (None when it is one)."""
    if isinstance(payload, _NotJson):
        return f"payload is not JSON ({payload.reason})"
    if not isinstance(payload, dict):
        return f"payload is a JSON {type(payload).__name__}, not an object with asset, " \
               "datastream and value"
    for name in ("asset", "datastream"):
        text = payload.get(name)
        if not isinstance(text, str) or not text:
            return f"{name} is missing or not a non-empty string"
    if payload.get("value") is None:
        return "value is missing or null"
    kind = payload.get("type")
    if kind is not None and kind not in DATA_TYPES:
        return f"type {kind!r} is not a sensor reading (use number, string, boolean or object)"
    unit = payload.get("unit")
    if unit is not None and not isinstance(unit, str):
        return "unit is not a string"
    when = payload.get("time")
    if when is not None and not isinstance(when, str):
        return "time is not an ISO 8601 string"
    return None


def _is_sos(payload: Any) -> bool:
    """An SOS payload: ``observations`` and no ``asset`` (with one, it is an app reading, as
    on the fast path)."""
    return type(payload) is dict and "observations" in payload and "asset" not in payload


def _sos_rows(payloads: list[Any], messages: Sequence[Message]
              ) -> tuple[list[Any], list[Message], list[DeadLetter], set[int]]:
    """SOS payloads replaced by their readings (the message repeated for each), the SOS
    messages that are no readings, and the ``id`` of each reading made from SOS."""
    if not any(map(_is_sos, payloads)):
        return payloads, list(messages), [], set()
    out: list[Any] = []
    owners: list[Message] = []
    dead: list[DeadLetter] = []
    made: set[int] = set()
    for payload, message in zip(payloads, messages, strict=True):
        if not _is_sos(payload):
            out.append(payload)
            owners.append(message)
            continue
        try:
            readings = sos_readings({}, payload)
        except Unreadable as exc:
            dead.append((message, str(exc)))
            continue
        feature = payload.get("feature")
        problem = "feature is not a non-empty string" if feature is not None and (
            not isinstance(feature, str) or not feature) else next(
            (f"observation {r['datastream']!r}: {why}" for r in readings
             if (why := reading_problem(r)) is not None), None)
        if problem is not None:
            dead.append((message, problem))
            continue
        out.extend(readings)
        owners.extend([message] * len(readings))
        made.update(map(id, readings))
    return out, owners, dead, made


def _general_path(messages: Sequence[Message], *, sos: bool = False
                  ) -> tuple[pa.Table, list[DeadLetter]]:
    payloads = _parse_all(messages)
    dead: list[DeadLetter] = []
    made: set[int] = set()
    if sos:
        payloads, messages, dead, made = _sos_rows(payloads, messages)
    good: list[int] = []
    for index, payload in enumerate(payloads):
        problem = reading_problem(payload)
        if problem is None:
            problem = _prepare_value(payload, messages[index])
        if problem is None:
            good.append(index)
        else:
            dead.append((messages[index], problem))
    if dead:
        messages = [messages[i] for i in good]
        payloads = [payloads[i] for i in good]
    if not messages:
        return empty_table(), dead
    times, bad_times = _times(payloads, messages)
    if bad_times:
        dead.extend((messages[i], reason) for i, reason in bad_times)
        keep = sorted(set(range(len(messages))) - {i for i, _ in bad_times})
        messages = [messages[i] for i in keep]
        payloads = [payloads[i] for i in keep]
        times = times.take(pa.array(keep, pa.int64()))
        dead.sort(key=lambda item: item[0].seqno)
        if not messages:
            return empty_table(), dead
    values = [p["value"] for p in payloads]
    numbers, strings, bools, objects = _split_values(values)
    table = _table(
        times=times,
        asset=pa.array([p["asset"] for p in payloads], pa.string()),
        datastream=pa.array([p["datastream"] for p in payloads], pa.string()),
        value_number=numbers,
        value_string=strings,
        value_bool=bools,
        value_object=objects,
        unit=pa.array([p.get("unit") for p in payloads], pa.string()),
        seqnos=pa.array(map(_seqno, messages), type=pa.int64(), size=len(messages)),
        producers=pa.array(map(_producer, messages), type=pa.string(), size=len(messages)),
    )
    if sos:  # the SOS feature of each row (null: none given, or not from SOS)
        table = table.append_column("feature", pa.array(
            [p.get("feature") if id(p) in made else None for p in payloads], pa.string()))
    return table, dead


class _JsonText(str):
    """A value that was an object or a list, as JSON text (for ``value_object``)."""

    __slots__ = ()


def _prepare_value(payload: dict[str, Any], message: Message) -> str | None:
    """Ready ``payload["value"]`` for its column (objects and lists become JSON text, an
    integer too large for the JSON parser gets its exact digits back); why it cannot be."""
    value = payload["value"]
    kind = type(value)
    if kind is float and abs(value) >= 2**63 and value.is_integer():
        payload["value"] = _exact_integer(message.data, value)
    elif kind is dict or kind is list:
        try:
            payload["value"] = _JsonText(orjson.dumps(value).decode())
        except TypeError:  # nested deeper than orjson writes (254 levels)
            try:
                payload["value"] = _JsonText(
                    json.dumps(value, ensure_ascii=False, separators=(",", ":")))
            except RecursionError:
                return "value is nested too deeply to be written as JSON text"
    return None


def _exact_integer(data: bytes, parsed: float) -> int | float:
    """The payload's ``value`` as an exact integer when its JSON text is an integer beyond 64
    bits (orjson reads those as floats), else ``parsed``."""
    try:
        exact = json.loads(data)["value"]
    except (ValueError, TypeError, KeyError, RecursionError):
        return parsed
    return exact if type(exact) is int else parsed


def _split_values(values: list[Any]) -> tuple[pa.Array, pa.Array, pa.Array, pa.Array]:
    """The four value columns. An integer beyond ±2**53, where float64 no longer holds every
    integer, lands as the nearest float64 in ``value_number`` and as its exact digits in
    ``value_string``."""
    n = len(values)
    kinds = set(map(type, values))
    if kinds <= {float, int}:
        try:
            return (pa.array(values, pa.float64()), pa.nulls(n, pa.string()),
                    pa.nulls(n, pa.bool_()), pa.nulls(n, pa.string()))
        except (pa.ArrowInvalid, OverflowError):
            pass  # an integer float64 cannot hold exactly
    numbers = [_number(v) for v in values]
    strings = [v if type(v) is str else _digits(v) for v in values]
    bools = [v if type(v) is bool else None for v in values]
    objects = [v if type(v) is _JsonText else None for v in values]
    return (pa.array(numbers, pa.float64()), pa.array(strings, pa.string()),
            pa.array(bools, pa.bool_()), pa.array(objects, pa.string()))


def _number(value: Any) -> float | None:
    kind = type(value)
    if kind is float:
        return value
    if kind is int:
        try:
            return float(value)  # the nearest float64
        except OverflowError:
            return None  # beyond float64's range: only the digits are kept
    return None


def _digits(value: Any) -> str | None:
    if type(value) is int and abs(value) > _EXACT_LIMIT:
        return str(value)
    return None


def _times(payloads: list[Any], messages: Sequence[Message]
           ) -> tuple[pa.Array, list[tuple[int, str]]]:
    """The row times (payload ``time``, else the message time) and rows with a bad time."""
    texts = [p.get("time") for p in payloads]
    fallback = _to_time(pa.array(map(_timestamp_ns, messages), type=pa.int64(),
                                 size=len(messages)))
    if all(t is None for t in texts):
        return fallback, []
    try:
        parsed = pa.array(texts, pa.string()).cast(_TIME_TYPE)
        return pc.coalesce(parsed, fallback), []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    values: list[int | None] = []
    bad: list[tuple[int, str]] = []
    for index, text in enumerate(texts):
        if text is None:
            values.append(None)
            continue
        micros = _parse_time(text)
        if micros is None:
            bad.append((index, f"time {text!r} is not an ISO 8601 time with a zone "
                               "(e.g. 2026-01-01T00:00:00Z)"))
        values.append(micros)
    parsed = pa.array(values, pa.int64()).cast(pa.timestamp("us")).cast(_TIME_TYPE)
    return pc.coalesce(parsed, fallback), bad


def _parse_time(text: str) -> int | None:
    """Microseconds since the epoch of an ISO time; naive times count as UTC."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return datetime_to_ns(when) // 1000


__all__ = ["DeadLetter", "build_rows", "empty_table", "reading_problem"]
