"""Helpers for tests that start a real server process on a free loopback port."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator

from conftest import require_service


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def running(process: subprocess.Popen, port: int, service: str, what: str,
            start_timeout: float) -> Iterator[None]:
    """Wait until ``process`` accepts connections on ``port``; stop it afterwards."""
    try:
        deadline = time.monotonic() + start_timeout
        while not port_open(port):
            if process.poll() is not None or time.monotonic() > deadline:
                require_service(service, f"{what} did not start on port {port}")
            time.sleep(0.05)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
