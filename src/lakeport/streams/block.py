"""Message blocks: many messages of one topic as Arrow columns, without a Python object each.

A consumer hands out a block with :meth:`~lakeport.streams.base.Consumer.recv_block`. Bulk
readers (the exporters) parse a block's payloads in one call instead of one message at a time;
:meth:`MessageBlock.messages` turns it back into :class:`~lakeport.streams.types.Message`
objects when a single message is needed (a dead letter, say).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from lakeport.errors import Invalid
from lakeport.streams.types import Format, Message

BLOCK_SCHEMA = pa.schema(
    [
        pa.field("seqno", pa.int64(), nullable=False),
        pa.field("timestamp_ns", pa.int64(), nullable=False),
        pa.field("producer", pa.string(), nullable=False),
        pa.field("data", pa.binary(), nullable=False),
        pa.field("headers", pa.string()),  # JSON object text, null when there are none
        pa.field("key", pa.string()),
    ]
)


@functools.cache
def _newline() -> pa.Scalar:
    return pa.scalar(b"\n", pa.binary())  # made on first use: pa.scalar imports pandas


@dataclass(frozen=True, slots=True)
class Run:
    """Messages with consecutive seqnos committed together: one time, one producer, no
    headers or keys. ``data`` holds their payloads in order."""

    first_seqno: int
    timestamp_ns: int
    producer: str
    data: pa.BinaryArray


class MessageBlock:
    """Messages of one topic in seqno order, as a table in :data:`BLOCK_SCHEMA`."""

    __slots__ = ("format", "table")

    def __init__(self, table: pa.Table, fmt: Format) -> None:
        self.table = table
        self.format = fmt

    # -- building ----------------------------------------------------------------------
    @classmethod
    def empty(cls, fmt: Format = Format.JSON) -> MessageBlock:
        return cls(BLOCK_SCHEMA.empty_table(), fmt)

    @classmethod
    def from_messages(cls, messages: Sequence[Message], fmt: Format) -> MessageBlock:
        """A block of ``messages`` (one Python object each: the general, slower way)."""
        if not messages:
            return cls.empty(fmt)
        columns = list(zip(*messages, strict=True))
        headers = [None if h is None else orjson.dumps(h).decode() for h in columns[5]]
        table = pa.Table.from_arrays(
            [pa.array(columns[0], pa.int64()), pa.array(columns[1], pa.int64()),
             pa.array(columns[2], pa.string()), pa.array(columns[3], pa.binary()),
             pa.array(headers, pa.string()), pa.array(columns[6], pa.string())],
            schema=BLOCK_SCHEMA,
        )
        return cls(table, fmt)

    @classmethod
    def from_runs(cls, runs: Sequence[Run], fmt: Format) -> MessageBlock:
        """A block of runs in seqno order: columns built with a few array operations."""
        if not runs:
            return cls.empty(fmt)
        counts = np.fromiter((len(run.data) for run in runs), np.int64, len(runs))
        total = int(counts.sum())
        first = runs[0].first_seqno
        if runs[-1].first_seqno + int(counts[-1]) - 1 - first == total - 1:
            seqnos = np.arange(first, first + total, dtype=np.int64)
        else:
            seqnos = np.concatenate([np.arange(run.first_seqno, run.first_seqno + count,
                                               dtype=np.int64)
                                     for run, count in zip(runs, counts, strict=True)])
        stamps = np.repeat(np.fromiter((run.timestamp_ns for run in runs), np.int64, len(runs)),
                           counts)
        names = [run.producer for run in runs]
        if len(set(names)) == 1:
            producers: pa.Array = pa.repeat(pa.scalar(names[0], pa.string()), total)
        else:
            unique = sorted(set(names))
            codes = np.fromiter(map({n: i for i, n in enumerate(unique)}.__getitem__, names),
                                np.int32, len(names))
            producers = pa.DictionaryArray.from_arrays(
                pa.array(np.repeat(codes, counts)), pa.array(unique, pa.string())
            ).cast(pa.string())
        table = pa.Table.from_arrays(
            [pa.array(seqnos), pa.array(stamps), producers,
             pa.chunked_array([run.data for run in runs], pa.binary()),
             pa.nulls(total, pa.string()), pa.nulls(total, pa.string())],
            schema=BLOCK_SCHEMA,
        )
        return cls(table, fmt)

    @classmethod
    def concat(cls, blocks: Sequence[MessageBlock]) -> MessageBlock:
        """One block of ``blocks`` in order (no copy of the payloads)."""
        if not blocks:
            return cls.empty()
        if len(blocks) == 1:
            return blocks[0]
        return cls(pa.concat_tables([b.table for b in blocks]), blocks[0].format)

    # -- reading -----------------------------------------------------------------------
    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def first_seqno(self) -> int:
        return self.table.column(0)[0].as_py()

    @property
    def last_seqno(self) -> int:
        return self.table.column(0)[-1].as_py()

    @property
    def contiguous(self) -> bool:
        """True when the seqnos have no gaps."""
        return len(self) > 0 and self.last_seqno - self.first_seqno == len(self) - 1

    @property
    def data(self) -> pa.ChunkedArray:
        return self.table.column("data")

    @property
    def data_bytes(self) -> int:
        """The payloads' total size in bytes."""
        return int(pc.sum(pc.binary_length(self.data)).as_py() or 0)

    def has_extras(self) -> bool:
        """True when some message carries headers or a key."""
        return self.table.column(4).null_count < len(self) or \
            self.table.column(5).null_count < len(self)

    def payload_lines(self) -> pa.Buffer:
        """The payloads joined by newlines (for line-oriented parsers), in one C call."""
        data = self.data.combine_chunks()
        lists = pa.ListArray.from_arrays(pa.array([0, len(data)], pa.int32()), data)
        return pc.binary_join(lists, _newline())[0].as_buffer()

    def slice(self, offset: int, length: int | None = None) -> MessageBlock:
        return MessageBlock(self.table.slice(offset, length), self.format)

    def upto(self, seqno: int) -> MessageBlock:
        """The messages with seqno <= ``seqno``."""
        cut = int(np.searchsorted(self.table.column(0).to_numpy(), seqno, side="right"))
        return self if cut == len(self) else self.slice(0, cut)

    def messages(self) -> list[Message]:
        fmt = self.format
        return [_message(row, fmt) for row in self.table.to_pylist()]


