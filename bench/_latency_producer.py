"""Paced producer for the latency row of ``bench/topics.py``, run in its own process.

Usage: ``python bench/_latency_producer.py URL TOPIC RATE SECONDS [BATCH]``.
Produces ``RATE`` messages per second for ``SECONDS`` in batches of ``BATCH`` messages
(one ``produce_many`` every ``BATCH / RATE`` seconds, on an absolute schedule, several
batches in flight if a commit is slow), each payload carrying ``sent = time.time_ns()``
taken just before the batch is handed to the producer.
"""

from __future__ import annotations

import asyncio
import sys
import time

from lakeport import tune_process
from lakeport.streams.registry import open_engine


def latency_payload(index: int, sent_ns: int) -> dict:
    """A 100-byte JSON reading that carries its send time."""
    return {
        "asset": f"pump-{index % 1000:04d}",
        "datastream": "temperature",
        "value": 21.53,
        "unit": "C",
        "sent": sent_ns,
    }


async def produce_paced(url: str, topic: str, rate: int, seconds: float, batch: int) -> int:
    """Produce ``rate * seconds`` messages at ``rate`` per second; return how many."""
    total = int(rate * seconds)
    interval = batch / rate
    in_flight: set[asyncio.Task[list[int]]] = set()
    async with open_engine(url) as engine, engine.producer("latency-producer", topic) as producer:
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        while sent < total:
            delay = start + (sent // batch) * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            count = min(batch, total - sent)
            now = time.time_ns()
            payloads = [latency_payload(sent + i, now) for i in range(count)]
            task = asyncio.create_task(producer.produce_many(payloads))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            sent += count
        if in_flight:
            await asyncio.gather(*in_flight)
    return sent


def main(argv: list[str]) -> int:
    if len(argv) not in (4, 5):
        print("usage: _latency_producer.py URL TOPIC RATE SECONDS [BATCH]", file=sys.stderr)
        return 2
    url, topic, rate, seconds = argv[0], argv[1], int(argv[2]), float(argv[3])
    batch = int(argv[4]) if len(argv) == 5 else 50
    tune_process()  # as lakeport's own processes are
    asyncio.run(produce_paced(url, topic, rate, seconds, batch))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
