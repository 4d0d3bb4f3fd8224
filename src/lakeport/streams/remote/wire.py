"""The topic gateway's JSON shared by the server and the ``http(s)://`` engine: topic info,
positions and fetched messages (error codes and payload encodings are in :mod:`lakeport.wire`).

Messages travel as columns in one JSON object: ``seqno``, ``time_ns``, ``producer``,
``data`` and, when some message has them, ``headers`` (JSON object text or null) and ``key``.
``data`` is the stored text for ``json`` and ``string`` topics and base64 for ``bytes`` topics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import orjson
import pyarrow as pa
import zstandard

from lakeport.errors import Invalid, TooLarge
from lakeport.streams.block import BLOCK_SCHEMA, MessageBlock
from lakeport.streams.types import (
    ConsumerInfo,
    Format,
    Message,
    Position,
    TopicInfo,
    TopicOptions,
)
from lakeport.wire import data_from_text, data_to_text

# -- topic info ---------------------------------------------------------------------------
_CONSUMER_FIELDS = {f.name for f in fields(ConsumerInfo)}


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
        consumers=[ConsumerInfo(**{k: v for k, v in c.items() if k in _CONSUMER_FIELDS})
                   for c in record.get("consumers", [])],
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


# -- messages (consume) -------------------------------------------------------------------
def block_to_json(block: MessageBlock) -> dict[str, Any]:
    """A block's columns for a fetch answer."""
    table = block.table
    data = table.column(3)
    if block.format is Format.BYTES:
        texts: list[str] = [data_to_text(b) for b in data.to_pylist()]
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
            return [data_from_text(text) for text in self.columns["data"]]
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


# -- messages as they are (produce_block) ----------------------------------------------------
BLOCK_CONTENT_TYPE = "application/vnd.apache.arrow.stream"
"""``POST /topics/{topic}/messages/block`` bodies: one Arrow IPC stream of :data:`BLOCK_SCHEMA`
(seqnos ignored) plus a ``msg_id`` column, compressed when ``Content-Encoding: zstd``."""
ZSTD = "zstd"
_WIRE_SCHEMA = BLOCK_SCHEMA.append(pa.field("msg_id", pa.string()))


def block_body(block: MessageBlock, msg_ids: Sequence[str] | pa.Array | None,
               level: int | None = 3) -> bytes:
    """The body carrying ``block`` and its ``msg_ids``; zstd-compressed at ``level`` (None:
    not compressed)."""
    if msg_ids is None:
        ids: pa.Array | pa.ChunkedArray = pa.nulls(len(block), pa.string())
    elif isinstance(msg_ids, pa.Array | pa.ChunkedArray):
        ids = msg_ids
    else:
        ids = pa.array(msg_ids, pa.string())
    table = block.table.append_column(_WIRE_SCHEMA.field("msg_id"), ids)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, _WIRE_SCHEMA) as writer:
        writer.write_table(table)
    raw = sink.getvalue().to_pybytes()
    if level is None:
        return raw
    return zstandard.ZstdCompressor(level=level).compress(raw)


def decompress(body: bytes, limit: int) -> bytes:
    """A zstd body decompressed, refusing (TooLarge) to make more than ``limit`` bytes."""
    out = bytearray()
    try:
        with zstandard.ZstdDecompressor().stream_reader(body) as reader:
            while chunk := reader.read(min(1 << 20, limit + 1 - len(out))):
                out += chunk
                if len(out) > limit:
                    raise TooLarge(f"request body decompresses to more than the limit {limit} "
                                   "bytes (max_body_bytes, lakeport serve --max-body)")
    except zstandard.ZstdError as exc:
        raise Invalid(f"body is not valid zstd: {exc}") from None
    return bytes(out)


def block_from_body(raw: bytes, fmt: Format) -> tuple[MessageBlock, list[str] | None]:
    """The block and msg_ids of an uncompressed :func:`block_body`."""
    try:
        table = pa.ipc.open_stream(raw).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise Invalid(f"body is not an Arrow IPC stream: {exc}") from None
    if not table.schema.equals(_WIRE_SCHEMA, check_metadata=False):
        raise Invalid(f"body: the Arrow schema must be {_WIRE_SCHEMA.names} with the types of "
                      f"lakeport.streams.block.BLOCK_SCHEMA, not {table.schema.names}")
    ids = table.column("msg_id")
    msg_ids = None if ids.null_count == len(table) else ids.to_pylist()
    if msg_ids is not None and None in msg_ids:
        raise Invalid("msg_id: set for every message or for none")
    return MessageBlock(table.drop_columns(["msg_id"]), fmt), msg_ids


__all__ = [
    "BLOCK_CONTENT_TYPE",
    "ZSTD",
    "Columns",
    "block_body",
    "block_from_body",
    "block_to_json",
    "decompress",
    "info_from_json",
    "info_to_json",
    "position_from_json",
    "position_to_json",
]
