"""An app process killed mid-stream loses nothing; one stopped with SIGTERM finishes its work.

The app runs as its own process on the embedded ``file://`` engine, as ``lakeport app run``
would start it; the test reads the topic's acks from outside.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from lakeport.apps import Number
from lakeport.streams import open_engine

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

APP_YAML = {
    "spec_version": "5.0.0",
    "type": "app",
    "name": "crash-test",
    "version": "1.0.0",
    "data_streams": {"inputs": [{"name": "temperature", "data_type": "number"}]},
}

MAIN = '''
import asyncio, os
from lakeport.apps import App

app = App()
out = open(os.environ["OUT_FILE"], "a", buffering=1)
delay = float(os.environ.get("DELAY", "0"))

@app.stream(inputs=["temperature"])
async def record(message):
    out.write(f"start {int(message.value)}\\n")
    await asyncio.sleep(delay)
    out.write(f"done {int(message.value)}\\n")

asyncio.run(app.run())
'''


class AppProcess:
    """The app of ``folder`` running in a subprocess."""

    def __init__(self, folder: Path, streams: str, out: Path, delay: float) -> None:
        env = {**os.environ, "LAKEPORT_APP_DIR": str(folder), "LAKEPORT_STREAMS": streams,
               "OUT_FILE": str(out), "DELAY": str(delay)}
        self.log = folder / f"stderr-{time.monotonic_ns()}.txt"
        with self.log.open("wb") as stderr:
            self.process = subprocess.Popen([sys.executable, str(folder / "main.py")], env=env,
                                            cwd=folder, stdout=subprocess.DEVNULL, stderr=stderr)

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(f"the app exited with {self.process.returncode}:\n"
                        f"{self.log.read_text()[-3000:]}")

    def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=30)


@pytest.fixture
def app_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "crash-test"
    folder.mkdir()
    (folder / "app.yaml").write_text(json.dumps(APP_YAML))
    (folder / "main.py").write_text(MAIN)
    return folder


def done_values(out: Path) -> list[int]:
    if not out.exists():
        return []
    return [int(line.split()[1]) for line in out.read_text().splitlines()
            if line.startswith("done ")]


async def acked(streams: str) -> int:
    async with open_engine(streams) as engine:
        info = await engine.topic_info("asset-data")
    return next((c.acked for c in info.consumers if c.name == "crash-test"), 0)


async def wait_for(app: AppProcess, condition: Callable[[], Awaitable[bool]],
                   timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        app.check_alive()
        if time.monotonic() > deadline:
            pytest.fail(f"timed out; app log:\n{app.log.read_text()[-3000:]}")
        await asyncio.sleep(0.05)


async def publish(streams: str, count: int) -> list[int]:
    async with open_engine(streams) as engine:
        async with engine.producer("sensor", "asset-data") as producer:
            return await producer.produce_many([
                Number(asset="pump-1", datastream="temperature", value=i).to_payload()
                for i in range(count)
            ])


async def test_sigkill_mid_stream_then_restart_loses_no_message(app_folder: Path,
                                                                tmp_path: Path) -> None:
    streams = (tmp_path / "streams").as_uri()
    out = tmp_path / "out.txt"
    count = 400
    seqnos = await publish(streams, count)

    first = AppProcess(app_folder, streams, out, delay=0.005)
    try:
        async def some_done() -> bool:
            return len(done_values(out)) >= 50
        await wait_for(first, some_done)
    finally:
        first.process.kill()
        first.process.wait(timeout=30)
    acked_at_kill = await acked(streams)
    done_before_restart = len(done_values(out))
    assert acked_at_kill < seqnos[-1], "the app was killed after it had finished"

    second = AppProcess(app_folder, streams, out, delay=0)
    try:
        async def all_acked() -> bool:
            return await acked(streams) == seqnos[-1]
        await wait_for(second, all_acked)
    finally:
        assert second.stop(signal.SIGTERM) == 0
    handled = done_values(out)
    assert set(handled) == set(range(count))  # nothing lost; duplicates are allowed
    # the restart resumed after the last ack: it handled exactly the unacked messages
    assert len(handled) - done_before_restart == count - acked_at_kill


async def test_sigterm_lets_the_handler_finish_and_acks_its_message(app_folder: Path,
                                                                   tmp_path: Path) -> None:
    streams = (tmp_path / "streams").as_uri()
    out = tmp_path / "out.txt"
    await publish(streams, 5)
    app = AppProcess(app_folder, streams, out, delay=1.0)

    async def started() -> bool:
        return out.exists() and "start" in out.read_text()
    await wait_for(app, started)
    assert app.stop(signal.SIGTERM) == 0
    lines = out.read_text().splitlines()
    assert lines == ["start 0", "done 0"]  # finished, and nothing new taken after the signal
    assert await acked(streams) == 1
