"""``lakeport serve`` processes for ``bench/server.py``: start on a free port, an API key, RSS."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

PG_ADMIN = os.environ.get("LAKEPORT_BENCH_POSTGRES",
                          "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.Error:
        return 0.0


def cpu_seconds(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds (user + system) used so far: by each group's processes themselves, by
    the processes they started ("<group> children": a worker's launchers, with the task
    processes they reaped), and by this process ("client")."""
    import psutil

    used: dict[str, float] = {"client": sum(os.times()[:2])}
    for group, pids in groups.items():
        own = children = 0.0
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(pid)
                times = process.cpu_times()
                own += times.user + times.system
                for child in process.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        times = child.cpu_times()
                        children += (times.user + times.system + times.children_user
                                     + times.children_system)
        used[group] = own
        used[f"{group} children"] = children
    return used


def lakeport(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "lakeport.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"lakeport {' '.join(args)}: {done.stderr.strip()[-300:]}")
    return done.stdout.strip()


def wait_healthy(process: subprocess.Popen[bytes], url: str, name: str,
                 stop: Any, seconds: float = 60) -> None:
    """Wait until ``url/health`` answers 200; when the process ends or time runs out, call
    ``stop`` and raise with the end of its stderr."""
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            err = process.stderr.read().decode() if process.stderr else ""
            stop()
            raise RuntimeError(f"{name} did not start: {err.strip()[-300:]}")
        time.sleep(0.1)


def stop_process(process: subprocess.Popen[bytes] | None, seconds: float = 20) -> None:
    """Terminate ``process`` if it still runs; kill it if it has not ended after ``seconds``."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class ServerProcess:
    """``lakeport serve`` on ``store_url`` with its own home, lake and streams under ``folder``."""

    def __init__(self, folder: Path, store_url: str, args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None) -> None:
        """``args``: more ``lakeport serve`` options; ``env``: more environment variables."""
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = list(args)
        self.env = {**os.environ, "LAKEPORT_HOME": str(folder / "home"),
                    "LAKEPORT_STORE": store_url, **(env or {})}
        self.env.pop("LAKEPORT_STREAMS", None)
        self.key = ""
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def __enter__(self) -> ServerProcess:
        self.key = lakeport("keys", "create", "--user", "bench", env=self.env)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lakeport.cli", "serve", "--port", str(self.port),
             *self.args],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_healthy(self.process, self.url, "lakeport serve", self.__exit__)
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.process)

    def client(self, **options: Any) -> httpx.Client:
        options.setdefault("timeout", 120)
        return httpx.Client(base_url=self.url, headers={"x-api-key": self.key}, **options)


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A database made for the run on the machine's PostgreSQL, dropped afterwards."""
    name = f"lakeport_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
