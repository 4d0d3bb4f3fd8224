"""MQTT ingest for ``bench/routing.py``: a Mosquitto of its own, a raw-socket publisher, the
lakeport bridge into an embedded-engine topic and a bare paho-mqtt subscriber that only counts.

Both sides are timed the same way: from the first message they received to the last one they
are done with (the bridge: stored durably in the topic; the bare subscriber: its callback ran).
The publisher's packets are built before the clock starts and sent from a thread of this
process by one ``sendall`` per 2,000 messages, so it costs little of the measured process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TOPICS = 100  # broker topics plant/north/pump-NNNN/temperature
FILTER = "plant/#"
FIELDS = "plant/{site}/{asset}/{datastream}"
CHUNK = 2_000  # messages per sendall
IDLE = 15.0  # seconds without progress before a run gives up


def mosquitto_path() -> str | None:
    """The ``mosquitto`` binary (PATH, then /usr/sbin), or None when it is not installed."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mosquitto(folder: Path) -> Iterator[int]:
    """A Mosquitto on a free loopback port: anonymous, unlimited in-flight and queued
    messages (so neither subscriber loses or waits on the broker's limits); yields the port."""
    binary = mosquitto_path()
    if binary is None:
        raise FileNotFoundError("mosquitto is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                    "max_inflight_messages 0\nmax_queued_messages 0\npersistence false\n")
    log = (folder / "mosquitto.log").open("wb")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {proc.returncode}: "
                                   + (folder / "mosquitto.log").read_text()[-200:])
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise TimeoutError("mosquitto did not listen within 10 s")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# -- the publisher -------------------------------------------------------------------------
def payload(index: int) -> bytes:
    """A 100-byte JSON reading (the bridge adds site, asset, datastream from the topic)."""
    head = f'{{"id":{index:09d},"value":{20 + index % 80}.{index % 10}5,"unit":"C","pad":"'
    return (head + "x" * (98 - len(head)) + '"}').encode()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (128 if n else 0))
        if not n:
            return bytes(out)


def _connect_packet(client_id: bytes) -> bytes:
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack("!H", len(client_id)) + client_id
    return b"\x10" + _varint(len(body)) + body


def publish_chunks(count: int, qos: int) -> list[bytes]:
    """``count`` PUBLISH packets at ``qos`` (100-byte payloads over ``TOPICS`` topics), joined
    into one bytes object per ``CHUNK`` messages."""
    topics = [f"plant/north/pump-{i:04d}/temperature".encode() for i in range(TOPICS)]
    heads = [struct.pack("!H", len(t)) + t for t in topics]
    chunks, part = [], []
    for index in range(count):
        body = heads[index % TOPICS] + (struct.pack("!H", index % 65535 + 1) if qos else b"") \
            + payload(index)
        part.append(bytes([0x30 | (qos << 1)]) + _varint(len(body)) + body)
        if len(part) == CHUNK:
            chunks.append(b"".join(part))
            part = []
    if part:
        chunks.append(b"".join(part))
    return chunks


def _recv_exactly(sock: socket.socket, size: int) -> None:
    got = 0
    while got < size:
        data = sock.recv(min(1 << 16, size - got))
        if not data:
            raise ConnectionError("the broker closed the publisher's connection")
        got += len(data)


