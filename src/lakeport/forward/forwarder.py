"""The forwarding loop: edge consumer → central producer, acked after the central stored it.

Exactly once: each message goes with the msg_id ``<site>:<edge topic>:<seqno>``; on every
(re)connect the forwarder asks the central topic for the newest msg_id with that prefix and
skips what it already holds, whatever the outage lasted; the central's dedup window is a
second guard. The edge topic's retention is the buffer while the link is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from lakeport.errors import NotFound, Transient
from lakeport.export.status import write_json_atomic
from lakeport.forward.config import SITE_HEADER, ForwardConfig
from lakeport.forward.rate import TokenBucket
from lakeport.home import lakeport_home
from lakeport.streams import Consumer, Engine, Producer, open_engine
from lakeport.streams.block import MessageBlock
from lakeport.streams.unacked import with_oldest_unacked

log = logging.getLogger("lakeport.forward")

RETRY_FIRST = 0.2  # seconds before the first reconnect, doubled up to
RETRY_MAX = 5.0
STATUS_EVERY = 1.0  # seconds between status updates
RECV_WAIT = 0.5  # seconds a read waits for new messages
IN_FLIGHT = 2  # batches sent or being prepared at once


def status_path(name: str) -> Path:
    """``$LAKEPORT_HOME/forwards/<name>/status.json``."""
    return lakeport_home() / "forwards" / name / "status.json"


def read_status(name: str | None = None) -> list[dict[str, Any]]:
    """The last status of forwarder ``name`` (NotFound if it never ran here), or of all."""
    root = lakeport_home() / "forwards"
    names = [name] if name else sorted(p.name for p in root.glob("*") if p.is_dir())
    found = []
    for each in names:
        try:
            found.append(orjson.loads(status_path(each).read_bytes()))
        except FileNotFoundError:
            if name:
                raise NotFound(f"no forwarder named {name!r} has run under {lakeport_home()}"
                               ) from None
    return found


@dataclass
class ForwardStatus:
    """What ``lakeport forward status`` shows."""

    name: str
    site: str
    from_topic: str
    to: str
    to_topic: str
    state: str = "starting"  # starting, running, retrying, stopped, failed
    forwarded: int = 0  # messages stored on the central side by this process
    payload_bytes: int = 0
    wire_bytes: int = 0  # request bodies sent (compressed)
    acked: int = 0  # the edge seqno forwarded up to
    lag: int = 0  # edge messages not forwarded yet
    oldest_unforwarded_age: float | None = None  # seconds; None when nothing waits
    resumed_after: int | None = None  # the central's newest edge seqno at the last connect
    connects: int = 0
    last_error: str | None = None
    started: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    pid: int = field(default_factory=os.getpid)


class Forwarder:
    """Forwards one edge topic of ``edge`` as ``config`` says; :meth:`run` until stopped."""

    def __init__(self, config: ForwardConfig, edge: Engine, *, save_status: bool = True) -> None:
        self.config = config
        self.edge = edge
        self.status = ForwardStatus(config.consumer_name, config.site, config.from_topic,
                                    config.shown_url, config.target)
        self._save = save_status
        self._bucket = TokenBucket(config.max_rate) if config.max_rate else None
        site = orjson.dumps({SITE_HEADER: config.site}).decode()
        self._site_headers = site
        self._wire_per_msg = 0.0

    # -- the loop ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Forward until ``stop`` is set; reconnect after transient errors, raise terminal
        ones (a key without produce access, a bad topic name)."""
        reporter = asyncio.create_task(self._report(stop))
        delay = RETRY_FIRST
        try:
            while not stop.is_set():
                connects = self.status.connects
                try:
                    await self._session(stop)
                except Transient as exc:
                    if self.status.connects > connects:  # it was up: a fresh outage
                        delay = RETRY_FIRST
                    self.status.state, self.status.last_error = "retrying", str(exc)
                    log.warning("forward %s: %s (retrying in %.1f s)", self.status.name, exc,
                                delay)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    delay = min(RETRY_MAX, delay * 2)
            self.status.state = "stopped"
        except Exception as exc:
            self.status.state, self.status.last_error = "failed", str(exc)
            raise
        finally:
            reporter.cancel()
            with contextlib.suppress(BaseException):
                await reporter
            await self._update()

    async def _session(self, stop: asyncio.Event) -> None:
        """One connection to the central side, until ``stop`` or an error."""
        config = self.config
        async with open_engine(config.to_url) as central, \
                central.producer(config.site, config.target) as producer, \
                self.edge.consumer(config.consumer_name, config.from_topic,
                                   on_no_exists="create") as consumer:
            resume = await self._resume_point(central, consumer)
            self.status.connects += 1
            self.status.state, self.status.last_error = "running", None
            await self._pump(stop, consumer, producer, resume)

    async def _resume_point(self, central: Engine, consumer: Consumer) -> int:
        """The edge seqno the central side holds up to: its newest msg_id of this site and
        topic, or the consumer's ack (when newer, or when the engine cannot look)."""
        find = getattr(central, "last_msg_id", None)
        found = None
        if find is not None:
            msg_id = await find(self.config.target, None, self.config.id_prefix)
            if msg_id is not None:
                with contextlib.suppress(ValueError):
                    found = int(msg_id[len(self.config.id_prefix):])
        self.status.resumed_after = found
        return max(consumer.acked, found or 0)

    async def _pump(self, stop: asyncio.Event, consumer: Consumer, producer: Producer,
                    resume: int) -> None:
        """Read, send and ack in order, with up to :data:`IN_FLIGHT` batches on their way
        (the producer stores them one after the other, a later one never without the one
        before it)."""
        sending: deque[asyncio.Task[int]] = deque()
        try:
            while not stop.is_set():
                try:
                    block = await consumer.recv_block(self._batch_size(), timeout=RECV_WAIT)
                except TimeoutError:
                    block = MessageBlock.empty()
                while sending and (sending[0].done() or len(sending) >= IN_FLIGHT
                                   or not len(block)):
                    await consumer.ack(await sending.popleft())
                if not len(block):
                    continue
                fresh = block.slice(_first_after(block, resume))
                if not len(fresh):
                    await consumer.ack(block.last_seqno)  # the central side has them
                    continue
                sending.append(asyncio.create_task(self._send(producer, fresh)))
            while sending:
                await consumer.ack(await sending.popleft())
        finally:
            for task in sending:
                task.cancel()
            for task in sending:
                with contextlib.suppress(BaseException):
                    await task

    async def _send(self, producer: Producer, block: MessageBlock) -> int:
        """Store ``block`` on the central side; its last edge seqno once stored."""
        before = getattr(producer, "sent_bytes", None)
        out, msg_ids = self.outgoing(block)
        await producer.produce_block(out, msg_ids=msg_ids)  # type: ignore[arg-type]
        payload = block.data_bytes
        wire = payload if before is None else producer.sent_bytes - before  # type: ignore[attr-defined]
        status = self.status
        status.forwarded += len(block)
        status.payload_bytes += payload
        status.wire_bytes += wire
        self._wire_per_msg = wire / len(block)
        if self._bucket is not None:
            await self._bucket.take(wire)
        return block.last_seqno

    def _batch_size(self) -> int:
        """The configured batch, or with a rate cap about a quarter second's worth."""
        size = self.config.batch_size
        if self._bucket is not None and self._wire_per_msg:
            size = min(size, max(1, int(self._bucket.rate / 4 / self._wire_per_msg)))
        return size

    def outgoing(self, block: MessageBlock) -> tuple[MessageBlock, pa.Array]:
        """``block`` with the site header added to each message, and its msg_ids."""
        table = block.table
        n = len(block)
        headers = table.column(4)
        if headers.null_count == n:
            merged: pa.Array = pa.repeat(pa.scalar(self._site_headers, pa.string()), n)
        else:
            site = self.config.site
            merged = pa.array([self._site_headers if text is None else
                               orjson.dumps({**orjson.loads(text), SITE_HEADER: site}).decode()
                               for text in headers.to_pylist()], pa.string())
        table = table.set_column(4, table.schema.field(4), merged)
        msg_ids = pc.binary_join_element_wise(
            self.config.id_prefix, pc.cast(table.column(0), pa.string()), "")
        return MessageBlock(table, block.format), msg_ids.combine_chunks()

    # -- status ------------------------------------------------------------------------------
    async def _report(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._update()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STATUS_EVERY)

    async def _update(self) -> None:
        """Lag and the oldest unforwarded message's age from the edge topic; save."""
        status = self.status
        with contextlib.suppress(Exception):  # status is advisory: never stop forwarding
            info = await with_oldest_unacked(
                self.edge, await self.edge.topic_info(self.config.from_topic), [status.name])
            mine = [c for c in info.consumers if c.name == status.name]
            status.acked = mine[0].acked if mine else 0
            status.lag = max(0, info.last_seqno - max(status.acked, info.first_seqno - 1))
            first = mine[0].oldest_unacked_ns if mine else info.oldest_ns
            stamp = first if status.lag else None
            status.oldest_unforwarded_age = None if stamp is None else \
                max(0.0, round(time.time() - stamp / 1e9, 3))
        status.updated = time.time()
        if self._save:
            path = status_path(status.name)
            with contextlib.suppress(OSError):
                path.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomic(path, asdict(status), durable=False)


def _first_after(block: MessageBlock, seqno: int) -> int:
    """The index of the first message of ``block`` after ``seqno``."""
    if block.first_seqno > seqno:
        return 0
    if block.last_seqno <= seqno:
        return len(block)
    return int(pc.sum(pc.less_equal(block.table.column(0), seqno)).as_py())


__all__ = ["ForwardStatus", "Forwarder", "read_status", "status_path"]
