"""Forwarding between two real lakeport servers: fields kept, grants enforced, exactly once
across a killed forwarder and a restarted link, and ``lakeport serve --forward``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from lakeport.forward import SITE_HEADER, ForwardConfig, Forwarder, read_status
from lakeport.streams import Engine, Message, TopicOptions, open_engine
from lakeport.streams.remote.wire import BLOCK_CONTENT_TYPE
from servers import free_port
from waiting import eventually, wait_until

pytestmark = pytest.mark.timeout(180)

LAKEPORT = [sys.executable, "-m", "lakeport.cli"]
RESTARTS = 10
READINGS = 1_000_000


# -- a central server as a process that can be stopped and started again ---------------------
async def _make_key(store_url: str, user: str) -> str:
    from lakeport.server.store import Store
    from lakeport.server.store.users import create_key

    async with Store(store_url) as store:
        return await create_key(store, user)


@dataclass
class Central:
    """``lakeport serve`` on a fixed port and folder, restartable; keys for alice and bob."""

    root: Path
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.root / 'store.db'}"

    def key(self, user: str) -> str:
        """A new API key for ``user`` (callable from a test's event loop)."""
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, _make_key(self.store_url, user)).result()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [*LAKEPORT, "serve", "--workers", "0", "--port", str(self.port), "--store",
             self.store_url,
             "--streams", (self.root / "streams").as_uri(),
             "--lake", (self.root / "lake").as_uri()],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=os.environ | {"LAKEPORT_HOME": str(self.root / "home")})
        assert wait_until(self.healthy, 60), "the central server answers /health"

    def healthy(self) -> bool:
        assert self.process is not None and self.process.poll() is None, \
            self.process.stderr.read() if self.process else "not started"
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (SIGKILL with ``kill``: a crash mid-request) and wait for the end."""
        if self.process is not None and self.process.poll() is None:
            if kill:
                self.process.kill()
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Central]:
    server = Central(tmp_path / "central", free_port())
    server.root.mkdir()
    server.key("alice")  # makes the store before the server opens it
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def edge_url(tmp_path: Path) -> str:
    return (tmp_path / "edge").as_uri()


def readings(start: int, n: int) -> list[dict]:
    return [{"id": i, "asset": "pump-01", "value": 21.5, "unit": "C"} for i in range(start,
                                                                                      start + n)]


async def produce(edge_url: str, topic: str, start: int, n: int, batch: int = 50_000) -> None:
    async with open_engine(edge_url) as edge, edge.producer("sensors", topic) as producer:
        for first in range(start, start + n, batch):
            await producer.produce_many(readings(first, min(batch, start + n - first)))


async def central_ids(url: str, key: str, topic: str) -> list[int]:
    """The ``id`` of every reading in the central topic."""
    async with open_engine(f"{url}?api_key={key}") as engine:
        info = await engine.topic_info(topic)
        ids: list[int] = []
        async with engine.consumer("check", topic, position="beginning", follow=False,
                                   ephemeral=True) as consumer:
            while len(ids) < info.last_seqno:
                block = await consumer.recv_block(100_000, timeout=30)
                lines = block.payload_lines().to_pybytes().replace(b"\n", b",")
                ids.extend(reading["id"] for reading in orjson.loads(b"[" + lines + b"]"))
        return ids


async def read_all(engine: Engine, topic: str) -> list[Message]:
    async with engine.consumer("look", topic, position="beginning", follow=False,
                               ephemeral=True) as consumer:
        return [message async for message in consumer]


def central_count(url: str, key: str, topic: str) -> int:
    try:
        answer = httpx.get(f"{url}/api/v1/topics/{topic}", headers={"x-api-key": key},
                           timeout=5)
    except httpx.TransportError:
        return -1
    return answer.json()["last_seqno"] if answer.status_code == 200 else -1


def forward_cli(edge_url: str, central: Central, key: str, *options: str,
                home: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*LAKEPORT, "forward", "--from", "raw", "--to", f"{central.url}?api_key={key}",
         "--site", "edge-1", "--url", edge_url, *options],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=os.environ | {"LAKEPORT_HOME": str(home)})


# -- tests ------------------------------------------------------------------------------------
async def test_messages_keep_time_producer_headers_and_get_the_site(
        central: Central, edge_url: str) -> None:
    key = central.key("alice")
    async with open_engine(edge_url) as edge:
        async with edge.producer("pump-7", "raw") as producer:
            await producer.produce({"id": 0}, headers={"unit": "C"}, key="pump")
            await producer.produce_many([{"id": 1}, {"id": 2}])
        originals = await read_all(edge, "raw")
        config = ForwardConfig(from_topic="raw", to_url=f"{central.url}?api_key={key}",
                               site="edge-1", prefix="site1.")
        stop = asyncio.Event()
        forwarder = Forwarder(config, edge)
        task = asyncio.create_task(forwarder.run(stop))
        assert await eventually(lambda: central_count(central.url, key, "site1.raw") == 3), \
            "3 messages forwarded"
        assert await eventually(lambda: forwarder.status.lag == 0 and
                                forwarder.status.oldest_unforwarded_age is None), "lag 0"
        stop.set()
        await task
    async with open_engine(f"{central.url}?api_key={key}") as engine:
        stored = await read_all(engine, "site1.raw")
    assert [m.payload for m in stored] == [m.payload for m in originals]
    assert [m.timestamp_ns for m in stored] == [m.timestamp_ns for m in originals]
    assert [m.producer for m in stored] == ["pump-7"] * 3
    assert [m.key for m in stored] == ["pump", None, None]
    assert [m.headers for m in stored] == [{"unit": "C", SITE_HEADER: "edge-1"},
                                           {SITE_HEADER: "edge-1"}, {SITE_HEADER: "edge-1"}]
    [status] = read_status(config.consumer_name)
    assert (status["state"], status["forwarded"], status["lag"]) == ("stopped", 3, 0)


async def test_a_key_without_produce_grant_is_refused(central: Central, edge_url: str,
                                                      tmp_path: Path) -> None:
    alice, bob = central.key("alice"), central.key("bob")
    with httpx.Client(base_url=central.url, headers={"x-api-key": alice}) as http:
        assert http.put("/api/v1/topics/raw").status_code == 201
        assert http.put("/api/v1/grants/topic/raw",
                        json={"user": "bob", "permission": "read"}).status_code == 201
    await produce(edge_url, "raw", 0, 10)
    process = forward_cli(edge_url, central, bob, home=tmp_path / "home")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert err.splitlines()[-1].startswith("error: cannot produce to topic 'raw'"), err
    assert central_count(central.url, alice, "raw") == 0


async def test_kill_9_mid_batch_then_restart_after_the_dedup_window(
        central: Central, edge_url: str, tmp_path: Path) -> None:
    key = central.key("alice")
    with httpx.Client(base_url=central.url, headers={"x-api-key": key}) as http:
        answer = http.put("/api/v1/topics/raw", json=TopicOptions(dedup_window=0.5).model_dump())
        assert answer.status_code == 201, answer.text
    n = 200_000
    await produce(edge_url, "raw", 0, n)
    home = tmp_path / "home"
    # the rate cap makes the forwarder spend most of each batch between store and ack
    process = forward_cli(edge_url, central, key, "--batch", "2000", "--max-rate", "100KB/s",
                          home=home)
    try:
        assert wait_until(lambda: central_count(central.url, key, "raw") >= 10_000
                          and central_count(central.url, key, "raw") > edge_acked(edge_url),
                          60), "a batch stored centrally and not acked on the edge"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    stored = central_count(central.url, key, "raw")
    assert edge_acked(edge_url) < stored < n  # killed between store and ack
    killed = time.monotonic()
    assert wait_until(lambda: time.monotonic() > killed + 1.0, 5)  # past the dedup window
    process = forward_cli(edge_url, central, key, home=home)
    try:
        assert wait_until(lambda: central_count(central.url, key, "raw") >= n, 90), \
            "the rest forwarded"
        ids = await central_ids(central.url, key, "raw")
        assert len(ids) == n and len(set(ids)) == n
        assert wait_until(lambda: read_status_lag(home) == 0, 30), "lag back to 0"
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err


def edge_acked(edge_url: str) -> int:
    """The edge seqno the forwarder's consumer acked (read from another process)."""

    async def read() -> int:
        async with open_engine(edge_url) as edge:
            info = await edge.topic_info("raw")
        return max((c.acked for c in info.consumers if c.name.startswith("forward:")),
                   default=0)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result()


