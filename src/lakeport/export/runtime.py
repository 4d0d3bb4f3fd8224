"""The exporter: topics → batches → rows → a sink → ack, exactly one copy of every row.

One durable exclusive consumer per topic (consumer name = exporter name, position
``unread``) feeds a reader that cuts batches by rows, bytes and age, and a writer that lands
them: record the batch's *intent* ``(first, last)`` durably, write the rows through the sink
(idempotent, deterministic keys), ack ``last``, clear the intent. After a crash the first
batch is cut exactly at the recorded ``last``, so a retried batch overwrites the same
objects. At most two batches per topic are in memory however long the backlog is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson
import pyarrow as pa

from lakeport.allocator import release_free_memory
from lakeport.apps.messages import dead_letter_topic
from lakeport.errors import LakeportError, Terminal, Transient
from lakeport.export.config import ExportConfig
from lakeport.export.sinks import Batch, Sink, open_sink
from lakeport.export.status import ExportStatus, export_dir, write_json_atomic
from lakeport.readings import DeadLetter, build_rows, empty_table
from lakeport.streams import Engine, dead_letters, open_engine
from lakeport.streams.base import Consumer, Producer
from lakeport.streams.block import MessageBlock

log = logging.getLogger("lakeport.export")
T = TypeVar("T")

_POLL = 0.25  # seconds between checks of the stop event while waiting for messages
BATCHES_IN_MEMORY = 2
PIECE_ROWS = 20_000  # rows are built from payloads in pieces of about this many messages


class Stopped(Exception):
    """The exporter was asked to stop while a batch was waiting for a retry (left unacked)."""


class _BatchRows:
    """The rows of one batch, built piece by piece in a worker thread while it is read, so
    a batch's raw payloads are never all in memory at once."""

    def __init__(self, topic: str, executor: ThreadPoolExecutor) -> None:
        self.topic = topic
        self.first = self.last = 0
        self.count = 0
        self.payload_bytes = 0
        self._executor = executor
        self._waiting: list[MessageBlock] = []
        self._waiting_rows = 0
        self._pieces: list[asyncio.Future[tuple[pa.Table, list[DeadLetter]]]] = []

    def add(self, block: MessageBlock) -> None:
        if not self.count:
            self.first = block.first_seqno
        self.last = block.last_seqno
        self.count += len(block)
        self.payload_bytes += block.data_bytes
        self._waiting.append(block)
        self._waiting_rows += len(block)
        if self._waiting_rows >= PIECE_ROWS:
            self._build()

    def _build(self) -> None:
        if self._waiting:
            block = MessageBlock.concat(self._waiting)
            loop = asyncio.get_running_loop()
            self._pieces.append(loop.run_in_executor(self._executor, build_rows, block))
            self._waiting, self._waiting_rows = [], 0

    def discard(self) -> None:
        """Forget what was read (it stays unacked)."""
        for piece in self._pieces:
            piece.cancel()
        self.count = self.payload_bytes = self._waiting_rows = 0
        self._waiting, self._pieces = [], []

    def finish(self) -> None:
        """Every message is in: build the last piece."""
        self._build()

    async def rows(self) -> tuple[pa.Table, list[DeadLetter]]:
        """The batch's rows and dead letters, in seqno order."""
        pieces = await asyncio.gather(*self._pieces)
        tables = [table for table, _ in pieces if table.num_rows]
        table = pa.concat_tables(tables) if tables else empty_table()
        return table, [letter for _, dead in pieces for letter in dead]


