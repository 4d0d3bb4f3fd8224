"""AMQP egress for ``bench/routing.py``: an embedded-engine topic → the lakeport AMQP egress
bridge → a topic exchange of the machine's RabbitMQ (127.0.0.1:5672, guest/guest), next to
bare aio-pika publishing the same messages the same way (persistent, mandatory, publisher
confirms, one ``asyncio.gather`` per batch of ``BATCH``).

The bridge is timed from its connect to the last confirmed (and topic-acked) message; the
bare publisher from its first publish to the last confirm. Both publish into a durable queue
bound with ``#``, purged after each run; the exchange and the queue are deleted at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

BROKER = "amqp://127.0.0.1:5672"
TEMPLATE = "plant.{asset}.{datastream}"
BATCH = 10_000  # messages per confirmed batch, the bridge's default batch_size
IDLE = 15.0  # seconds without progress before a run gives up


def rabbitmq_up() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 5672), 0.5):
        return True
    return False


@dataclass
class Outcome:
    rate: float  # messages per second, first published → last confirmed
    count: int
    line: str = ""
    error: str | None = None
    broker_cores: float | None = None  # CPU the broker's processes used, in cores
    own_cores: float | None = None  # CPU this process used, in cores


class CpuMeter:
    """Cores used by the broker (RabbitMQ's beam.smp) and by this process over a span."""

    def __init__(self) -> None:
        import psutil

        self.me = psutil.Process()
        self.broker = [p for p in psutil.process_iter(["name"])
                       if p.info["name"] and p.info["name"].startswith("beam")]
        self.start = self._times()

    def _times(self) -> tuple[float, float, float]:
        broker = 0.0
        for process in self.broker:
            with contextlib.suppress(Exception):
                times = process.cpu_times()
                broker += times.user + times.system
        own = self.me.cpu_times()
        return time.perf_counter(), broker, own.user + own.system

    def cores(self) -> tuple[float | None, float]:
        """(the broker's cores or None when it is not found here, this process's cores)."""
        end = self._times()
        span = end[0] - self.start[0]
        return ((end[1] - self.start[1]) / span if self.broker else None,
                (end[2] - self.start[2]) / span)


@contextlib.asynccontextmanager
async def _exchange() -> AsyncIterator[tuple[str, str]]:
    """A durable topic exchange with a durable queue bound by ``#``; deleted afterwards."""
    import aio_pika

    tag = uuid.uuid4().hex[:8]
    exchange, queue = f"lakeport-bench-{tag}", f"lakeport-bench-{tag}"
    connection = await aio_pika.connect(BROKER)
    try:
        channel = await connection.channel()
        target = await channel.declare_exchange(exchange, "topic", durable=True)
        bound = await channel.declare_queue(queue, durable=True)
        await bound.bind(target, "#")
        try:
            yield exchange, queue
        finally:
            await bound.delete(if_unused=False, if_empty=False)
            await target.delete()
    finally:
        await connection.close()


async def _purge(queue: str) -> int:
    import aio_pika

    connection = await aio_pika.connect(BROKER)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        count = declared.declaration_result.message_count or 0
        await declared.purge()
        return count
    finally:
        await connection.close()


async def bare_aio_pika(exchange: str, payloads: list[bytes], keys: list[str]) -> Outcome:
    import aio_pika

    connection = await aio_pika.connect(BROKER)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        target = await channel.get_exchange(exchange)
        persistent = aio_pika.DeliveryMode.PERSISTENT
        start = time.perf_counter()
        for first in range(0, len(payloads), BATCH):
            await asyncio.gather(*(
                target.publish(aio_pika.Message(payloads[i], delivery_mode=persistent,
                                                message_id=f"bench:{i}"), keys[i],
                               mandatory=True)
                for i in range(first, min(len(payloads), first + BATCH))))
        span = time.perf_counter() - start
    finally:
        await connection.close()
    return Outcome(len(payloads) / span, len(payloads))


async def bridge_egress(exchange: str, payloads: list[bytes], folder: Path) -> Outcome:
    from lakeport.routing import open_bridge
    from lakeport.streams.registry import open_engine

    folder.mkdir(parents=True, exist_ok=True)
    count = len(payloads)
    async with open_engine(f"file://{folder}") as engine:
        async with engine.producer("bench", "averages", on_no_exists="create") as producer:
            for first in range(0, count, BATCH):
                await producer.produce_many(payloads[first:first + BATCH])
        bridge = open_bridge(dict(url=BROKER, exchange=exchange, from_topic="averages",
                                  publish=TEMPLATE, name="bench-egress", batch_size=BATCH))
        status = bridge.status
        stop = asyncio.Event()
        task = asyncio.create_task(bridge.run(stop, engine))
        try:
            while not status.connected and not task.done():
                await asyncio.sleep(0.001)
            meter = CpuMeter()
            start = time.perf_counter()
            seen, last = 0, start
            while status.messages_out + status.dead_letters < count and not task.done():
                await asyncio.sleep(0.005)
                if status.messages_out != seen:
                    seen, last = status.messages_out, time.perf_counter()
                elif time.perf_counter() - last > IDLE:
                    break
            span = time.perf_counter() - start
            broker_cores, own_cores = meter.cores()
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
        done = status.messages_out
        error = None if done == count else (
            f"the bridge confirmed {done:,} of {count:,} ({status.dead_letters:,} dead letters)")
        return Outcome(done / span if span > 0 else 0.0, done, status.line(), error,
                       broker_cores, own_cores)


async def measure(payloads: list[bytes], keys: list[str], folder: Path
                  ) -> tuple[Outcome, Outcome]:
    """The bridge's and bare aio-pika's rates for the same messages (``keys``: the routing
    keys the template makes of them, for the bare publisher)."""
    async with _exchange() as (exchange, queue):
        bare = await bare_aio_pika(exchange, payloads, keys)
        if await _purge(queue) != len(payloads):
            bare.error = "the queue did not get every message"
        bridge = await bridge_egress(exchange, payloads, folder)
        if await _purge(queue) != bridge.count and bridge.error is None:
            bridge.error = "the queue did not get every message the bridge confirmed"
    return bridge, bare


__all__ = ["Outcome", "measure", "rabbitmq_up"]
