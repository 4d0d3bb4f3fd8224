"""The on-disk format of the embedded engine.

A topic is a folder of segment files ``<first seqno>.log`` holding *batches*; one commit
writes one batch per producer. A batch is a 40-byte header and a body::

    header  magic u32 | body_crc u32 | body_len u32 | count u32 | base_seqno u64
            | time_ns u64 | producer_len u16 | flags u16 | header_crc u32
    body    lengths u32 * count | producer name | payloads | extras (JSON, if flags & 1)

``extras`` is a list with one entry per message: ``null`` or ``{"h": headers, "k": key,
"i": msg_id}``. Both CRCs are checked on read; recovery truncates the last segment at the
first batch that is torn or corrupt. A small ``head`` file publishes the committed end
(last seqno, segment, offset, time) so readers never see a half-written batch.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

MAGIC = 0x3142504C  # "LPB1"
HEADER = struct.Struct("<IIIIQQHHI")
HEADER_SIZE = HEADER.size  # 40
_HEADER_PREFIX = struct.Struct("<IIIIQQHH")
FLAG_EXTRAS = 1
SEGMENT_SUFFIX = ".log"
HEAD = struct.Struct("<QQQQI")  # last_seqno, segment_base, committed_offset, newest_ns, crc


class CorruptRecord(Exception):
    """A batch whose checksum or framing is wrong."""


@dataclass(frozen=True, slots=True)
class BatchHeader:
    body_crc: int
    body_len: int
    count: int
    base_seqno: int
    time_ns: int
    producer_len: int
    flags: int

    @property
    def size(self) -> int:
        return HEADER_SIZE + self.body_len

    @property
    def last_seqno(self) -> int:
        return self.base_seqno + self.count - 1


@dataclass(frozen=True, slots=True)
class EncodedBody:
    """A batch body as pieces to write with ``pwritev`` (no single large copy)."""

    parts: list[bytes]
    size: int
    crc: int
    count: int
    producer_len: int
    flags: int


_PIECE = 1000  # payloads joined per piece: pieces stay small, so memory is reused


def encode_body(producer: bytes, payloads: list[bytes], extras: list | None) -> EncodedBody:
    """The body of a batch, its checksum and flags (the seqno is not in the body)."""
    count = len(payloads)
    parts = [struct.pack(f"<{count}I", *map(len, payloads)), producer]
    for start in range(0, count, _PIECE):
        parts.append(b"".join(payloads[start : start + _PIECE]))
    flags = 0
    if extras is not None:
        parts.append(orjson.dumps(extras))
        flags |= FLAG_EXTRAS
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    return EncodedBody(parts, sum(map(len, parts)), crc, count, len(producer), flags)


def encode_header(body: EncodedBody, base_seqno: int, time_ns: int) -> bytes:
    prefix = _HEADER_PREFIX.pack(
        MAGIC, body.crc, body.size, body.count, base_seqno, time_ns, body.producer_len, body.flags
    )
    return prefix + struct.pack("<I", zlib.crc32(prefix))


def decode_header(raw: bytes | memoryview, offset: int = 0) -> BatchHeader:
    magic, body_crc, body_len, count, base, time_ns, plen, flags, hcrc = HEADER.unpack_from(
        raw, offset
    )
    if magic != MAGIC or zlib.crc32(raw[offset : offset + HEADER_SIZE - 4]) != hcrc:
        raise CorruptRecord("bad batch header")
    return BatchHeader(body_crc, body_len, count, base, time_ns, plen, flags)


@dataclass(frozen=True, slots=True)
class Body:
    """A checked batch body: producer name, payload lengths and bytes, extras (not copied)."""

    producer: str
    lengths: np.ndarray  # one per payload
    payloads: memoryview  # every payload, back to back
    extras: list | None

    def payload_list(self) -> list[bytes]:
        """The payloads as bytes objects (sliced in C)."""
        ends = np.cumsum(self.lengths, dtype=np.int64)
        raw = bytes(self.payloads)
        return list(map(raw.__getitem__, map(slice, (ends - self.lengths).tolist(),
                                             ends.tolist())))


def decode_body(header: BatchHeader, body: bytes | memoryview) -> Body:
    """Check a body's checksum and split it into its parts."""
    if zlib.crc32(body) != header.body_crc:
        raise CorruptRecord("bad batch body checksum")
    view = memoryview(body)
    pos = 4 * header.count
    lengths = np.frombuffer(view[:pos], dtype="<u4")
    producer = bytes(view[pos : pos + header.producer_len]).decode()
    pos += header.producer_len
    if header.flags & FLAG_EXTRAS:
        size = int(lengths.sum(dtype=np.int64))
        return Body(producer, lengths, view[pos : pos + size],
                    orjson.loads(view[pos + size :]))
    return Body(producer, lengths, view[pos:], None)


