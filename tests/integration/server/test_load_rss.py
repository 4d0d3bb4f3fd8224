"""A server under abusive load keeps its memory and keeps answering, on SQLite and PostgreSQL.

``lakeport serve`` runs as its own process. One user sends, all at once: 300 MB declared
bodies with and without an API key (streamed, stopped once answered), slowloris connections
sending their headers a byte at a time, and WebSocket consumers of a topic of 1 MiB messages
that keep asking and never read their replies. The server's RSS may grow by one fetch reply
per such consumer (what its socket could not take) and 64 MiB for the rest; another user's
requests must be answered promptly throughout, and every connection must end with an answer
(never a 500) or a close before its deadline.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import psutil
import pytest

from servers import lakeport_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

API = "/api/v1"
DECLARED = 300_000_000
BIG_BODIES = 20
SLOWLORIS = 50
CONSUMERS = 30
MESSAGE = 1 << 20
MESSAGES = 40
HEADER_TIMEOUT = 3.0
FETCH_REPLY = 4 << 20  # the server's max_fetch_bytes (the default)
RSS_BOUND = CONSUMERS * FETCH_REPLY + (64 << 20)  # one reply per idle consumer at most
PROMPT = 3.0  # seconds: one event loop serves all of this load


def lakeport(home: Path, store_url: str, *args: str) -> str:
    env = {**os.environ, "LAKEPORT_HOME": str(home), "LAKEPORT_STORE": store_url}
    done = subprocess.run([sys.executable, "-m", "lakeport.cli", *args], env=env,
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def body_chunks(total: int, size: int = 64 << 10) -> Iterator[bytes]:
    """``total`` bytes of a JSON-looking body, ``size`` at a time (never all in memory)."""
    chunk = b" " * size
    yield b"{"
    for _ in range((total - 1) // size):
        yield chunk


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP answer: its status and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next((int(line.split(":", 1)[1]) for line in lines
                   if line.lower().startswith("content-length:")), 0)
    return status, await reader.readexactly(length)


async def big_body(port: int, key: str | None) -> int:
    """A 300 MB declared body streamed until the answer comes; the answer's status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (f"POST {API}/sensors HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {DECLARED}\r\n"
            + (f"x-api-key: {key}\r\n" if key else "") + "\r\n")
    writer.write(head.encode())

    async def pump() -> None:
        with contextlib.suppress(ConnectionError):
            for chunk in body_chunks(DECLARED):
                writer.write(chunk)
                await writer.drain()

    pumping = asyncio.create_task(pump())
    try:
        status, body = await asyncio.wait_for(read_answer(reader), 15)
        assert orjson.loads(body)["error"]["code"] in ("unauthorized", "too_large")
        return status
    finally:
        pumping.cancel()
        with contextlib.suppress(BaseException):
            await pumping
        writer.close()


async def slowloris(port: int) -> tuple[int | None, float]:
    """Headers one byte at a time, each sent once the previous got no answer in 0.1 s:
    the answer's status (None: closed without one) and when it came."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000
    try:
        for byte in request:
            try:
                writer.write(bytes([byte]))
                data = await asyncio.wait_for(reader.read(1 << 16), 0.1)
            except TimeoutError:
                continue
            except ConnectionError:
                return None, time.monotonic() - started
            status = int(data.split()[1]) if data.startswith(b"HTTP/1.1 ") else None
            return status, time.monotonic() - started
        raise AssertionError("the server read 10 kB of headers over seconds without answering")
    finally:
        writer.close()


def ws_frame(text: str) -> bytes:
    """A masked client text frame."""
    payload = text.encode()
    mask = os.urandom(4)
    size = len(payload)
    head = bytes([0x81]) + (bytes([0x80 | size]) if size < 126 else
                            bytes([0x80 | 126]) + size.to_bytes(2, "big"))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def ws_frame_text(reader: asyncio.StreamReader) -> str:
    first = await reader.readexactly(2)
    size = first[1] & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    elif size == 127:
        size = int.from_bytes(await reader.readexactly(8), "big")
    return (await reader.readexactly(size)).decode()


async def idle_consumer(port: int, key: str, topic: str, name: str
                        ) -> asyncio.StreamWriter:
    """A consumer that asks for messages and never reads the replies (its socket is kept)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"GET {API}/topics/{topic}/consume HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                  f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                  f"x-api-key: {key}\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
    assert head.startswith(b"HTTP/1.1 101"), head
    writer.write(ws_frame(orjson.dumps({"id": 0, "op": "open", "name": name,
                                        "position": "beginning"}).decode()))
    opened = orjson.loads(await asyncio.wait_for(ws_frame_text(reader), 15))
    assert opened["ok"], opened
    return writer


