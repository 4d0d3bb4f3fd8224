"""Reading a topic's segment log from any process, up to the committed end in ``head``."""

from __future__ import annotations

import bisect
import logging
import os
from collections import deque
from itertools import repeat
from pathlib import Path

import numpy as np
import pyarrow as pa

from lakeport.allocator import collector_paused
from lakeport.streams.block import MessageBlock, Run
from lakeport.streams.embedded import log
from lakeport.streams.types import Format, Message

logger = logging.getLogger("lakeport.streams.embedded")

CHUNK = 1 << 20
_MAX_ARRAY_BYTES = 1 << 31  # an Arrow binary array's offsets are 32-bit
_new_tuple = tuple.__new__  # builds Messages without a Python-level __init__


class _Decoded:
    """A decoded log batch whose messages from ``start`` on are not handed out yet."""

    __slots__ = ("_messages", "_payloads", "base", "body", "count", "start", "time_ns")

    def __init__(self, header: log.BatchHeader, body: log.Body, start: int) -> None:
        self.base, self.count, self.time_ns = header.base_seqno, header.count, header.time_ns
        self.body = body
        self.start = start
        self._messages: list[Message] | None = None
        self._payloads: pa.BinaryArray | None = None

    def messages(self, fmt: Format) -> list[Message]:
        """Every message of the batch (built once, in one C call when there are no extras)."""
        if self._messages is None:
            body, stamp = self.body, self.time_ns
            seqnos = range(self.base, self.base + self.count)
            if body.extras is None:
                with collector_paused():
                    self._messages = list(map(
                        _new_tuple, repeat(Message),
                        zip(seqnos, repeat(stamp), repeat(body.producer), body.payload_list(),
                            repeat(fmt), repeat(None), repeat(None), strict=False)))
            else:
                self._messages = [
                    Message(seqno, stamp, body.producer, payload, fmt, extra.get("h"),
                            extra.get("k"))
                    if extra else Message(seqno, stamp, body.producer, payload, fmt)
                    for seqno, payload, extra in zip(seqnos, body.payload_list(), body.extras,
                                                     strict=False)
                ]
        return self._messages

    def run(self, start: int, stop: int) -> Run:
        """Messages ``start`` to ``stop`` as a :class:`Run` (payloads not copied; the batch's
        payload array is built once, however many runs it is read in)."""
        if self._payloads is None:
            offsets = np.zeros(self.count + 1, dtype=np.int32)
            np.cumsum(self.body.lengths, out=offsets[1:])
            buffers = [None, pa.py_buffer(offsets), pa.py_buffer(self.body.payloads)]
            self._payloads = pa.BinaryArray.from_buffers(pa.binary(), self.count, buffers)
        return Run(self.base + start, self.time_ns, self.body.producer,
                   self._payloads.slice(start, stop - start))


