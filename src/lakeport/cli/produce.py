"""``lakeport topics produce``: one payload, or one message per line of standard input."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
import threading
from typing import TYPE_CHECKING

from lakeport.cli.common import write_out
from lakeport.errors import Invalid, NotFound

if TYPE_CHECKING:
    from lakeport.streams.base import Producer
    from lakeport.streams.types import Format, TopicOptions

# Lines sent in one produce_many call.
CHUNK_LINES = 5000
# Bytes read from stdin at a time; a slow writer's lines are sent as soon as they arrive.
_READ_BYTES = 1 << 16


def _print_seqnos(seqnos: list[int]) -> None:
    if seqnos:
        write_out(b"".join(b"%d\n" % seqno for seqno in seqnos))


async def produce_one(
    url: str | None,
    topic: str,
    producer_name: str,
    options: TopicOptions,
    data: bytes,
    *,
    headers: dict[str, str] | None,
    key: str | None,
    msg_id: str | None,
    print_seqno: bool,
) -> None:
    """Produce one payload; a payload that does not fit the format creates nothing."""
    from lakeport.streams import open_engine
    from lakeport.streams.types import encode_payload

    async with open_engine(url) as engine:
        try:
            fmt = (await engine.topic_info(topic)).options.format
        except NotFound:
            fmt = options.format
        encode_payload(data, fmt)
        async with engine.producer(producer_name, topic, options=options) as producer:
            seqno = await producer.produce(data, headers=headers, key=key, msg_id=msg_id)
    if print_seqno:
        _print_seqnos([seqno])


def _read_stdin(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[list[bytes] | None]) -> None:
    """Thread body: put lists of complete lines on ``queue`` as they arrive, None at the end.

    It reads the file descriptor itself, not ``sys.stdin.buffer``: a daemon thread blocked
    in a buffered read holds the buffer's lock, and the interpreter aborts ("Fatal Python
    error: _enter_buffered_busy") when the command ends (on an error) while stdin is still
    open. Once the command has ended, what arrives later is dropped.
    """

    def put(item: list[bytes] | None) -> None:
        try:
            asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()
        except (RuntimeError, concurrent.futures.CancelledError):  # the loop is closed
            raise _CommandEnded from None

    fd = sys.stdin.fileno()
    tail = b""
    try:
        try:
            while chunk := os.read(fd, _READ_BYTES):
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                if lines:
                    put(lines)
            if tail:
                put([tail])
        finally:
            put(None)
    except _CommandEnded:
        return


class _CommandEnded(Exception):
    """The command ended before standard input did."""


class _LineBatcher:
    """Numbers stdin lines, skips blank ones and produces them in chunks."""

    def __init__(self, producer: Producer, print_seqno: bool) -> None:
        self.producer = producer
        self.print_seqno = print_seqno
        self.lineno = 0
        self.stored = 0
        self.lines: list[bytes] = []
        self.numbers: list[int] = []

    def add(self, lines: list[bytes]) -> None:
        for line in lines:
            self.lineno += 1
            line = line.rstrip(b"\r")
            if line.strip():
                self.lines.append(line)
                self.numbers.append(self.lineno)

    async def flush(self) -> None:
        lines, numbers = self.lines, self.numbers
        self.lines, self.numbers = [], []
        for start in range(0, len(lines), CHUNK_LINES):
            await self._produce(lines[start : start + CHUNK_LINES],
                                numbers[start : start + CHUNK_LINES])

    async def _produce(self, lines: list[bytes], numbers: list[int]) -> None:
        try:
            seqnos = await self.producer.produce_many(lines)
        except Invalid as exc:
            bad = _first_invalid(lines, self.producer.format)
            if bad is None:
                raise
            # store what came before the bad line, then report it
            seqnos = await self.producer.produce_many(lines[:bad]) if bad else []
            self._done(seqnos)
            raise Invalid(
                f"stdin line {numbers[bad]}: {exc}; the {self.stored} messages before it "
                "were stored"
            ) from None
        self._done(seqnos)

    def _done(self, seqnos: list[int]) -> None:
        self.stored += len(seqnos)
        if self.print_seqno:
            _print_seqnos(seqnos)


def _first_invalid(lines: list[bytes], fmt: Format) -> int | None:
    from lakeport.streams.types import encode_payload

    for index, line in enumerate(lines):
        try:
            encode_payload(line, fmt)
        except Invalid:
            return index
    return None


async def produce_lines(
    url: str | None, topic: str, producer_name: str, options: TopicOptions, print_seqno: bool
) -> None:
    """Produce one message per stdin line, in chunks, as lines arrive."""
    from lakeport.streams import open_engine

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[list[bytes] | None] = asyncio.Queue(maxsize=8)
    async with open_engine(url) as engine:
        async with engine.producer(producer_name, topic, options=options) as producer:
            threading.Thread(target=_read_stdin, args=(loop, queue), daemon=True).start()
            batcher = _LineBatcher(producer, print_seqno)
            finished = False
            while not finished:
                item = await queue.get()
                # take whatever else is ready too, to send bigger batches
                while item is not None:
                    batcher.add(item)
                    if queue.empty() or len(batcher.lines) >= CHUNK_LINES:
                        break
                    item = queue.get_nowait()
                finished = item is None
                await batcher.flush()
