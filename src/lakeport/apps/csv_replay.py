"""Feed an app with rows of a CSV file: ``time,asset,datastream,value[,unit]``.

The whole file is checked before anything is sent: a value must fit its datastream's data
type (from the manifest, or inferred), and the datastream must be one the app reads. Without
pacing rows go out as fast as possible; ``rate`` paces them evenly, ``replay`` by their times.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from lakeport.apps.messages import CONTROL_CHANGES, MESSAGE_CLASSES, ControlChange, topic_name
from lakeport.apps.simulator import PRODUCER
from lakeport.errors import Invalid, NotFound
from lakeport.readings import DATA_TYPES

if TYPE_CHECKING:
    from lakeport.apps.manifest import Manifest
    from lakeport.streams.base import Engine

REQUIRED_COLUMNS = ("time", "asset", "datastream", "value")
COLUMNS = (*REQUIRED_COLUMNS, "unit")
HEADER_HINT = "time,asset,datastream,value[,unit]"
CHUNK = 1000
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_ARTICLE = {"number": "a number", "string": "a string", "boolean": "a boolean (true or false)",
            "object": "a JSON object"}


@dataclass(frozen=True)
class Target:
    """Where rows of one datastream go and how their values are typed."""

    topic: str
    data_types: tuple[str, ...]  # one: the declared type; several: inferred among them
    unit: str | None = None
    control: bool = False


@dataclass
class Row:
    """One checked CSV row, ready to send."""

    line: int
    topic: str
    time: datetime | None  # None: the time it is sent
    asset: str
    datastream: str
    value: Any
    data_type: str
    unit: str | None
    control: bool

    def payload(self) -> dict[str, Any]:
        when = self.time or datetime.now(UTC)
        if self.control:
            message: Any = ControlChange(asset=self.asset, datastream=self.datastream,
                                         value=self.value, time=when)
        else:
            message = MESSAGE_CLASSES[self.data_type](asset=self.asset, datastream=self.datastream,
                                                 value=self.value, unit=self.unit, time=when)
        return message.to_payload()


class CsvPlan:
    """What the app reads: named datastreams (apps) or data types per topic (the others)."""

    def __init__(self, manifest: Manifest) -> None:
        self.app_name = manifest.name
        self.app_type = manifest.type
        control_topic = topic_name(CONTROL_CHANGES)
        self.named: dict[str, Target] = {}
        self.by_type: Target | None = None
        declared: dict[tuple[bool, str], Any] = {}
        if manifest.type == "app":
            declared.update({(False, s.name): s for s in manifest.data_streams.inputs})
            declared.update({(True, s.name): s for s in manifest.control_changes.inputs})
        for subscription in manifest.subscriptions():
            control = subscription.topic == control_topic
            if subscription.datastreams is None:
                types = tuple(subscription.data_types or DATA_TYPES)
                self.by_type = Target(subscription.topic, types, None, control)
                continue
            for name in subscription.datastreams:
                stream = declared.get((control, name))
                types = (stream.primitive_type,) if stream is not None else DATA_TYPES
                unit = stream.unit if stream is not None else None
                self.named.setdefault(name, Target(subscription.topic, types, unit, control))

    @property
    def reads_nothing(self) -> bool:
        return not self.named and self.by_type is None

    def target(self, datastream: str) -> Target:
        if datastream in self.named:
            return self.named[datastream]
        if self.by_type is not None:
            return self.by_type
        known = ", ".join(self.named) or "none"
        raise ValueError(f"datastream {datastream!r} is not an input of {self.app_type} "
                         f"{self.app_name} (inputs: {known})")


def _parse_time(text: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return datetime.fromtimestamp(seconds, UTC)
        raise ValueError
    when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def convert_value(text: str, data_type: str) -> Any:
    """``text`` as a value of ``data_type``; ValueError if it is not one."""
    if data_type == "string":
        return text
    if data_type == "number":
        number = float(text)
        if not math.isfinite(number):
            raise ValueError(text)
        return number
    if data_type == "boolean":
        word = text.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(text)
    value = orjson.loads(text)
    if not isinstance(value, dict):
        raise ValueError(text)
    return value


def infer_type(text: str, allowed: Sequence[str]) -> str:
    """The data type ``text`` reads as: boolean words, numbers, JSON objects, else string."""
    stripped = text.strip()
    candidates = []
    if stripped.lower() in ("true", "false"):
        candidates.append("boolean")
    with contextlib.suppress(ValueError):
        convert_value(stripped, "number")
        candidates.append("number")
    if stripped.startswith("{"):
        candidates.append("object")
    candidates.append("string")
    for data_type in candidates:
        if data_type in allowed:
            return data_type
    raise ValueError(candidates[0])


def _check_header(header: list[str], where: str) -> dict[str, int]:
    names = [name.strip().lower() for name in header]
    for name in names:
        if name not in COLUMNS:
            raise Invalid(f"{where} line 1: unknown column {name!r}: the header must be "
                          f"{HEADER_HINT}")
    for name in REQUIRED_COLUMNS:
        if name not in names:
            raise Invalid(f"{where} line 1: missing column {name!r}: the header must be "
                          f"{HEADER_HINT}")
    if len(set(names)) != len(names):
        raise Invalid(f"{where} line 1: a column appears twice: the header must be "
                      f"{HEADER_HINT}")
    return {name: index for index, name in enumerate(names)}


def _check_row(fields: list[str], columns: dict[str, int], plan: CsvPlan, line: int,
               where: str) -> Row:
    if len(fields) != len(columns):
        raise Invalid(f"{where} line {line}: {len(fields)} fields, expected {len(columns)} "
                      f"({','.join(columns)})")
    get = {name: fields[index] for name, index in columns.items()}
    try:
        when = _parse_time(get["time"])
    except ValueError:
        raise Invalid(f"{where} line {line}: time {get['time']!r} is not an ISO 8601 time "
                      "(2026-01-01T10:00:00Z) or seconds since 1970") from None
    asset, datastream = get["asset"].strip(), get["datastream"].strip()
    if not asset:
        raise Invalid(f"{where} line {line}: asset is empty")
    if not datastream:
        raise Invalid(f"{where} line {line}: datastream is empty")
    try:
        target = plan.target(datastream)
    except ValueError as exc:
        raise Invalid(f"{where} line {line}: {exc}") from None
    text = get["value"]
    if len(target.data_types) == 1:
        data_type = target.data_types[0]
    else:
        try:
            data_type = infer_type(text, target.data_types)
        except ValueError as exc:
            accepted = ", ".join(target.data_types)
            raise Invalid(f"{where} line {line}: value {text!r} is {_ARTICLE[str(exc)]}, "
                          f"but {plan.app_name} accepts only {accepted}") from None
    try:
        value = convert_value(text, data_type)
    except ValueError:
        raise Invalid(f"{where} line {line}: value {text!r} is not {_ARTICLE[data_type]} for "
                      f"datastream {datastream}") from None
    unit = (get.get("unit") or "").strip() or target.unit
    return Row(line, target.topic, when, asset, datastream, value, data_type, unit,
               target.control)


def read_rows(path: str | Path, plan: CsvPlan, *, need_time: bool = False) -> list[Row]:
    """Every row of the CSV file, checked; Invalid naming the first bad line (and how many)."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise NotFound(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise Invalid(f"{where}: cannot read it ({exc})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header or not any(field.strip() for field in header):
        raise Invalid(f"{where}: no header: the first line must be {HEADER_HINT}")
    columns = _check_header(header, where)
    rows: list[Row] = []
    errors: list[str] = []
    try:
        for fields in reader:
            if not fields or not any(field.strip() for field in fields):
                continue
            try:
                row = _check_row(fields, columns, plan, reader.line_num, where)
                if need_time and row.time is None:
                    raise Invalid(f"{where} line {reader.line_num}: time is empty: "
                                  "--replay needs a time on every row")
                rows.append(row)
            except Invalid as exc:
                errors.append(str(exc))
    except csv.Error as exc:
        errors.append(f"{where} line {reader.line_num}: {exc}")
    if errors:
        more = len(errors) - 1
        tail = f" ({more} more bad {'line' if more == 1 else 'lines'})" if more else ""
        raise Invalid(errors[0] + tail + "; nothing was sent")
    return rows