class LogReader:
    """A cursor over one topic: ``seek`` to a seqno or time, then ``read`` what is committed."""

    def __init__(self, data_dir: Path, fmt: Format) -> None:
        self.data_dir = data_dir
        self.format = fmt
        self.head_fd = os.open(data_dir / "head", os.O_RDONLY)
        self.cursor = 1
        self._segment = -1
        self._fd = -1
        self._offset = 0
        self._ready: deque[_Decoded] = deque()
        self._index: list[tuple[int, int, int]] = []  # (batch base seqno, segment, offset)

    def close(self) -> None:
        for fd in (self._fd, self.head_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self.head_fd = -1

    # -- the committed end -------------------------------------------------------------
    def head(self) -> tuple[int, int, int, int]:
        """(last_seqno, segment, committed_offset, newest_ns) as last published."""
        return log.read_head(self.head_fd) or (0, 1, 0, 0)

    def deleted(self) -> bool:
        return os.fstat(self.head_fd).st_nlink == 0

    def last_seqno(self) -> int:
        return self.head()[0]

    def first_seqno(self) -> int:
        segments = log.list_segments(self.data_dir)
        return segments[0] if segments else self.last_seqno() + 1

    # -- positioning -------------------------------------------------------------------
    def _open_segment(self, base: int) -> bool:
        try:
            fd = os.open(log.segment_path(self.data_dir, base), os.O_RDONLY)
        except FileNotFoundError:
            return False
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._segment, self._offset = fd, base, 0
        return True

    def seek(self, seqno: int) -> None:
        """Make the next ``read`` start at ``seqno`` (or the first seqno still kept)."""
        self._ready.clear()
        segments = log.list_segments(self.data_dir)
        if not segments:
            self.cursor = max(seqno, 1)
            return
        seqno = max(seqno, segments[0])
        self.cursor = seqno
        cut = bisect.bisect_right(self._index, (seqno, 1 << 62, 0))
        if cut and self._index[cut - 1][1] in segments:
            _base, segment, offset = self._index[cut - 1]
            if self._segment != segment and not self._open_segment(segment):
                return self.seek(seqno)
            self._offset = offset
            return None
        segment = segments[bisect.bisect_right(segments, seqno) - 1]
        if not self._open_segment(segment):
            return self.seek(seqno)
        _, seg, committed, _ = self.head()
        end = committed if seg == segment else None
        for offset, header in log.iter_headers(self._fd, 0, end):
            self._remember(header.base_seqno, offset)
            if header.last_seqno >= seqno:
                self._offset = offset
                return None
            self._offset = offset + header.size
        return None

    def seqno_at_time(self, timestamp_ns: int) -> int:
        """The first seqno appended at or after ``timestamp_ns`` (or last + 1)."""
        last, head_segment, committed, _ = self.head()
        for segment in log.list_segments(self.data_dir):
            try:
                fd = os.open(log.segment_path(self.data_dir, segment), os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                end = committed if segment == head_segment else None
                for _, header in log.iter_headers(fd, 0, end):
                    if header.time_ns >= timestamp_ns:
                        return header.base_seqno
            finally:
                os.close(fd)
        return last + 1

    def _remember(self, base: int, offset: int) -> None:
        entry = (base, self._segment, offset)
        if not self._index or self._index[-1] < entry:
            self._index.append(entry)
            if len(self._index) > 100_000:
                del self._index[:50_000]

    # -- reading -----------------------------------------------------------------------
    def read(self, max_n: int) -> list[Message]:
        """Up to ``max_n`` committed messages from the cursor; [] when there are none yet."""
        out: list[Message] = []
        for batch, start, stop in self._take(max_n):
            messages = batch.messages(self.format)
            if not out and start == 0 and stop == len(messages):
                out = messages
            else:
                out.extend(messages[start:stop])
        return out

    def read_block(self, max_n: int) -> MessageBlock:
        """Like :meth:`read`, as one :class:`MessageBlock` (no object per message)."""
        blocks: list[MessageBlock] = []
        runs: list[Run] = []
        for batch, start, stop in self._take(max_n):
            if batch.body.extras is None and len(batch.body.payloads) < _MAX_ARRAY_BYTES:
                runs.append(batch.run(start, stop))
                continue
            if runs:
                blocks.append(MessageBlock.from_runs(runs, self.format))
                runs = []
            blocks.append(MessageBlock.from_messages(batch.messages(self.format)[start:stop],
                                                     self.format))
        if runs:
            blocks.append(MessageBlock.from_runs(runs, self.format))
        return MessageBlock.concat(blocks) if blocks else MessageBlock.empty(self.format)

    def _take(self, max_n: int) -> list[tuple[_Decoded, int, int]]:
        """Hand out up to ``max_n`` messages: (batch, start, stop) pieces, cursor moved."""
        pieces: list[tuple[_Decoded, int, int]] = []
        wanted = max_n
        ready = self._ready
        while wanted > 0:
            if not ready and not self._read_batches():
                break
            batch = ready[0]
            start = batch.start
            stop = min(batch.count, start + wanted)
            pieces.append((batch, start, stop))
            wanted -= stop - start
            if stop == batch.count:
                ready.popleft()
            else:
                batch.start = stop
            self.cursor = batch.base + stop
        return pieces

    def _read_batches(self) -> bool:
        """Parse the next committed batches into ``_ready``; False if nothing is new."""
        last, head_segment, committed, _ = self.head()
        if self.cursor > last:
            return False
        if self._fd < 0 or self._segment > head_segment:
            self.seek(self.cursor)
            if self._fd < 0:
                return False
        end = committed if self._segment == head_segment else os.fstat(self._fd).st_size
        if self._offset >= end:
            if self._segment == head_segment:
                return False
            return self._next_segment()
        size = min(CHUNK, end - self._offset)
        chunk = os.pread(self._fd, size, self._offset)
        view = memoryview(chunk)
        pos = 0
        parsed = False
        while pos + log.HEADER_SIZE <= len(chunk):
            try:
                header = log.decode_header(view, pos)
            except log.CorruptRecord:
                return self._skip_corrupt("bad batch header")
            if pos + header.size > len(chunk):
                if pos == 0:  # a batch larger than the chunk: read it whole
                    chunk = os.pread(self._fd, header.size, self._offset)
                    view = memoryview(chunk)
                    if len(chunk) < header.size:
                        return self._skip_corrupt("torn batch")
                else:
                    break
            body = view[pos + log.HEADER_SIZE : pos + header.size]
            try:
                decoded = log.decode_body(header, body)
            except log.CorruptRecord as exc:
                return self._skip_corrupt(str(exc))
            self._remember(header.base_seqno, self._offset + pos)
            if header.last_seqno >= self.cursor:
                start = max(0, self.cursor - header.base_seqno)
                self._ready.append(_Decoded(header, decoded, start))
            pos += header.size
            parsed = True
        self._offset += pos
        return parsed

    def _next_segment(self) -> bool:
        segments = log.list_segments(self.data_dir)
        later = [s for s in segments if s > self._segment]
        if not later:
            return False
        self._open_segment(later[0])
        if self.cursor < later[0]:
            self.cursor = later[0]
        return self._read_batches()

    def _skip_corrupt(self, reason: str) -> bool:
        path = log.segment_path(self.data_dir, self._segment).name
        logger.warning("topic %s: %s in %s at offset %d; skipping to the next segment",
                       self.data_dir.name, reason, path, self._offset)
        segments = log.list_segments(self.data_dir)
        later = [s for s in segments if s > self._segment]
        if not later:
            return False
        self._open_segment(later[0])
        self.cursor = later[0]
        return self._read_batches()
