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


def stop(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds (a process that exited is left alone)."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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
        stop(process, timeout=10)


@contextlib.contextmanager
def lakeport_server(command: list[str], env: dict[str, str] | None = None,
                    start_timeout: float = 60, port: int | None = None,
                    ) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``command`` (a ``lakeport serve``) with ``--port`` on ``port`` (a free one by
    default), once ``/health`` answers: its URL and process. Stopped afterwards (SIGTERM,
    then SIGKILL)."""
    import httpx

    port = port or free_port()
    process = subprocess.Popen([*command, "--port", str(port)], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                raise AssertionError(f"lakeport serve exited: {process.stderr.read()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"lakeport serve did not answer /health in "
                                     f"{start_timeout:g} s")
            time.sleep(0.1)
        yield url, process
    finally:
        stop(process, timeout=15)
