"""Group commit for the embedded engine: one writer per topic and process.

``produce()`` calls append to a pending list and get a future; a flush task hands all
that is pending to a worker thread, which takes the topic's write lock (so several
processes may produce to one topic), writes one batch per producer, makes them durable
with a single ``fdatasync`` and publishes the new end in the ``head`` file. The futures
resolve with their seqnos only after that.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lakeport.allocator import collector_paused
from lakeport.durable import fsync_path
from lakeport.errors import Closed, Invalid, LakeportError, Terminal, Transient
from lakeport.streams.embedded import log
from lakeport.streams.types import TopicOptions

logger = logging.getLogger("lakeport.streams.embedded")

DEFAULT_SEGMENT_BYTES = 64 << 20


def segment_bytes_for(options: TopicOptions) -> int:
    """Segments are the unit retention frees: keep several within ``max_size``."""
    if options.max_size is None:
        return DEFAULT_SEGMENT_BYTES
    return max(64 << 10, min(DEFAULT_SEGMENT_BYTES, options.max_size // 4))


IOV_MAX = 1000  # iovecs per pwritev call (the system limit is 1024)


def _encode(item: _Pending) -> log.EncodedBody:
    return log.encode_body(item.producer, item.payloads, item.extras)


@contextmanager
def file_lock(fd: int) -> Iterator[None]:
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


@dataclass
class _Pending:
    """Messages of one producer waiting for the next commit."""

    producer: bytes
    payloads: list[bytes] = field(default_factory=list)
    extras: list[dict | None] | None = None
    futures: list[asyncio.Future[int]] | None = None  # one per message (produce)
    batch_future: asyncio.Future[int] | None = None  # one for all (produce_many)
    time_ns: int | None = None  # the messages' own time (produce_block), else the commit's

    def add_extra(self, index: int, extra: dict | None) -> None:
        if extra is None and self.extras is None:
            return
        if self.extras is None:
            self.extras = [None] * index
        self.extras.append(extra)

    def futures_all(self) -> list[asyncio.Future[int]]:
        return self.futures if self.futures is not None else [self.batch_future]  # type: ignore[list-item]


class TopicWriter:
    """Appends to one topic's segment log with group commit."""

    def __init__(self, data_dir: Path, options: TopicOptions, durable: bool = True) -> None:
        self.data_dir = data_dir
        self.options = options
        self.durable = durable
        self.segment_bytes = segment_bytes_for(options)
        self._lock_fd = -1
        self._head_fd = -1
        self._fd = -1
        self._segment = 0
        self._offset = 0
        self._last = 0
        self._newest = 0
        self._pending: list[_Pending] = []
        self._open_item: dict[bytes, _Pending] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dedup: dict[str, int] = {}  # msg_id -> seqno, seen within the dedup window
        self._dedup_log: deque[tuple[float, list[str], Sequence[int]]] = deque()
        self._pending_ids: dict[str, asyncio.Future[int]] = {}
        self.listeners: list = []
        self.closed = False
        self._retention_failing = False  # logged once until retention works again

    # -- opening and recovery ----------------------------------------------------------
    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._open_sync)

    def _open_sync(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.data_dir / "write.lock", os.O_RDWR | os.O_CREAT, 0o644)
        self._head_fd = os.open(self.data_dir / "head", os.O_RDWR | os.O_CREAT, 0o644)
        with file_lock(self._lock_fd):
            self._recover()

    def _recover(self) -> None:
        segments = log.list_segments(self.data_dir)
        if not segments:
            head = log.read_head(self._head_fd)
            segments = [head[0] + 1 if head else 1]
        base = segments[-1]
        self._open_segment(base)
        scan = log.scan_segment(self._fd, base)
        if scan.valid_end < scan.file_size:
            logger.warning(
                "topic %s: dropped %d bytes at %s offset %d (%s); kept seqnos up to %d",
                self.data_dir.name, scan.file_size - scan.valid_end,
                log.segment_path(self.data_dir, base).name, scan.valid_end,
                scan.dropped_reason, scan.last_seqno,
            )
            os.ftruncate(self._fd, scan.valid_end)
            os.fsync(self._fd)
        self._offset, self._last = scan.valid_end, scan.last_seqno
        self._newest = scan.newest_ns or time.time_ns()
        for older in self._recent_segments(segments[:-1]):
            self._load_segment_ids(older)
        self._load_ids(0, self._offset)
        self._publish_head()

    def _recent_segments(self, bases: list[int]) -> list[int]:
        """Of the closed segments ``bases``, those that may hold a message within the dedup
        window (oldest first). A closed segment's mtime is not older than its newest message,
        so the scan stops at the first segment, going back, modified before the window."""
        window = self.options.dedup_window
        if not window:
            return []
        cutoff = time.time_ns() - int(window * 1e9)
        recent: list[int] = []
        for base in reversed(bases):
            try:
                modified = log.segment_path(self.data_dir, base).stat().st_mtime_ns
            except FileNotFoundError:
                break  # removed by retention, and so are all older ones
            if modified < cutoff:
                break
            recent.append(base)
        return recent[::-1]

    def _load_segment_ids(self, base: int) -> None:
        """Remember the msg_ids of a closed segment."""
        try:
            fd = os.open(log.segment_path(self.data_dir, base), os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            self._load_ids(0, None, fd)
        finally:
            os.close(fd)

    def _open_segment(self, base: int) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        path = log.segment_path(self.data_dir, base)
        created = not path.exists()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if created and self.durable:
            fsync_path(self.data_dir)
        self._segment = base
        self._offset = 0

    def _load_ids(self, start: int, end: int | None, fd: int | None = None) -> None:
        """Remember msg_ids of recent batches (written by an earlier or another process)
        of the current segment, or of the segment open as ``fd``."""
        window = self.options.dedup_window
        if not window:
            return
        fd = self._fd if fd is None else fd
        cutoff = time.time_ns() - int(window * 1e9)
        for offset, header in log.iter_headers(fd, start, end):
            if header.time_ns < cutoff or not header.flags & log.FLAG_EXTRAS:
                continue
            body = os.pread(fd, header.body_len, offset + log.HEADER_SIZE)
            try:
                extras = log.decode_body(header, body).extras
            except log.CorruptRecord:
                continue
            age = (time.time_ns() - header.time_ns) / 1e9
            self._remember(extras, header.base_seqno, time.monotonic() - age)

    def _remember(self, extras: list | None, base: int, seen: float) -> None:
        """Keep the msg_ids of a batch's ``extras`` (first seqno ``base``), seen at monotonic
        time ``seen``, for the dedup window."""
        if not extras:
            return
        with collector_paused():  # many small objects, no cycles
            ids = [extra.get("i") if extra else None for extra in extras]
            if None in ids:
                kept = [(i, seqno) for seqno, i in enumerate(ids, start=base) if i]
                ids = [i for i, _ in kept]
                seqnos: Sequence[int] = [seqno for _, seqno in kept]
            else:
                seqnos = range(base, base + len(ids))
        if ids:
            self._dedup.update(zip(ids, seqnos, strict=True))
            self._dedup_log.append((seen, ids, seqnos))

    def _prune_dedup(self, now: float) -> None:
        """Forget the msg_ids seen longer than the dedup window ago."""
        window = self.options.dedup_window
        entries, dedup = self._dedup_log, self._dedup
        while entries and now - entries[0][0] > window:
            _, ids, seqnos = entries.popleft()
            for msg_id, seqno in zip(ids, seqnos, strict=True):
                if dedup.get(msg_id) == seqno:  # not seen again since
                    del dedup[msg_id]

    def _publish_head(self) -> None:
        log.write_head(self._head_fd, self._last, self._segment, self._offset, self._newest)

    def _sync_from_head(self) -> None:
        """Catch up with commits another process made since our last one."""
        if os.fstat(self._head_fd).st_nlink == 0:
            raise Closed(f"topic {self.data_dir.name!r} was deleted")
        head = log.read_head(self._head_fd)
        if head is None:
            return
        last, segment, offset, newest = head
        if last == self._last and segment == self._segment:
            if os.fstat(self._fd).st_size > self._offset:
                os.ftruncate(self._fd, self._offset)  # a writer died mid-write
            return
        old_offset = self._offset if segment == self._segment else 0
        if segment != self._segment:
            # the tail of our segment and any segment in between were written elsewhere
            self._load_ids(self._offset, None)
            for base in log.list_segments(self.data_dir):
                if self._segment < base < segment:
                    self._load_segment_ids(base)
            self._open_segment(segment)
        self._offset, self._last, self._newest = offset, last, newest
        self._load_ids(old_offset, offset)
        if os.fstat(self._fd).st_size > offset:
            os.ftruncate(self._fd, offset)

    # -- producing ---------------------------------------------------------------------
    def _check(self) -> None:
        if self.closed:
            raise Closed(f"topic {self.data_dir.name!r} is closed or was deleted")

    def known_seqno(self, msg_id: str) -> int | asyncio.Future[int] | None:
        """The seqno (or pending future) of a msg_id seen within the dedup window."""
        self._prune_dedup(time.monotonic())
        seqno = self._dedup.get(msg_id)
        if seqno is not None:
            return seqno
        return self._pending_ids.get(msg_id)

    def any_known(self, msg_ids: Sequence[str]) -> bool:
        """Whether some of ``msg_ids`` may be known (a quick check before ``known_seqno``)."""
        self._prune_dedup(time.monotonic())
        return any(map(self._dedup.__contains__, msg_ids)) or \
            any(map(self._pending_ids.__contains__, msg_ids))

    def add_one(self, producer: bytes, payload: bytes, extra: dict | None,
                msg_id: str | None) -> asyncio.Future[int]:
        if extra is None and msg_id is None:
            item = self._open_item.get(producer)
            if item is not None and item.extras is None and not self.closed:
                # the common case, kept short: join the batch being collected
                future = asyncio.Future(loop=self._loop)
                item.payloads.append(payload)
                item.futures.append(future)  # type: ignore[union-attr]
                return future
        self._check()
        loop = asyncio.get_running_loop()
        item = self._open_item.get(producer)
        if msg_id is not None:
            known = self.known_seqno(msg_id)
            if isinstance(known, int):
                future = loop.create_future()
                future.set_result(known)
                return future
            if known is not None:
                return known
        if item is None:
            item = self._open_item[producer] = _Pending(producer, futures=[])
            self._pending.append(item)
        future = loop.create_future()
        if msg_id is not None:
            extra = dict(extra or {}, i=msg_id)
            self._pending_ids[msg_id] = future
        item.add_extra(len(item.payloads), extra)
        item.payloads.append(payload)
        item.futures.append(future)  # type: ignore[union-attr]
        self._kick()
        return future

    def add_many(self, producer: bytes, payloads: list[bytes], msg_ids: list[str] | None, *,
                 extras: list[dict | None] | None = None,
                 time_ns: int | None = None) -> asyncio.Future[int]:
        """Queue a batch as one unit; the future gives the first seqno. ``extras`` (one per
        payload, msg_ids as ``"i"``) replace ``msg_ids``; ``time_ns`` is the batch's time
        (default: the commit's). Batches queued without an await between are committed
        together."""
        self._check()
        item = _Pending(producer, payloads, batch_future=asyncio.get_running_loop().create_future(),
                        time_ns=time_ns)
        if extras is not None:
            item.extras = extras
        elif msg_ids is not None:
            item.extras = [{"i": m} for m in msg_ids]
        self._pending.append(item)
        self._open_item.pop(producer, None)
        self._kick()
        return item.batch_future  # type: ignore[return-value]

    def _kick(self) -> None:
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        """Commit until nothing is pending. Whatever goes wrong, no future is left waiting:
        a failed commit fails its messages and the next ones are tried afresh."""
        items: list[_Pending] = []
        try:
            while self._pending:
                items, self._pending = self._pending, []
                self._open_item.clear()
                await self._commit_items(items)
                items = []
        except asyncio.CancelledError:
            self._fail_waiting(items, Closed(
                f"the writer of topic {self.data_dir.name!r} was cancelled: these messages "
                "may or may not be stored"))
            raise
        except Exception as exc:  # a defect outside a commit: fail what waits, then stop
            logger.exception("topic %s: the writer failed", self.data_dir.name)
            self._fail_waiting(items, self._error(exc))
        finally:
            self._flusher = None

    async def _commit_items(self, items: list[_Pending]) -> None:
        """Encode and commit ``items``; resolve their futures, or fail them with the error."""
        # encoding here keeps the worker thread to syscalls (few GIL handoffs)
        bodies, encoded = [], []
        for item in items:
            try:
                bodies.append(_encode(item))
                encoded.append(item)
            except Exception as exc:
                self._fail([item], Invalid(
                    f"cannot encode messages for topic {self.data_dir.name!r}: {exc}"))
        if not encoded:
            return
        try:
            bases = await asyncio.to_thread(self._commit, bodies,
                                            [item.time_ns for item in encoded])
        except Exception as exc:
            if not isinstance(exc, OSError | LakeportError):
                logger.error("topic %s: a commit failed", self.data_dir.name, exc_info=exc)
            self._fail(encoded, self._error(exc))
            return
        self._resolve(encoded, bases)
        for listener in self.listeners:
            try:
                listener()
            except Exception:
                logger.exception("topic %s: a commit listener failed", self.data_dir.name)

    def _error(self, exc: Exception) -> LakeportError:
        """The lakeport error that a failed commit gives its messages (none was stored)."""
        if isinstance(exc, LakeportError):
            return exc
        name = self.data_dir.name
        if isinstance(exc, OSError):
            return Transient(f"writing topic {name!r} failed: {exc}")
        return Terminal(f"writing topic {name!r} failed: {type(exc).__name__}: {exc}")

    def _fail(self, items: list[_Pending], error: LakeportError) -> None:
        for item in items:
            for future in item.futures_all():
                if not future.done():
                    future.set_exception(error)
        self._forget_ids(items)

    def _fail_waiting(self, items: list[_Pending], error: LakeportError) -> None:
        """Fail ``items`` and everything queued after them (the flush task is ending)."""
        queued, self._pending = self._pending, []
        self._open_item.clear()
        self._fail([*items, *queued], error)

    def _forget_ids(self, items: list[_Pending]) -> None:
        for item in items:
            for extra in item.extras or ():
                if extra and "i" in extra:
                    self._pending_ids.pop(extra["i"], None)

    def _resolve(self, items: list[_Pending], bases: list[int]) -> None:
        now = time.monotonic()
        pending_ids = self._pending_ids
        for item, base in zip(items, bases, strict=True):
            if item.extras is not None:
                if pending_ids:
                    for extra in item.extras:
                        if extra and "i" in extra:
                            pending_ids.pop(extra["i"], None)
                self._remember(item.extras, base, now)
            if item.futures is not None:
                for seqno, future in enumerate(item.futures, start=base):
                    if not future.done():
                        future.set_result(seqno)
            elif item.batch_future is not None and not item.batch_future.done():
                item.batch_future.set_result(base)
        self._prune_dedup(now)

    def _commit(self, encoded: list[log.EncodedBody],
                times: list[int | None] | None = None) -> list[int]:
        """Runs in a worker thread: lock, append, fdatasync, publish head. ``times``: a
        body's own time (None: the commit's)."""
        with file_lock(self._lock_fd):
            self._sync_from_head()
            if self._offset >= self.segment_bytes:
                self._open_segment(self._last + 1)
            now = max(time.time_ns(), self._newest)
            parts, bases = [], []
            for body, stamp in zip(encoded, times or [None] * len(encoded), strict=True):
                bases.append(self._last + 1)
                parts.append(log.encode_header(body, self._last + 1,
                                               now if stamp is None else stamp))
                parts.extend(body.parts)
                self._last += body.count
            size = self._write(parts)
            if self.durable:
                os.fdatasync(self._fd)
            self._offset += size
            self._newest = now
            self._publish_head()
            if self.options.max_size is not None or self.options.max_age is not None:
                self._retain()
        return bases

    def _retain(self) -> None:
        """Apply retention after a commit. The commit stands whatever happens here (its
        messages are stored), so a failure is logged, not raised to the producers."""
        try:
            self._apply_retention()
        except Exception:
            if not self._retention_failing:
                logger.exception("topic %s: retention failed (old segments are kept)",
                                 self.data_dir.name)
            self._retention_failing = True
        else:
            self._retention_failing = False

    def _write(self, parts: list[bytes]) -> int:
        """Write ``parts`` at the end of the segment; return the bytes written."""
        offset = self._offset
        for start in range(0, len(parts), IOV_MAX):
            chunk = parts[start : start + IOV_MAX]
            want = sum(map(len, chunk))
            done = os.pwritev(self._fd, chunk, offset)
            if done < want:  # a short write (rare): finish it piece by piece
                rest = b"".join(chunk)[done:]
                while rest:
                    written = os.pwrite(self._fd, rest, offset + done)
                    done, rest = done + written, rest[written:]
            offset += want
        return offset - self._offset

    def _apply_retention(self) -> None:
        """Delete the oldest closed segments beyond max_size or older than max_age."""
        segments = log.list_segments(self.data_dir)
        sizes = {}
        for base in segments:
            try:
                sizes[base] = os.stat(log.segment_path(self.data_dir, base))
            except FileNotFoundError:
                continue
        total = sum(st.st_size for st in sizes.values())
        oldest_ok = None
        if self.options.max_age is not None:
            oldest_ok = time.time_ns() - int(self.options.max_age * 1e9)
        for base in segments[:-1]:
            st = sizes.get(base)
            if st is None or base == self._segment:
                continue
            too_big = self.options.max_size is not None and total > self.options.max_size
            too_old = oldest_ok is not None and st.st_mtime_ns < oldest_ok
            if not (too_big or too_old):
                break
            try:
                os.unlink(log.segment_path(self.data_dir, base))
            except FileNotFoundError:
                pass
            total -= st.st_size

    async def close(self) -> None:
        self.closed = True  # new messages are refused; those accepted are committed first
        while self._flusher is not None:
            # its outcome went to the producers' futures; wait() does not raise it again
            await asyncio.wait([self._flusher])
        for fd in (self._fd, self._head_fd, self._lock_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._head_fd = self._lock_fd = -1