async def keep_fetching(writer: asyncio.StreamWriter, stop: asyncio.Event) -> None:
    """A fetch request every 0.1 s until ``stop``, none of the replies read."""
    for request_id in itertools.count(1):
        writer.write(ws_frame(orjson.dumps({"id": request_id, "op": "fetch", "max_n": 1000,
                                            "timeout": 1}).decode()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)
        if stop.is_set():
            return


class Sampler:
    """The largest RSS of a process, sampled every 20 ms until stopped."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self.stop = asyncio.Event()

    async def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 0.02)


async def probe(url: str, key: str, stop: asyncio.Event) -> list[float]:
    """Another user's requests, one after the other until ``stop``: their durations."""
    took: list[float] = []
    async with httpx.AsyncClient(base_url=url, headers={"x-api-key": key},
                                 timeout=PROMPT * 5) as http:
        while not stop.is_set():
            started = time.monotonic()
            answer = await http.get(f"{API}/me")
            took.append(time.monotonic() - started)
            assert answer.status_code == 200 and answer.json() == {"user": "other"}
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)
    return took


async def warm_up(url: str, port: int, key: str, topic: str) -> None:
    """Every kind of request once, so the baseline holds what they load."""
    assert await big_body(port, None) == 401
    assert await big_body(port, key) == 413
    writer = await idle_consumer(port, key, topic, "warm-up")
    writer.close()
    async with httpx.AsyncClient(base_url=url, headers={"x-api-key": key}) as http:
        assert (await http.get(f"{API}/me")).status_code == 200


async def load(url: str, pid: int, key: str, other: str, topic: str
               ) -> tuple[int, int, list[int], list[tuple[int | None, float]], list[float]]:
    port = int(url.rsplit(":", 1)[1])
    await warm_up(url, port, key, topic)
    sampler = Sampler(pid)
    baseline = sampler.peak
    sampling = asyncio.create_task(sampler.run())
    stop = asyncio.Event()
    probing = asyncio.create_task(probe(url, other, stop))
    consumers = await asyncio.gather(*(idle_consumer(port, key, topic, f"idle-{i}")
                                       for i in range(CONSUMERS)))
    asking = [asyncio.create_task(keep_fetching(writer, stop)) for writer in consumers]
    try:
        statuses, slow = await asyncio.gather(
            asyncio.gather(*(big_body(port, key if i % 2 else None)
                             for i in range(BIG_BODIES))),
            asyncio.gather(*(slowloris(port) for _ in range(SLOWLORIS))))
    finally:
        stop.set()
        await asyncio.gather(*asking)
        took = await probing
        sampler.stop.set()
        await sampling
        for writer in consumers:
            writer.close()
    return baseline, sampler.peak, statuses, slow, took


def test_abusive_load_keeps_memory_bounded_and_answers(store_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    key = lakeport(home, store_url, "keys", "create", "--user", "load")
    other = lakeport(home, store_url, "keys", "create", "--user", "other")
    # glibc hands large blocks back when they are freed, so RSS follows what the server
    # holds (lakeport's own tuning keeps up to 128 MiB of freed heap for reuse)
    env = {**os.environ, "LAKEPORT_HOME": str(home), "LAKEPORT_STORE": store_url,
           "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
    command = [sys.executable, "-m", "lakeport.cli", "serve",
               "--header-timeout", str(HEADER_TIMEOUT)]
    with lakeport_server(command, env=env) as (url, process), \
            httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=30) as http:
        assert http.put(f"{API}/topics/big").status_code == 201
        payload = "m" * MESSAGE
        for _ in range(MESSAGES):
            assert http.post(f"{API}/topics/big/messages",
                             json={"payload": payload}).status_code == 200
        started = time.monotonic()
        baseline, peak, statuses, slow, took = asyncio.run(
            load(url, process.pid, key, other, "big"))
        elapsed = time.monotonic() - started
        assert http.get("/health").status_code == 200
    assert sorted(statuses) == [401] * (BIG_BODIES // 2) + [413] * (BIG_BODIES // 2)
    for status, after in slow:
        assert status in (408, None) and after < HEADER_TIMEOUT + 5, (status, after)
    assert any(status == 408 for status, _ in slow)
    assert took and max(took) < PROMPT, f"another user waited {max(took):.2f} s"
    grown = peak - baseline
    assert grown < RSS_BOUND, f"RSS grew by {grown >> 20} MiB (baseline {baseline >> 20} MiB)"
    assert elapsed < 60