def blast(port: int, chunks: list[bytes], count: int, qos: int, errors: list[BaseException]
          ) -> None:
    """Publish the prepared packets over one raw MQTT 3.1.1 connection (QoS 1: then wait for
    every PUBACK) and disconnect."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(_connect_packet(f"bench-pub-{os.getpid()}-{qos}".encode()))
            _recv_exactly(sock, 4)  # CONNACK
            for chunk in chunks:
                sock.sendall(chunk)
            if qos:
                _recv_exactly(sock, 4 * count)  # one 4-byte PUBACK each
            sock.sendall(b"\xe0\x00")
    except BaseException as exc:  # reported by the caller
        errors.append(exc)


def start_publisher(port: int, chunks: list[bytes], count: int, qos: int
                    ) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []
    thread = threading.Thread(target=blast, args=(port, chunks, count, qos, errors), daemon=True)
    thread.start()
    return thread, errors


# -- the two subscribers -------------------------------------------------------------------
@dataclass
class Outcome:
    rate: float  # messages per second, first received → last done
    count: int  # messages done
    note: str = ""  # what the subscriber reported (the bridge's status line)
    error: str | None = None


def bare_paho(port: int, qos: int, count: int, chunks: list[bytes]) -> Outcome:
    """A paho-mqtt subscriber to ``FILTER`` at ``qos`` whose callback only counts."""
    import paho.mqtt.client as paho

    state = {"n": 0, "first": 0.0, "last": 0.0}
    subscribed = threading.Event()

    def on_message(client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        now = time.perf_counter()
        if not state["n"]:
            state["first"] = now
        state["n"] += 1
        state["last"] = now
        if state["n"] >= count:
            client.disconnect()

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bench-bare-{qos}",
                         clean_session=True)
    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(FILTER, qos)
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        if not subscribed.wait(10):
            return Outcome(0.0, 0, error="the bare subscriber did not subscribe within 10 s")
        thread, errors = start_publisher(port, chunks, count, qos)
        seen, idle_since = -1, time.monotonic()
        while state["n"] < count and not errors:
            time.sleep(0.02)
            if state["n"] != seen:
                seen, idle_since = state["n"], time.monotonic()
            elif time.monotonic() - idle_since > IDLE:
                break
        thread.join(30)
    finally:
        client.disconnect()
        client.loop_stop()
    n = state["n"]
    error = (f"publisher: {errors[0]}" if errors else
             None if n >= count else f"only {n:,} of {count:,} messages arrived")
    span = state["last"] - state["first"]
    return Outcome(n / span if n > 1 and span > 0 else 0.0, n, error=error)


async def bridge_ingest(port: int, qos: int, count: int, chunks: list[bytes], folder: Path
                        ) -> Outcome:
    """The lakeport MQTT bridge (``open_bridge``) from ``FILTER`` at ``qos`` into the topic
    ``raw`` of an embedded engine in ``folder``; done = ``status.messages_out``."""
    from lakeport.routing import BridgeConfig, open_bridge
    from lakeport.streams.registry import open_engine

    async with open_engine(folder.as_uri()) as engine:
        bridge = open_bridge(BridgeConfig(
            url=f"mqtt://127.0.0.1:{port}", subscribe=[FILTER], to_topic="raw", fields=FIELDS,
            qos=qos, name=f"bench-q{qos}-{os.getpid()}"))
        status = bridge.status
        stop = asyncio.Event()
        task = asyncio.create_task(bridge.run(stop, engine))
        try:
            deadline = time.monotonic() + 10
            while not status.connected:
                if task.done():
                    task.result()
                    return Outcome(0.0, 0, status.line(), "the bridge ended before connecting")
                if time.monotonic() > deadline:
                    return Outcome(0.0, 0, status.line(), "the bridge did not connect in 10 s")
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # the subscription is sent right after the CONNACK
            thread, errors = start_publisher(port, chunks, count, qos)
            first = last = 0.0
            seen, idle_since = -1, time.monotonic()
            while status.messages_out + status.dead_letters < count and not errors:
                await asyncio.sleep(0.002)
                now = time.perf_counter()
                if not first and status.messages_in:
                    first = now
                if status.messages_out != seen:
                    seen, last, idle_since = status.messages_out, now, time.monotonic()
                elif time.monotonic() - idle_since > IDLE:
                    break
                if task.done():
                    task.result()
                    break
            await asyncio.to_thread(thread.join, 30)
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
        n = status.messages_out
        error = (f"publisher: {errors[0]}" if errors else
                 f"{status.dead_letters:,} dead letters" if status.dead_letters else
                 None if n >= count else f"only {n:,} of {count:,} messages stored")
        stored = await stored_count(engine, "raw")
        if stored != n and error is None:
            error = f"the topic holds {stored:,} messages, the bridge counted {n:,}"
        span = last - first
        return Outcome(n / span if n > 1 and span > 0 else 0.0, n, status.line(), error)


async def stored_count(engine: object, topic: str) -> int:
    """Messages in ``topic``, read back from the beginning."""
    from lakeport.streams.base import EndOfTopic

    seen = 0
    async with engine.consumer("bench-check", topic, position="beginning",  # type: ignore[attr-defined]
                               follow=False) as consumer:
        while True:
            try:
                block = await consumer.recv_block(100_000, timeout=10.0)
            except EndOfTopic:
                return seen
            seen += len(block)


async def measure(qos: int, count: int, folder: Path) -> tuple[Outcome, Outcome]:
    """(bridge, bare paho) at ``qos`` on ``count`` messages, each against a fresh Mosquitto."""
    chunks = publish_chunks(count, qos)
    with mosquitto(folder / f"broker-bare-q{qos}") as port:
        bare = await asyncio.to_thread(bare_paho, port, qos, count, chunks)
    with mosquitto(folder / f"broker-bridge-q{qos}") as port:
        bridge = await bridge_ingest(port, qos, count, chunks, folder / f"topics-q{qos}")
    return bridge, bare
