"""Value types of the topic API: options, messages, positions, filters and info records."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, NamedTuple

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lakeport.errors import Invalid
from lakeport.units import (  # the parsers live there, importable without the engines
    MAX_DURATION,
    MAX_SIZE,
    _shown,
    parse_duration,
    parse_size,
)

TOPIC_NAME_RE = re.compile(r"^[0-9A-Za-z+_=:@.-]+$")
MAX_REPLICAS = 5
"""The most copies of a topic a cluster keeps (JetStream's limit)."""


def validate_topic_name(name: str) -> str:
    """Return ``name`` if it is a valid topic (or consumer/producer) name, else raise Invalid."""
    if not isinstance(name, str) or not TOPIC_NAME_RE.fullmatch(name) or len(name) > 200:
        raise Invalid(
            f"bad name {name!r}: use 1-200 characters from A-Z a-z 0-9 and + _ = : @ . -"
        )
    return name


def now_ns() -> int:
    return time.time_ns()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ns_to_datetime(ns: int) -> datetime:
    """A UTC datetime from nanoseconds since the epoch, truncated to microseconds (exact)."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


def datetime_to_ns(when: datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime (exact, no float rounding)."""
    return (when - _EPOCH) // timedelta(microseconds=1) * 1000


class Format(StrEnum):
    JSON = "json"
    STRING = "string"
    BYTES = "bytes"


class Persistence(StrEnum):
    DISK = "disk"
    RAM = "ram"


class Mode(StrEnum):
    """How consumers sharing one name split a topic."""

    EXCLUSIVE = "exclusive"
    SHARED = "shared"
    STANDBY = "standby"


_ALLOWED = {
    "max_size": f"allowed: a size > 0 and <= 2**62 bytes ({MAX_SIZE}), or null for no limit",
    "max_age": f"allowed: a duration > 0 and <= 100 years ({MAX_DURATION} s), "
               "or null for no limit",
    "dedup_window": f"allowed: a duration >= 0 and <= 100 years ({MAX_DURATION} s)",
}


def _option_number(field: str, value: Any, parse: Callable[[Any], Any], text_types: Any,
                   low: float, low_included: bool, high: float) -> Any:
    """``value`` (a number, or text that ``parse`` reads) if it is finite and within
    bounds; else Invalid naming ``field`` and what it allows. Other types are left to
    pydantic, which names the field too."""
    allowed = _ALLOWED[field]
    if value is None:
        return value
    if isinstance(value, text_types):
        try:
            value = parse(value)
        except Invalid as exc:
            raise Invalid(f"{field}: {exc}; {allowed}") from None
    if isinstance(value, bool):
        raise Invalid(f"{field}: {value!r} is not a number; {allowed}")
    if isinstance(value, float) and not math.isfinite(value):
        raise Invalid(f"{field}: {value!r} is not a finite number; {allowed}")
    if isinstance(value, int | float):
        above_low = value >= low if low_included else value > low
        if not (above_low and value <= high):
            raise Invalid(f"{field}: {_shown(value)} is out of range; {allowed}")
    return value


class TopicOptions(BaseModel):
    """Create options of a topic. Unknown keys are errors.

    Numbers are checked when the options are made (also when read back from storage):
    NaN, infinity and values out of range raise :class:`~lakeport.errors.Invalid` naming
    the option. Sizes go up to 2**62 bytes, durations up to 100 years.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Format = Format.JSON
    persistence: Persistence = Persistence.DISK
    max_size: int | None = Field(default=None, gt=0, le=MAX_SIZE,
                                 description="retention: bytes kept at most")
    max_age: float | None = Field(default=None, gt=0, le=MAX_DURATION, allow_inf_nan=False,
                                  description="retention: seconds kept at most")
    dedup_window: float = Field(default=120.0, ge=0, le=MAX_DURATION, allow_inf_nan=False,
                                description="seconds a msg_id is remembered")
    replicas: int | None = Field(default=None, ge=1, le=MAX_REPLICAS,
                                 description="copies kept on a cluster (nats:// only); "
                                             "None: the engine's default")

    @field_validator("max_size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return _option_number("max_size", value, parse_size, str, 0, False, MAX_SIZE)

    @field_validator("max_age", mode="before")
    @classmethod
    def _age(cls, value: Any) -> Any:
        return _option_number("max_age", value, parse_duration, str | timedelta, 0, False,
                              MAX_DURATION)

    @field_validator("dedup_window", mode="before")
    @classmethod
    def _window(cls, value: Any) -> Any:
        return _option_number("dedup_window", value, parse_duration, str | timedelta, 0, True,
                              MAX_DURATION)


def require_one_copy(options: TopicOptions, engine: str) -> None:
    """Refuse ``replicas`` above 1 on an engine that keeps one copy of a topic."""
    if options.replicas not in (None, 1):
        raise Invalid(f"replicas={options.replicas}: the {engine} engine keeps one copy of a "
                      "topic; replicated topics need a NATS cluster (nats://a,b,c?replicas=3)")


OnNoExists = Literal["wait", "fail", "create"]


def encode_payload(payload: Any, fmt: Format) -> bytes:
    """Encode a payload for a topic of format ``fmt``; raise Invalid if it does not fit.

    For ``json`` topics Python values are serialized and ``bytes`` are taken as JSON text
    (and checked). ``string`` topics take ``str`` (or UTF-8 ``bytes``); ``bytes`` topics
    take ``bytes`` (or ``str``, stored as UTF-8).
    """
    if fmt is Format.JSON:
        if type(payload) is dict:
            try:
                return orjson.dumps(payload)
            except TypeError as exc:
                raise Invalid(f"payload cannot be encoded as JSON: {exc}") from None
        if isinstance(payload, bytes | bytearray | memoryview):
            data = bytes(payload)
            try:
                orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise Invalid(f"payload is not valid JSON for a json topic: {exc}") from None
            return data
        try:
            return orjson.dumps(payload)
        except TypeError as exc:
            raise Invalid(f"payload cannot be encoded as JSON: {exc}") from None
    if isinstance(payload, str):
        return payload.encode()
    if isinstance(payload, bytes | bytearray | memoryview):
        data = bytes(payload)
        if fmt is Format.STRING:
            try:
                data.decode()
            except UnicodeDecodeError as exc:
                raise Invalid(f"payload is not UTF-8 text for a string topic: {exc}") from None
        return data
    raise Invalid(f"a {fmt.value} topic takes str or bytes payloads, not {type(payload).__name__}")


def encode_payloads(payloads: Sequence[Any], fmt: Format) -> list[bytes]:
    """Encode a batch of payloads (fast path for JSON values), like :func:`encode_payload`."""
    if fmt is Format.JSON:
        try:
            return list(map(orjson.dumps, payloads))
        except TypeError:
            pass  # bytes (JSON text) or a value orjson rejects: check one by one
    return [encode_payload(p, fmt) for p in payloads]


def decode_payload(data: bytes, fmt: Format) -> Any:
    if fmt is Format.JSON:
        return orjson.loads(data)
    if fmt is Format.STRING:
        return data.decode()
    return data


class _MessageFields(NamedTuple):
    seqno: int
    timestamp_ns: int
    producer: str
    data: bytes
    format: Format = Format.JSON
    headers: dict[str, str] | None = None
    key: str | None = None


class Message(_MessageFields):
    """One message read from a topic (an immutable record).

    ``data`` holds the stored bytes; ``payload`` decodes them by the topic's format.
    """

    __slots__ = ()

    @property
    def payload(self) -> Any:
        return decode_payload(self.data, self.format)

    @property
    def time(self) -> datetime:
        return ns_to_datetime(self.timestamp_ns)

    def text(self) -> str:
        """The payload as text (JSON text for json topics)."""
        return self.data.decode(errors="replace")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record: seqno, time, producer, headers, key and payload."""
        record: dict[str, Any] = {
            "seqno": self.seqno,
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "producer": self.producer,
        }
        if self.headers:
            record["headers"] = self.headers
        if self.key is not None:
            record["key"] = self.key
        payload = self.payload
        record["payload"] = payload if self.format is not Format.BYTES else payload.hex()
        return record

    def __repr__(self) -> str:
        return f"Message(seqno={self.seqno}, producer={self.producer!r}, data={self.data[:60]!r})"


class EndMarker:
    """Yielded once by a consumer opened with ``end_marker=True`` when it reaches the end."""

    __slots__ = ("seqno",)

    def __init__(self, seqno: int) -> None:
        self.seqno = seqno

    def __repr__(self) -> str:
        return f"EndMarker(seqno={self.seqno})"


@dataclass(frozen=True)
class Position:
    """Where a consumer starts: ``beginning``, ``end``, ``unread``, ``seqno``, ``time``.

    ``Position.parse`` reads the CLI forms ``beginning``, ``end``, ``unread``, ``seqno:N``,
    ``since:10m`` and ``time:2026-01-01T00:00:00Z``.
    """

    kind: Literal["beginning", "end", "unread", "seqno", "time"]
    seqno: int = 0
    timestamp_ns: int = 0

    @classmethod
    def beginning(cls) -> Position:
        return cls("beginning")

    @classmethod
    def end(cls) -> Position:
        return cls("end")

    @classmethod
    def unread(cls) -> Position:
        return cls("unread")

    @classmethod
    def at_seqno(cls, seqno: int) -> Position:
        if seqno < 1:
            raise Invalid(f"bad position seqno {seqno}: seqnos start at 1")
        return cls("seqno", seqno=seqno)

    @classmethod
    def timestamp(cls, when: datetime) -> Position:
        if when.tzinfo is None:
            raise Invalid("a position time needs a time zone (use UTC)")
        return cls("time", timestamp_ns=datetime_to_ns(when))

    @classmethod
    def since(cls, duration: str | float | timedelta) -> Position:
        return cls("time", timestamp_ns=now_ns() - int(parse_duration(duration) * 1e9))

    @classmethod
    def parse(cls, text: str | Position) -> Position:
        if isinstance(text, Position):
            return text
        kind, _, arg = text.strip().partition(":")
        try:
            if kind in ("beginning", "end", "unread") and not arg:
                return cls(kind)  # type: ignore[arg-type]
            if kind == "seqno" and arg:
                return cls.at_seqno(int(arg))
            if kind == "since" and arg:
                return cls.since(arg)
            if kind == "time" and arg:
                return cls.timestamp(datetime.fromisoformat(arg.replace("Z", "+00:00")))
        except ValueError:
            pass
        raise Invalid(
            f"bad position {text!r}: use beginning, end, unread, seqno:N, since:10m "
            "or time:2026-01-01T00:00:00Z"
        )


@dataclass(frozen=True)
class Filters:
    """Client-side payload filters; a message is delivered only if it passes all that are set."""

    match_re: str | None = None
    match_string: str | None = None
    no_match_re: str | None = None
    no_match_string: str | None = None
    _compiled: tuple = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            compiled = (
                re.compile(self.match_re.encode()) if self.match_re else None,
                re.compile(self.no_match_re.encode()) if self.no_match_re else None,
            )
        except re.error as exc:
            raise Invalid(f"bad filter regular expression: {exc}") from None
        object.__setattr__(self, "_compiled", compiled)

    @property
    def active(self) -> bool:
        return any((self.match_re, self.match_string, self.no_match_re, self.no_match_string))

    def accepts(self, data: bytes) -> bool:
        match_re, no_match_re = self._compiled
        if self.match_string is not None and self.match_string.encode() not in data:
            return False
        if self.no_match_string is not None and self.no_match_string.encode() in data:
            return False
        if match_re is not None and not match_re.search(data):
            return False
        return not (no_match_re is not None and no_match_re.search(data))


@dataclass
class ConsumerInfo:
    """A consumer name's state on a topic."""

    name: str
    mode: str
    acked: int
    lag: int
    active: int = 0
    oldest_unacked_ns: int | None = None  # time of the first message after ``acked``


@dataclass
class TopicInfo:
    """What ``lakeport topics show`` prints."""

    name: str
    options: TopicOptions
    first_seqno: int = 0
    last_seqno: int = 0
    entries: int = 0
    bytes: int = 0
    oldest_ns: int | None = None
    newest_ns: int | None = None
    consumers: list[ConsumerInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def iso(ns: int | None) -> str | None:
            if ns is None:
                return None
            return ns_to_datetime(ns).isoformat().replace("+00:00", "Z")

        return {
            "name": self.name,
            "format": self.options.format.value,
            "persistence": self.options.persistence.value,
            "max_size": self.options.max_size,
            "max_age": self.options.max_age,
            "replicas": self.options.replicas or 1,
            "first_seqno": self.first_seqno,
            "last_seqno": self.last_seqno,
            "entries": self.entries,
            "bytes": self.bytes,
            "oldest": iso(self.oldest_ns),
            "newest": iso(self.newest_ns),
            "consumers": [{**vars(c), "oldest_unacked": iso(c.oldest_unacked_ns)}
                          for c in self.consumers],
        }