def _due_times(rows: Sequence[Row], replay: bool, speed: float,
               rate: float | None) -> list[float] | None:
    """Seconds after the start at which each row is due; None: all at once."""
    if replay:
        first = rows[0].time
        assert first is not None
        return [max(0.0, ((row.time or first) - first).total_seconds() / speed) for row in rows]
    if rate is not None:
        return [index / rate for index in range(len(rows))]
    return None


async def send_rows(
    engine: Engine,
    rows: Sequence[Row],
    *,
    replay: bool = False,
    speed: float = 1.0,
    rate: float | None = None,
    stop: asyncio.Event | None = None,
    on_sent: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Send ``rows`` in file order, paced as asked; counts per topic."""
    stop = stop or asyncio.Event()
    topics = list(dict.fromkeys(row.topic for row in rows))
    counts = dict.fromkeys(topics, 0)
    due = _due_times(rows, replay, speed, rate) if rows else None
    sent = 0
    async with contextlib.AsyncExitStack() as stack:
        producers = {topic: await stack.enter_async_context(engine.producer(PRODUCER, topic))
                     for topic in topics}
        started = time.monotonic()
        while sent < len(rows) and not stop.is_set():
            end = min(sent + CHUNK, len(rows))
            if due is not None:
                elapsed = time.monotonic() - started
                ready = sent
                while ready < end and due[ready] <= elapsed:
                    ready += 1
                if ready == sent:
                    wait = min(due[sent] - elapsed, 0.5)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), wait)
                    continue
                end = ready
            grouped: dict[str, list[dict[str, Any]]] = {}
            for row in rows[sent:end]:
                grouped.setdefault(row.topic, []).append(row.payload())
            for topic, payloads in grouped.items():
                await producers[topic].produce_many(payloads)
                counts[topic] += len(payloads)
            sent = end
            if on_sent is not None:
                on_sent(sent)
    return counts
