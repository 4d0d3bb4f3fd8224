"""Forwarding edge → central over loopback HTTP, next to plain produce-batch over HTTP.

Run from the repository root: ``python bench/forward.py [--quick] [--json]``.
A central ``lakeport serve`` (embedded topics) runs on a free port; the edge is an embedded
engine in this process holding ~100-byte JSON readings. Rows, measured in the same run:

- forward: ``lakeport.forward.Forwarder`` moves the edge topic to the central side (Arrow
  blocks, zstd on the wire, msg_ids, original time / producer / headers), until the central
  topic holds every reading;
- plain produce-batch: the ``http://`` engine's ``produce_many`` (uncompressed JSON,
  ``POST /topics/{topic}/messages/batch``) of the same readings.

Bytes per message are request bodies on the wire divided by messages.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from _server_runner import free_port, wait_healthy
from lakeport import tune_process
from lakeport.forward import ForwardConfig, Forwarder
from lakeport.streams import open_engine
from lakeport.streams.remote.producer import batch_body

TARGET = 200_000  # forwarded messages per second
BATCH = 10_000


def reading(index: int) -> dict:
    """A 100-byte JSON sensor reading (``orjson.dumps`` length is exactly 100)."""
    cents = 2001 + index % 997
    if cents % 10 == 0:
        cents += 1
    return {"asset": f"pump-{index % 1000:04d}", "datastream": "temperature",
            "value": cents / 100, "unit": "degC", "seq": 100_000 + index % 900_000, "q": "good"}


async def make_key(store_url: str) -> str:
    from lakeport.server.store import Store
    from lakeport.server.store.users import create_key

    async with Store(store_url) as store:
        return await create_key(store, "bench")


async def fill_edge(edge_url: str, n: int) -> None:
    async with open_engine(edge_url) as edge, edge.producer("sensors", "raw") as producer:
        for first in range(0, n, BATCH):
            await producer.produce_many([reading(i) for i in range(first, min(n, first + BATCH))])


async def forward(edge_url: str, central: str, n: int) -> tuple[float, float]:
    """Seconds to forward ``n`` readings and wire bytes per message."""
    async with open_engine(edge_url) as edge, open_engine(central) as engine:
        config = ForwardConfig(from_topic="raw", to_url=central, site="bench")
        forwarder = Forwarder(config, edge, save_status=False)
        stop = asyncio.Event()
        started = time.perf_counter()
        task = asyncio.create_task(forwarder.run(stop))
        while True:
            await asyncio.sleep(0.05)
            if task.done():
                task.result()
            if forwarder.status.forwarded >= n:
                break
        elapsed = time.perf_counter() - started
        stop.set()
        await task
        info = await engine.topic_info("raw")
        assert info.last_seqno == n, f"central holds {info.last_seqno} of {n}"
        return elapsed, forwarder.status.wire_bytes / n


async def plain(central: str, n: int) -> tuple[float, float]:
    """Seconds to produce ``n`` readings with produce_many over HTTP, body bytes per message."""
    batches = [[reading(i) for i in range(first, min(n, first + BATCH))]
               for first in range(0, n, BATCH)]
    wire = sum(len(batch_body("bench", [orjson.dumps(r) for r in batch])) for batch in batches)
    async with open_engine(central) as engine, engine.producer("bench", "plain") as producer:
        started = time.perf_counter()
        for batch in batches:
            await producer.produce_many(batch)
        return time.perf_counter() - started, wire / n


def measure(n: int) -> dict[str, float]:
    """Forward and plain produce-batch of ``n`` readings to a central server started here."""
    with tempfile.TemporaryDirectory(prefix="lakeport-bench-forward-") as tmp:
        root = Path(tmp)
        store = f"sqlite:///{root / 'store.db'}"
        key = asyncio.run(make_key(store))
        port = free_port()
        env = os.environ | {"LAKEPORT_HOME": str(root / "home")}
        server = subprocess.Popen(
            [sys.executable, "-m", "lakeport.cli", "serve", "--port", str(port), "--store",
             store, "--streams", (root / "central").as_uri(), "--lake", (root / "lake").as_uri()],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(server, url, "lakeport serve", server.terminate)
            central = f"{url}?api_key={key}"
            edge = (root / "edge").as_uri()
            asyncio.run(fill_edge(edge, n))
            fwd_s, fwd_bytes = asyncio.run(forward(edge, central, n))
            plain_s, plain_bytes = asyncio.run(plain(central, n))
        finally:
            server.terminate()
            server.wait(30)
    return {"messages": n, "forward_msgs_per_s": round(n / fwd_s),
            "forward_bytes_per_msg": round(fwd_bytes, 2),
            "plain_msgs_per_s": round(n / plain_s), "plain_bytes_per_msg": round(plain_bytes, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200,000 readings, not 1,000,000")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    n = 200_000 if args.quick else 1_000_000
    tune_process()
    figures = measure(n)
    fwd_bytes, plain_bytes = figures["forward_bytes_per_msg"], figures["plain_bytes_per_msg"]
    if args.json:
        print(orjson.dumps(figures).decode())
        return
    table = Table(title=f"edge → central over loopback HTTP, {n:,} readings of 100 bytes")
    for column in ("workload", "msgs/s", "bytes on the wire / msg", "target"):
        table.add_column(column)
    table.add_row("lakeport forward (Arrow IPC + zstd, msg_ids)",
                  f"{figures['forward_msgs_per_s']:,}", f"{fwd_bytes:.1f}", f">= {TARGET:,}/s")
    table.add_row("plain produce-batch (JSON)", f"{figures['plain_msgs_per_s']:,}",
                  f"{plain_bytes:.1f}", "comparison")
    Console().print(table)


if __name__ == "__main__":
    main()