class _Intents:
    """Per topic, the batch being landed: ``intent-<topic>.json`` with ``first`` and ``last``."""

    def __init__(self, name: str) -> None:
        self.folder = export_dir(name)

    def _path(self, topic: str) -> Any:
        return self.folder / f"intent-{topic}.json"

    def load(self, topic: str) -> tuple[int, int] | None:
        try:
            record = orjson.loads(self._path(topic).read_bytes())
            return int(record["first"]), int(record["last"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def save(self, topic: str, first: int, last: int) -> None:
        write_json_atomic(self._path(topic), {"topic": topic, "first": first, "last": last})

    def clear(self, topic: str) -> None:
        self._path(topic).unlink(missing_ok=True)


class Exporter:
    """Runs one exporter until stopped, idle (``until_idle``) or a terminal error.

    ``async with``-free: ``status = await Exporter(config).run(stop_event)``.
    """

    def __init__(self, config: ExportConfig, *, engine: Engine | None = None,
                 sink: Sink | None = None) -> None:
        self.config = config
        self.name = config.exporter_name
        self._engine = engine
        self._sink = sink
        options = dict(config.sink_options)
        if config.partition_by_asset:  # sinks that forbid unknown options see it only when set
            options["partition_by_asset"] = True
        if config.to.startswith("delta+"):  # each exporter keeps its own app transactions
            options.setdefault("app_id", self.name)
        self.sink = sink or open_sink(config.to, options)
        self.status = ExportStatus(self.name, list(config.topics), self.sink.describe(),
                                   config.format)
        self.status_path = export_dir(self.name) / "status.json"
        self.intents = _Intents(self.name)
        self._consumers: dict[str, Consumer] = {}
        self._dead_producer: Producer | None = None
        self._stop = asyncio.Event()
        self._idle: dict[str, float] = {}  # per topic: seconds waited since the last message

    # -- lifecycle ---------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> ExportStatus:
        """Export until ``stop`` is set (the current batch is flushed first), the topics are
        idle for ``until_idle`` seconds, or a Terminal error (raised, with the status saved)."""
        if stop is not None:
            self._stop = stop
        engine_cm = (contextlib.nullcontext(self._engine) if self._engine is not None
                     else open_engine(self.config.streams_url))
        try:
            async with engine_cm as engine, self.sink:
                await self.sink.healthcheck()
                self.status.state = "running"
                async with contextlib.AsyncExitStack() as stack:
                    for topic in self.config.topics:
                        self._consumers[topic] = await stack.enter_async_context(
                            engine.consumer(self.name, topic, mode="exclusive",
                                            position="unread", on_no_exists="create"))
                    stack.push_async_callback(self._close_dead_producer)
                    reporter = asyncio.create_task(self._report())
                    try:
                        await self._run_topics(engine)
                    finally:
                        reporter.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await reporter
                    await self._update_lag()
            self.status.state = "stopped"
        except LakeportError as exc:
            self.status.state = "failed"
            self.status.last_error = str(exc)
            raise
        finally:
            self.status.save(self.status_path)
        return self.status

    async def _run_topics(self, engine: Engine) -> None:
        tasks = [asyncio.create_task(self._export_topic(engine, topic), name=topic)
                 for topic in self.config.topics]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _report(self) -> None:
        while True:
            with contextlib.suppress(LakeportError):
                await self._update_lag()
            await asyncio.to_thread(self.status.save, self.status_path)
            await asyncio.sleep(self.config.status_interval)

    async def _update_lag(self) -> None:
        lag = 0
        for consumer in self._consumers.values():
            lag += await consumer.lag()
        self.status.lag = lag

    # -- one topic: reader and writer ----------------------------------------------------
    async def _export_topic(self, engine: Engine, topic: str) -> None:
        consumer = self._consumers[topic]
        slots = asyncio.Semaphore(BATCHES_IN_MEMORY)
        queue: asyncio.Queue[_BatchRows | None] = asyncio.Queue()
        executor = ThreadPoolExecutor(1, thread_name_prefix=f"lakeport-rows-{topic}")
        writer = asyncio.create_task(self._writer(engine, consumer, queue, slots))
        reader = asyncio.create_task(self._reader(consumer, queue, slots, executor))
        try:
            done, _ = await asyncio.wait([reader, writer], return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            await asyncio.gather(reader, writer)
        finally:
            for task in (reader, writer):
                task.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
            executor.shutdown(wait=False, cancel_futures=True)

    async def _reader(self, consumer: Consumer, queue: asyncio.Queue[_BatchRows | None],
                      slots: asyncio.Semaphore, executor: ThreadPoolExecutor) -> None:
        topic = consumer.topic
        intent = self.intents.load(topic)
        cut_at = intent[1] if intent is not None and intent[0] == consumer.acked + 1 else None
        if intent is not None and cut_at is None:
            self.intents.clear(topic)  # landed and acked before the crash
        self._idle[topic] = 0.0
        try:
            while True:
                await slots.acquire()
                batch = _BatchRows(topic, executor)
                await self._collect(consumer, batch, cut_at)
                cut_at = None
                if not batch.count:
                    slots.release()
                    return
                batch.finish()
                await queue.put(batch)
                if self._stop.is_set():
                    return
        finally:
            await queue.put(None)

    async def _collect(self, consumer: Consumer, batch: _BatchRows, cut_at: int | None
                       ) -> None:
        """Read the next batch into ``batch``: full by rows or bytes, ``max_delay`` old, the
        topics idle for ``until_idle``, a stop, or (after a restart) exactly up to ``cut_at``.
        On a stop during a batch fixed by an intent, ``batch`` is left empty."""
        config = self.config
        topic = consumer.topic
        last = consumer.acked
        started = 0.0
        while True:
            want = cut_at - last if cut_at is not None else config.batch_rows - batch.count
            if cut_at is not None and want <= 0:
                return
            now = time.monotonic()
            if self._stop.is_set():
                if cut_at is not None:  # landed whole or not at all
                    batch.discard()
                return
            idle = config.until_idle is not None and self._idle[topic] >= config.until_idle
            if cut_at is None and (idle or (batch.count and now - started >= config.max_delay)):
                return
            timeout = _POLL
            if batch.count and cut_at is None:
                timeout = max(0.0, min(_POLL, started + config.max_delay - now))
            try:
                got = await consumer.recv_block(min(want, PIECE_ROWS), timeout=timeout)
            except TimeoutError:
                self._idle[topic] += timeout
                if cut_at is not None and self._idle[topic] > max(config.max_delay, 5):
                    return  # the intent's messages are gone (retention)
                continue
            if not len(got):
                continue
            self._idle[topic] = 0.0
            if not batch.count:
                started = time.monotonic()
            batch.add(got)
            last = batch.last
            if cut_at is None and (batch.count >= config.batch_rows
                                   or batch.payload_bytes >= config.batch_bytes):
                return

    async def _writer(self, engine: Engine, consumer: Consumer,
                      queue: asyncio.Queue[_BatchRows | None], slots: asyncio.Semaphore) -> None:
        while True:
            pending = await queue.get()
            if pending is None:
                return
            try:
                await self._land(engine, consumer, pending)
            except Stopped:
                return
            finally:
                slots.release()
            del pending
            release_free_memory()

    async def _land(self, engine: Engine, consumer: Consumer, pending: _BatchRows) -> None:
        """Intent, dead letters, sink write, ack, clear the intent: nothing acked unlanded."""
        topic = pending.topic
        table, dead = await pending.rows()
        batch = Batch(topic, pending.first, pending.last, table)
        await asyncio.to_thread(self.intents.save, topic, batch.first_seqno, batch.last_seqno)
        if dead:
            await self._retry("dead letters", lambda: self._send_dead(engine, topic, dead))
        files: list[str] = []
        if batch.rows:
            files = await self._retry(
                f"write of {topic} {batch.first_seqno}-{batch.last_seqno}",
                lambda: self.sink.write(batch, self.config.format))
        await self._retry("ack", lambda: consumer.ack(batch.last_seqno))
        await asyncio.to_thread(self.intents.clear, topic)
        status = self.status
        status.rows += batch.rows
        status.bytes += pending.payload_bytes
        status.files += len(files)
        status.batches += 1
        status.dead_letters += len(dead)
        if files:
            status.last_file = files[-1]
        if status.state == "retrying":
            status.state = "running"

    async def _send_dead(self, engine: Engine, topic: str, dead: list[DeadLetter]) -> None:
        if self._dead_producer is None:
            producer = engine.producer(self.name, dead_letter_topic(f"export.{self.name}"),
                                       options=dead_letters.OPTIONS)
            await producer.open()
            self._dead_producer = producer
        await dead_letters.send_dead_letters(self._dead_producer, topic, dead, f"{topic}:")

    async def _close_dead_producer(self) -> None:
        if self._dead_producer is not None:
            await self._dead_producer.close()

    async def _retry(self, what: str, action: Callable[[], Awaitable[T]]) -> T:
        """Run ``action``; on Transient errors retry with exponential backoff and jitter."""
        delay = self.config.retry_initial
        while True:
            try:
                return await action()
            except Terminal:
                raise
            except Transient as exc:
                self.status.state = "retrying"
                self.status.last_error = f"{what}: {exc}"
                log.warning("%s failed, retrying in %.1fs: %s", what, delay, exc)
            wait = delay * random.uniform(0.5, 1.5)
            delay = min(delay * 2, self.config.retry_max)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wait)
                raise Stopped(what)


__all__ = ["BATCHES_IN_MEMORY", "Exporter", "Stopped"]