def read_status_lag(home: Path) -> int | None:
    path = next(iter(home.glob("forwards/*/status.json")), None)
    if path is None:
        return None
    with contextlib.suppress(ValueError, OSError):
        return orjson.loads(path.read_bytes())["lag"]
    return None


async def test_serve_forward_runs_beside_the_server(central: Central, tmp_path: Path) -> None:
    key = central.key("alice")
    edge_root = tmp_path / "edge-server"
    edge_root.mkdir()
    edge_streams = (edge_root / "streams").as_uri()
    port = free_port()
    process = subprocess.Popen(
        [*LAKEPORT, "serve", "--workers", "0", "--port", str(port), "--store",
         f"sqlite:///{edge_root / 'store.db'}", "--streams", edge_streams,
         "--lake", (edge_root / "lake").as_uri(),
         "--forward", f"raw={central.url}?api_key={key}", "--forward-site", "edge-2"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=os.environ | {"LAKEPORT_HOME": str(edge_root / "home")})
    try:
        await produce(edge_streams, "raw", 0, 1000)
        assert wait_until(lambda: central_count(central.url, key, "raw") == 1000, 60), \
            "the edge server forwards"
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)  # the forwarder stops with the server
    # uvicorn ends by raising the SIGTERM it handled again
    assert process.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err and "error" not in err.lower(), err
    assert sorted(await central_ids(central.url, key, "raw")) == list(range(1000))


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_link_restarted_ten_times_while_the_edge_produces(
        central: Central, edge_url: str, tmp_path: Path) -> None:
    """The central server stops (or is killed) and starts 10 times while the edge produces
    READINGS readings and they are being forwarded: the central topic holds each once and
    the edge's lag returns to 0. About 50 s on a 2-core machine."""
    key = central.key("alice")
    home = tmp_path / "home"
    process = forward_cli(edge_url, central, key, home=home)
    per_round = READINGS // RESTARTS
    try:
        for round_ in range(RESTARTS):
            await produce(edge_url, "raw", round_ * per_round, per_round)
            before = round_ * per_round
            assert wait_until(lambda b=before: central_count(central.url, key, "raw") > b, 60), \
                "this round's readings reach the central side"
            central.stop(kill=round_ % 2 == 1)  # every other time a crash, not a shutdown
            central.start()
        assert wait_until(lambda: central_count(central.url, key, "raw") >= READINGS, 120), \
            "everything forwarded"
        assert wait_until(lambda: read_status_lag(home) == 0, 30), "lag back to 0"
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    ids = await central_ids(central.url, key, "raw")
    assert len(ids) == READINGS
    assert len(set(ids)) == READINGS


