"""The wire format shared by the topic gateway (server) and the ``http(s)://`` engine (client).

Messages travel as columns in one JSON object: ``seqno``, ``time_ns``, ``producer``,
``data`` and, when some message has them, ``headers`` (JSON object text or null) and ``key``.
``data`` is the stored text for ``json`` and ``string`` topics and base64 for ``bytes`` topics.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa

from lakeport.errors import (
    Invalid,
    LakeportError,
    Terminal,
    Unavailable,
    error_class,
    wire_code,
)
from lakeport.streams.block import BLOCK_SCHEMA, MessageBlock
from lakeport.streams.types import (
    ConsumerInfo,
    Format,
    Message,
    Position,
    TopicInfo,
    TopicOptions,
)


def error_code(exc: LakeportError) -> str:
    """The wire code of ``exc``."""
    return wire_code(exc)[0]


def error_from(error: Any, status: int | None = None) -> LakeportError:
    """The exception for an error body ``{"code", "message", ...}``."""
    if not isinstance(error, dict):
        return Unavailable(f"unexpected answer from the server (HTTP {status}): {error!r}")
    code = str(error.get("code", ""))
    message = str(error.get("message") or code or "error")
    kind = error_class(code)
    if kind is None:
        kind = Unavailable if status is None or status >= 500 else Terminal
    return kind(message)


# -- topic info ---------------------------------------------------------------------------
def info_to_json(info: TopicInfo) -> dict[str, Any]:
    """TopicInfo as JSON: ``TopicInfo.to_dict()`` plus exact times and the dedup window."""
    record = info.to_dict()
    record["dedup_window"] = info.options.dedup_window
    record["oldest_ns"] = info.oldest_ns
    record["newest_ns"] = info.newest_ns
    return record


def info_from_json(record: dict[str, Any]) -> TopicInfo:
    options = TopicOptions(
        format=record["format"], persistence=record["persistence"],
        max_size=record.get("max_size"), max_age=record.get("max_age"),
        dedup_window=record.get("dedup_window", 120.0),
    )
    return TopicInfo(
        name=record["name"], options=options, first_seqno=record["first_seqno"],
        last_seqno=record["last_seqno"], entries=record["entries"], bytes=record["bytes"],
        oldest_ns=record.get("oldest_ns"), newest_ns=record.get("newest_ns"),
        consumers=[ConsumerInfo(**c) for c in record.get("consumers", [])],
    )


# -- positions ----------------------------------------------------------------------------
def position_to_json(position: Position) -> dict[str, Any]:
    return {"kind": position.kind, "seqno": position.seqno, "timestamp_ns": position.timestamp_ns}


def position_from_json(value: Any) -> Position:
    """A position from ``"beginning"``-style text or ``{"kind", "seqno", "timestamp_ns"}``."""
    if isinstance(value, str):
        return Position.parse(value)
    if isinstance(value, dict):
        kind = value.get("kind")
        try:
            if kind in ("beginning", "end", "unread"):
                return Position(kind)
            if kind == "seqno":
                return Position.at_seqno(int(value["seqno"]))
            if kind == "time":
                return Position("time", timestamp_ns=int(value["timestamp_ns"]))
        except (KeyError, TypeError, ValueError):
            pass
    raise Invalid(f"bad position {value!r}: use beginning, end, unread, seqno:N, since:10m, "
                  "time:ISO or {\"kind\": ..., \"seqno\": ..., \"timestamp_ns\": ...}")


# -- payloads (produce) -------------------------------------------------------------------
def payload_to_wire(data: bytes, fmt: Format) -> bytes:
    """Encoded payload bytes as the JSON value a produce request carries."""
    if fmt is Format.JSON:
        return data
    if fmt is Format.STRING:
        return orjson.dumps(data.decode())
    return b'{"base64":"' + base64.b64encode(data) + b'"}'


def payload_from_wire(value: Any, fmt: Format) -> Any:
    """A produce request's payload as what ``Producer.produce`` takes for ``fmt``."""
    if fmt is Format.JSON or isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"base64"} and isinstance(value["base64"], str):
        try:
            return base64.b64decode(value["base64"], validate=True)
        except (binascii.Error, ValueError):
            raise Invalid("payload: 'base64' is not valid base64") from None
    raise Invalid(f"a {fmt.value} topic takes a string payload or {{\"base64\": \"...\"}}, "
                  f"not {type(value).__name__}")


# -- messages (consume) -------------------------------------------------------------------
def block_to_json(block: MessageBlock) -> dict[str, Any]:
    """A block's columns for a fetch answer."""
    table = block.table
    data = table.column(3)
    if block.format is Format.BYTES:
        texts: list[str] = [base64.b64encode(b).decode() for b in data.to_pylist()]
    else:
        texts = data.cast(pa.string()).to_pylist()
    columns: dict[str, Any] = {
        "seqno": table.column(0).to_pylist(),
        "time_ns": table.column(1).to_pylist(),
        "producer": table.column(2).to_pylist(),
        "data": texts,
    }
    if len(block) and block.has_extras():
        columns["headers"] = table.column(4).to_pylist()
        columns["key"] = table.column(5).to_pylist()
    return columns


class Columns:
    """Fetched messages as columns, sliceable without decoding them."""

    __slots__ = ("columns", "fmt")

    def __init__(self, columns: dict[str, list[Any]], fmt: Format) -> None:
        self.columns = columns
        self.fmt = fmt

    def __len__(self) -> int:
        return len(self.columns["seqno"])

    def split(self, n: int) -> tuple[Columns, Columns]:
        head = {k: v[:n] for k, v in self.columns.items()}
        tail = {k: v[n:] for k, v in self.columns.items()}
        return Columns(head, self.fmt), Columns(tail, self.fmt)

    def _payloads(self) -> list[bytes]:
        if self.fmt is Format.BYTES:
            return [base64.b64decode(text) for text in self.columns["data"]]
        return [text.encode() for text in self.columns["data"]]

    def messages(self) -> list[Message]:
        cols, fmt = self.columns, self.fmt
        headers: Sequence[Any] = cols.get("headers") or [None] * len(self)
        keys: Sequence[Any] = cols.get("key") or [None] * len(self)
        loads = orjson.loads
        return [
            Message(seqno, stamp, producer, data, fmt, None if h is None else loads(h), key)
            for seqno, stamp, producer, data, h, key in zip(
                cols["seqno"], cols["time_ns"], cols["producer"], self._payloads(),
                headers, keys, strict=True)
        ]

    def block(self) -> MessageBlock:
        cols, n = self.columns, len(self)
        if not n:
            return MessageBlock.empty(self.fmt)
        if self.fmt is Format.BYTES:
            data = pa.array(self._payloads(), pa.binary())
        else:
            data = pa.array(cols["data"], pa.string()).cast(pa.binary())
        headers = cols.get("headers")
        keys = cols.get("key")
        table = pa.Table.from_arrays(
            [pa.array(cols["seqno"], pa.int64()), pa.array(cols["time_ns"], pa.int64()),
             pa.array(cols["producer"], pa.string()), data,
             pa.array(headers, pa.string()) if headers else pa.nulls(n, pa.string()),
             pa.array(keys, pa.string()) if keys else pa.nulls(n, pa.string())],
            schema=BLOCK_SCHEMA,
        )
        return MessageBlock(table, self.fmt)


__all__ = [
    "Columns",
    "block_to_json",
    "error_code",
    "error_from",
    "info_from_json",
    "info_to_json",
    "payload_from_wire",
    "payload_to_wire",
    "position_from_json",
    "position_to_json",
]
