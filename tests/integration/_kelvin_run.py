"""Running ``lakeport`` as a user does for the tests of vendor-SDK apps: ``app run`` in a
subprocess with a lakeport home whose app environments outlive the test session, and reading
back what landed on a topic."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kelvin_sdk import ENVIRONMENTS
from lakeport.streams import open_engine

LAKEPORT = [sys.executable, "-m", "lakeport.cli"]


# -- the vendor SDK's environment ----------------------------------------------------------
@pytest.fixture(scope="module")
def kelvin_home(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lakeport home whose app environments are the shared ones, where ``vendor_python``
    built the fixtures' environment (their requirements.txt is the same file)."""
    request.getfixturevalue("vendor_python")  # built, or the test skips with the reason
    home = tmp_path_factory.mktemp("kelvin-home")
    (home / "app-envs").symlink_to(ENVIRONMENTS, target_is_directory=True)
    return home


# -- running lakeport as a user does -------------------------------------------------------
class Lakeport:
    """``lakeport`` commands against one streams URL, with the vendor environment's home."""

    def __init__(self, home: Path, url: str, logs: Path) -> None:
        self.env = {**os.environ, "LAKEPORT_HOME": str(home), "LAKEPORT_STREAMS": url}
        self.url = url
        self.logs = logs

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*LAKEPORT, *args], env=self.env, capture_output=True, text=True,
                              timeout=120)
        if check and done.returncode != 0:
            pytest.fail(f"lakeport {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
        return done

    def start_app(self, folder: Path, *args: str, **env: str) -> AppRun:
        return AppRun([*LAKEPORT, "app", "run", str(folder), *args], {**self.env, **env},
                      self.logs / f"app-run-{time.monotonic_ns()}.log")


class AppRun:
    """``lakeport app run`` in a subprocess."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out,
                                            stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def alive(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"lakeport app run exited {self.process.returncode}:\n{self.output()}")
        return True

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()



def payloads(url: str, topic: str) -> list[Any]:
    """Every payload on ``topic`` so far (none if it does not exist)."""

    async def read() -> list[Any]:
        async with open_engine(url) as engine:
            if topic not in {info.name for info in await engine.list_topics()}:
                return []
            reader = engine.consumer(f"test-{time.monotonic_ns()}", topic,
                                     position="beginning", follow=False, ephemeral=True)
            async with reader:
                return [message.payload async for message in reader]

    return asyncio.run(read())



def gone(pid: int) -> bool:
    """Whether process ``pid`` ended (a zombie nobody reaped counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state in ("Z", "X")