def test_a_small_body_cannot_expand_past_the_limit(tmp_path: Path) -> None:
    import zstandard

    from server_fixtures import platform_settings, running_platform

    settings = platform_settings(f"sqlite:///{tmp_path / 'store.db'}", tmp_path,
                                 max_body_bytes="1MB")
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (20 << 20))
    assert len(bomb) < 10_000
    with running_platform(settings) as central, central.client() as http:
        http.put("/api/v1/topics/raw").raise_for_status()
        answer = http.post("/api/v1/topics/raw/messages/block", content=bomb,
                           headers={"content-type": BLOCK_CONTENT_TYPE,
                                    "content-encoding": "zstd"})
        assert answer.status_code == 413, answer.text
        assert "decompresses to more than the limit 1048576 bytes" in \
            answer.json()["error"]["message"]
        answer = http.post("/api/v1/topics/raw/messages/block", content=b"x",
                           headers={"content-type": BLOCK_CONTENT_TYPE,
                                    "content-encoding": "gzip"})
        assert answer.status_code == 422
        assert "content-encoding" in answer.json()["error"]["message"]
        answer = http.post("/api/v1/topics/raw/messages/block", content=b"not arrow",
                           headers={"content-type": BLOCK_CONTENT_TYPE})
        assert answer.status_code == 422
        assert "Arrow IPC" in answer.json()["error"]["message"]
        assert http.get("/api/v1/topics/raw").json()["last_seqno"] == 0