def _message(row: dict, fmt: Format) -> Message:
    headers = row["headers"]
    return Message(row["seqno"], row["timestamp_ns"], row["producer"], row["data"], fmt,
                   None if headers is None else orjson.loads(headers), row["key"])




def block_payloads(block: MessageBlock, fmt: Format,
                   msg_ids: Sequence[str] | None = None) -> list[bytes]:
    """The payloads of ``block`` as bytes, checked against a topic of format ``fmt``
    (Invalid naming the first that does not fit), and ``msg_ids`` checked for length."""
    if msg_ids is not None and len(msg_ids) != len(block):
        raise Invalid(f"produce_block: msg_ids must have one id per message ({len(block)}), "
                      f"not {len(msg_ids)}")
    data: list[bytes] = block.data.to_pylist()
    if fmt is Format.BYTES:
        return data
    if fmt is Format.STRING:
        for index, payload in enumerate(data):
            try:
                payload.decode()
            except UnicodeDecodeError as exc:
                raise Invalid(f"message {index}: payload is not UTF-8 text for a string "
                              f"topic: {exc}") from None
        return data
    loads = orjson.loads
    for index, payload in enumerate(data):
        try:
            loads(payload)
        except orjson.JSONDecodeError as exc:
            raise Invalid(f"message {index}: payload is not valid JSON for a json topic: "
                          f"{exc}") from None
    return data


__all__ = ["BLOCK_SCHEMA", "MessageBlock", "Run", "block_payloads"]