def segment_path(topic_dir: Path, base_seqno: int) -> Path:
    return topic_dir / f"{base_seqno:020d}{SEGMENT_SUFFIX}"


def list_segments(topic_dir: Path) -> list[int]:
    """Base seqnos of the topic's segments, oldest first."""
    try:
        names = os.listdir(topic_dir)
    except FileNotFoundError:
        return []
    return sorted(int(n[:-4]) for n in names if n.endswith(SEGMENT_SUFFIX) and n[:-4].isdigit())


def iter_headers(
    fd: int, start: int = 0, end: int | None = None
) -> Iterator[tuple[int, BatchHeader]]:
    """(offset, header) of each complete batch from ``start``; stops at a torn or bad one."""
    if end is None:
        end = os.fstat(fd).st_size
    offset = start
    while offset + HEADER_SIZE <= end:
        raw = os.pread(fd, HEADER_SIZE, offset)
        try:
            header = decode_header(raw)
        except (CorruptRecord, struct.error):
            return
        if offset + header.size > end:
            return
        yield offset, header
        offset += header.size


@dataclass
class ScanResult:
    """What a checked scan of a segment found."""

    valid_end: int
    last_seqno: int
    newest_ns: int
    file_size: int
    dropped_reason: str = ""


def scan_segment(fd: int, base_seqno: int) -> ScanResult:
    """Check every batch of a segment (both CRCs, seqno continuity); find the intact end."""
    size = os.fstat(fd).st_size
    offset, expected, newest = 0, base_seqno, 0
    reason = ""
    while offset < size:
        if offset + HEADER_SIZE > size:
            reason = "torn batch header"
            break
        raw = os.pread(fd, HEADER_SIZE, offset)
        try:
            header = decode_header(raw)
        except CorruptRecord as exc:
            reason = str(exc)
            break
        if header.base_seqno != expected:
            reason = f"seqno gap (expected {expected}, found {header.base_seqno})"
            break
        if offset + header.size > size:
            reason = "torn batch body"
            break
        body = os.pread(fd, header.body_len, offset + HEADER_SIZE)
        if zlib.crc32(body) != header.body_crc:
            reason = "bad batch body checksum"
            break
        offset += header.size
        expected = header.last_seqno + 1
        newest = header.time_ns
    return ScanResult(offset, expected - 1, newest, size, reason)


def read_head(fd: int) -> tuple[int, int, int, int] | None:
    """(last_seqno, segment_base, committed_offset, newest_ns) or None if unreadable."""
    raw = os.pread(fd, HEAD.size, 0)
    if len(raw) != HEAD.size:
        return None
    last, seg, offset, newest, crc = HEAD.unpack(raw)
    if zlib.crc32(raw[:-4]) != crc:
        return None
    return last, seg, offset, newest


def write_head(fd: int, last_seqno: int, segment_base: int, offset: int, newest_ns: int) -> None:
    prefix = HEAD.pack(last_seqno, segment_base, offset, newest_ns, 0)[:-4]
    os.pwrite(fd, prefix + struct.pack("<I", zlib.crc32(prefix)), 0)


def last_msg_id(topic_dir: Path, head: tuple[int, int, int, int], producer: str | None,
                prefix: str, limit: int) -> str | None:
    """The newest msg_id starting with ``prefix`` that ``producer`` (None: anyone) wrote,
    looking back from the committed end ``head`` (as :func:`read_head` gives it) over at most
    ``limit`` messages; None if there is none that recent."""
    _, head_segment, committed, _ = head
    name = None if producer is None else producer.encode()
    looked = 0
    for base in reversed([b for b in list_segments(topic_dir) if b <= head_segment]):
        try:
            fd = os.open(segment_path(topic_dir, base), os.O_RDONLY)
        except FileNotFoundError:
            return None  # removed by retention, and so are all older ones
        try:
            end = committed if base == head_segment else None
            for offset, header in reversed(list(iter_headers(fd, 0, end))):
                if header.flags & FLAG_EXTRAS and (name is None
                                                   or header.producer_len == len(name)):
                    try:
                        body = decode_body(header, os.pread(fd, header.body_len,
                                                            offset + HEADER_SIZE))
                    except (CorruptRecord, orjson.JSONDecodeError):
                        body = None
                    if body is not None and producer in (None, body.producer):
                        for extra in reversed(body.extras or ()):
                            msg_id = extra.get("i") if isinstance(extra, dict) else None
                            if isinstance(msg_id, str) and msg_id.startswith(prefix):
                                return msg_id
                looked += header.count
                if looked >= limit:
                    return None
        finally:
            os.close(fd)
    return None
