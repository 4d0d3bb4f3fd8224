"""The file rows of ``bench/server.py``: a large file up and down through the client, side by
side with ``cp`` and with the same client on a bare uvicorn app and on a raw socket.

Every step starts after a ``sync`` (nothing waiting to be written back), and each figure is
the best of the rounds, ``cp`` included, so the ratios compare like with like.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _server_runner import ServerProcess, free_port, rss_mb, stop_process, wait_healthy
from lakeport.durable import fsync_path

BENCH = Path(__file__).resolve().parent


@dataclass
class Transfer:
    """Best seconds per step over the rounds; ``rss_growth_mb`` of the lakeport server."""

    size_mb: float
    cp: float = math.inf
    cp_fsync: float = math.inf  # cp, then fsync of the copy: on the disk, as an upload is
    upload: float = math.inf
    download: float = math.inf
    bare_upload: float = math.inf
    bare_download: float = math.inf
    raw_socket: float = math.inf
    rss_growth_mb: float = 0.0

    def keep(self, step: str, seconds: float) -> None:
        setattr(self, step, min(getattr(self, step), seconds))


def make_file(path: Path, megabytes: int) -> None:
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as out:
        for _ in range(megabytes):
            out.write(chunk)


def timed(step: Callable[[], object]) -> float:
    """Seconds ``step`` takes, started with nothing waiting to be written back."""
    os.sync()
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def raw_socket_copy(source: Path, target: Path) -> None:
    """The bytes over a plain loopback TCP socket into a file, in Python: no HTTP at all."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def receive() -> None:
        conn, _ = listener.accept()
        view = memoryview(bytearray(4 << 20))
        with conn, open(target, "wb", buffering=0) as out:
            while received := conn.recv_into(view):
                out.write(view[:received])

    receiver = threading.Thread(target=receive)
    receiver.start()
    with socket.create_connection(listener.getsockname()) as conn, open(source, "rb") as data:
        while block := data.read(4 << 20):
            conn.sendall(block)
    receiver.join()
    listener.close()


class RssSampler:
    """Samples a process's RSS in a thread while the block runs; ``peak`` in MB."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, rss_mb(self.pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


class BareServer:
    """uvicorn (as ``lakeport serve`` runs it) with ``_bare_app``: the ceiling of the stack."""

    def __init__(self, source: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.source = source
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BareServer:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH), "--port", str(self.port),
             "--log-level", "error", "_bare_app:app"],
            env={**os.environ, "LAKEPORT_BENCH_SOURCE": str(self.source)},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_healthy(self.process, self.url, "the bare uvicorn app", self.__exit__)
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.process)


def measure_transfers(server: ServerProcess, folder: Path, megabytes: int, rounds: int,
                      say: Callable[[str], None]) -> Transfer:
    """Upload and download a ``megabytes`` file ``rounds`` times, each step beside the others."""
    from lakeport.client import SyncClient

    source, copy, target = folder / "big.bin", folder / "copy.bin", folder / "down.bin"
    make_file(source, megabytes)
    result = Transfer(float(megabytes))
    before = rss_mb(server.pid)
    with (BareServer(source) as bare, SyncClient(server.url, server.key, timeout=600) as client,
          SyncClient(bare.url, "unused", timeout=600) as bare_client,
          RssSampler(server.pid) as sampling):
        for number in range(1, rounds + 1):
            say(f"file transfer of {megabytes:,} MB: round {number} of {rounds}")
            copied = timed(lambda: subprocess.run(["cp", source, copy], check=True))
            result.keep("cp", copied)
            start = time.perf_counter()
            fsync_path(copy)
            fsync_path(copy.parent)
            result.keep("cp_fsync", copied + time.perf_counter() - start)
            copy.unlink()
            result.keep("upload", timed(
                lambda: client.datalake.put("bench/big.bin", source, overwrite=True)))
            result.keep("download", timed(lambda: client.datalake.get("bench/big.bin", target)))
            if target.stat().st_size != source.stat().st_size:
                raise RuntimeError("the downloaded file differs in size")
            target.unlink()
            result.keep("bare_upload", timed(lambda: bare_client.datalake.put("big.bin", source)))
            result.keep("bare_download", timed(lambda: bare_client.datalake.get("big.bin", target)))
            target.unlink()
            result.keep("raw_socket", timed(lambda: raw_socket_copy(source, target)))
            target.unlink()
    result.rss_growth_mb = max(sampling.peak, before) - before
    return result


__all__ = ["Transfer", "measure_transfers"]
