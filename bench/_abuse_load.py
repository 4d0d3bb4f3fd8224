"""An abusive single-user load on a running ``lakeport serve``, and the server's RSS under it.

One user sends, all at once: large declared bodies with and without an API key (streamed,
stopped once answered), slowloris connections sending their headers a byte at a time, and
WebSocket consumers of a topic that keep asking and never read their replies. Another user's
requests are timed meanwhile. Used by ``tests/integration/server/test_load_rss.py`` (which
checks the outcome against the server's limits) and ``bench/abuse.py`` (which compares the
default limits with lifted ones).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import orjson
import psutil

API = "/api/v1"
DECLARED = 300_000_000
BIG_BODIES = 20
SLOWLORIS = 50
CONSUMERS = 30
MESSAGE = 1 << 20  # payload bytes of one message of the consumers' topic
MESSAGES = 40  # messages in that topic
# glibc hands large blocks back when they are freed, so RSS follows what the server holds
# (lakeport's own tuning keeps up to 128 MiB of freed heap for reuse)
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


def body_chunks(total: int, size: int = 64 << 10) -> Iterator[bytes]:
    """``total`` bytes of a JSON-looking body, ``size`` at a time (never all in memory)."""
    chunk = b" " * size
    yield b"{"
    left = total - 1
    while left >= size:
        yield chunk
        left -= size
    if left:
        yield chunk[:left]


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP answer: its status and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next((int(line.split(":", 1)[1]) for line in lines
                   if line.lower().startswith("content-length:")), 0)
    return status, await reader.readexactly(length)


def error_code(body: bytes) -> str | None:
    """The ``error.code`` of a JSON error body, None for any other body."""
    try:
        return orjson.loads(body)["error"]["code"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


async def big_body(port: int, key: str | None, declared: int = DECLARED,
                   timeout: float = 15.0) -> tuple[int | None, str | None]:
    """A ``declared``-byte body streamed until the answer comes: the answer's status and error
    code; (None, None) when none came within ``timeout`` seconds or the connection closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (f"POST {API}/sensors HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {declared}\r\n"
            + (f"x-api-key: {key}\r\n" if key else "") + "\r\n")
    writer.write(head.encode())

    async def pump() -> None:
        with contextlib.suppress(ConnectionError):
            for chunk in body_chunks(declared):
                writer.write(chunk)
                await writer.drain()

    pumping = asyncio.create_task(pump())
    try:
        status, body = await asyncio.wait_for(read_answer(reader), timeout)
        return status, error_code(body)
    except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
        return None, None
    finally:
        pumping.cancel()
        with contextlib.suppress(BaseException):
            await pumping
        writer.transport.abort()  # the client gives up: what it had queued is never sent


async def slowloris(port: int, stop: asyncio.Event | None = None
                    ) -> tuple[int | None, float | None]:
    """Headers one byte at a time, each sent once the previous got no answer in 0.1 s:
    the answer's status (None: closed without one) and when it came (None: the connection
    was still open when ``stop`` was set, or after 10 kB of headers)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000
    try:
        for byte in request:
            if stop is not None and stop.is_set():
                return None, None
            try:
                writer.write(bytes([byte]))
                data = await asyncio.wait_for(reader.read(1 << 16), 0.1)
            except TimeoutError:
                continue
            except ConnectionError:
                return None, time.monotonic() - started
            status = int(data.split()[1]) if data.startswith(b"HTTP/1.1 ") else None
            return status, time.monotonic() - started
        return None, None
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
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"consumer {name}: no WebSocket: {head[:200]!r}")
    writer.write(ws_frame(orjson.dumps({"id": 0, "op": "open", "name": name,
                                        "position": "beginning"}).decode()))
    opened = orjson.loads(await asyncio.wait_for(ws_frame_text(reader), 15))
    if not opened["ok"]:
        raise RuntimeError(f"consumer {name}: open refused: {opened}")
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


@dataclass
class Probe:
    """Another user's ``GET /me`` requests: how long each answered one took (seconds), and
    the status of each that failed (anything but 200 with the user's name; None: no answer)."""

    took: list[float] = field(default_factory=list)
    failed: list[int | None] = field(default_factory=list)


async def probe(url: str, key: str, user: str, stop: asyncio.Event, pause: float = 0.05,
                timeout: float = 15.0) -> Probe:
    """Requests of ``user`` one after the other, ``pause`` seconds apart, until ``stop``."""
    result = Probe()
    async with httpx.AsyncClient(base_url=url, headers={"x-api-key": key},
                                 timeout=timeout) as http:
        while not stop.is_set():
            started = time.monotonic()
            try:
                answer = await http.get(f"{API}/me")
            except httpx.HTTPError:
                result.failed.append(None)
            else:
                result.took.append(time.monotonic() - started)
                if answer.status_code != 200 or orjson.loads(answer.content) != {"user": user}:
                    result.failed.append(answer.status_code)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
    return result


async def warm_up(url: str, key: str, topic: str) -> tuple[int | None, int | None, int]:
    """Every kind of request once, so a baseline taken next holds what they load: the
    statuses of a big body without and with the key, and of ``GET /me``."""
    port = int(url.rsplit(":", 1)[1])
    without_key, _ = await big_body(port, None)
    with_key, _ = await big_body(port, key)
    writer = await idle_consumer(port, key, topic, "warm-up")
    writer.close()
    async with httpx.AsyncClient(base_url=url, headers={"x-api-key": key}) as http:
        me = (await http.get(f"{API}/me")).status_code
    return without_key, with_key, me


@dataclass
class Outcome:
    """What one load did: the server's RSS before it and at its peak (bytes), each big body's
    (status, error code), each slowloris connection's (status, seconds until closed), the other
    user's requests, and how long the load lasted (seconds)."""

    baseline: int
    peak: int
    bodies: list[tuple[int | None, str | None]]
    slow: list[tuple[int | None, float | None]]
    probe: Probe
    seconds: float


async def load(url: str, pid: int, key: str, other: str, topic: str, *,
               window: float | None = None, pause: float = 0.05) -> Outcome:
    """The load, with ``other``'s requests (user ``other``) timed throughout. It lasts until
    every body is answered and every slowloris connection closed, or ``window`` seconds: then
    the bodies not answered count as such and the connections still open are closed."""
    port = int(url.rsplit(":", 1)[1])
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    deadline = None if window is None else loop.time() + window
    sampler = Sampler(pid)
    baseline = sampler.peak
    sampling = asyncio.create_task(sampler.run())
    stop = asyncio.Event()
    probing = asyncio.create_task(probe(url, other, "other", stop, pause))
    consumers = await asyncio.gather(*(idle_consumer(port, key, topic, f"idle-{i}")
                                       for i in range(CONSUMERS)))
    asking = [asyncio.create_task(keep_fetching(writer, stop)) for writer in consumers]
    slow_stop = asyncio.Event()
    if deadline is not None:
        loop.call_at(deadline, slow_stop.set)
    answer_within = 15.0 if deadline is None else max(1.0, deadline - loop.time())
    try:
        statuses, slow = await asyncio.gather(
            asyncio.gather(*(big_body(port, key if i % 2 else None, timeout=answer_within)
                             for i in range(BIG_BODIES))),
            asyncio.gather(*(slowloris(port, slow_stop) for _ in range(SLOWLORIS))))
        if deadline is not None:
            await slow_stop.wait()
    finally:
        stop.set()
        await asyncio.gather(*asking)
        took = await probing
        sampler.stop.set()
        await sampling
        for writer in consumers:
            writer.transport.abort()
    return Outcome(baseline, sampler.peak, statuses, slow, took, time.monotonic() - started)
