"""A task's process: its own group, pause/resume, stop with grace, no forked leftovers,
output in chunks, memory and CPU limits; each spawned directly and forked by a launcher."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lakeport.tasks.launching import Launcher, Launchers
from lakeport.tasks.process import Limits, LogTail, TaskProcess
from waiting import eventually

pytestmark = pytest.mark.timeout(60)

COUNTER = """
import sys, time
n = 0
while True:
    n += 1
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(n))
    import os; os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(0.01)
"""


class Output:
    def __init__(self) -> None:
        self.chunks: list[tuple[str, bytes]] = []

    async def __call__(self, stream: str, chunk: bytes) -> None:
        self.chunks.append((stream, chunk))

    def text(self, stream: str) -> str:
        return b"".join(chunk for name, chunk in self.chunks if name == stream).decode()


@pytest.fixture(params=["direct", "launcher"])
async def launcher(request: pytest.FixtureRequest) -> AsyncIterator[Launcher | None]:
    """None (spawned by the test process) or a launcher that forks the task."""
    if request.param == "direct":
        yield None
        return
    launchers = Launchers()
    try:
        found = await launchers.get(sys.executable)
        assert found is not None
        yield found
    finally:
        await launchers.close()


async def start(tmp_path: Path, launcher: Launcher | None, code: str, *args: str,
                limits: Limits = Limits(), output: Output | None = None) -> TaskProcess:
    return await TaskProcess.start([sys.executable, "-c", code, *args], cwd=tmp_path,
                                   env=dict(os.environ), limits=limits,
                                   on_output=output or Output(), launcher=launcher)


def state(pid: int) -> str | None:
    """The process's state letter (R, S, T, Z, ...), None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def counter(path: Path) -> int:
    try:
        return int(path.read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


async def test_output_arrives_in_chunks_and_the_process_has_its_own_group(
        tmp_path: Path, launcher: Launcher | None) -> None:
    output = Output()
    process = await start(tmp_path, launcher, "import os, sys; print('hello'); "
                          "print('oops', file=sys.stderr); print(os.getpgid(0), os.getsid(0))",
                          output=output)
    assert await process.wait() == 0
    out = output.text("stdout").split()
    assert out[0] == "hello" and out[1:] == [str(process.pid)] * 2
    assert output.text("stderr") == "oops\n"
    assert os.getpgid(0) != process.pid
    assert process.started_ns > 0


async def test_stdin_is_empty_and_the_env_is_the_given_one(
        tmp_path: Path, launcher: Launcher | None) -> None:
    output = Output()
    process = await TaskProcess.start(
        [sys.executable, "-c", "import os, sys; print(repr(sys.stdin.read()), "
         "os.environ.get('ONLY'), os.getcwd())"],
        cwd=tmp_path, env={"ONLY": "this"}, limits=Limits(), on_output=output, launcher=launcher)
    assert await process.wait() == 0
    assert output.text("stdout").strip() == f"'' this {tmp_path}"


async def test_pause_stops_progress_and_resume_lets_it_go_on(
        tmp_path: Path, launcher: Launcher | None) -> None:
    file = tmp_path / "count"
    process = await start(tmp_path, launcher, COUNTER, str(file))
    try:
        assert await eventually(lambda: counter(file) > 3), "the counter to start"
        process.pause()
        assert await eventually(lambda: state(process.pid) == "T"), "the process to stop"
        frozen = counter(file)
        assert not await eventually(lambda: counter(file) != frozen, timeout=0.5), \
            "the counter moved while paused"
        process.resume()
        assert await eventually(lambda: counter(file) > frozen + 3), "the counter to go on"
    finally:
        await process.stop(grace=1)
        await process.wait()


async def test_stop_terminates_politely(tmp_path: Path, launcher: Launcher | None) -> None:
    output = Output()
    process = await start(tmp_path, launcher, "import signal, sys, time\n"
                          "def bye(*a): print('bye', flush=True); sys.exit(3)\n"
                          "signal.signal(signal.SIGTERM, bye)\nprint('up', flush=True)\n"
                          "time.sleep(60)", output=output)
    assert await eventually(lambda: output.text("stdout") == "up\n")
    await process.stop(grace=10)
    assert await process.wait() == 3
    assert output.text("stdout") == "up\nbye\n"


async def test_stop_kills_after_the_grace_a_child_ignoring_sigterm(
        tmp_path: Path, launcher: Launcher | None) -> None:
    output = Output()
    process = await start(tmp_path, launcher, "import signal, time\n"
                          "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                          "print('up', flush=True)\ntime.sleep(60)", output=output)
    assert await eventually(lambda: output.text("stdout") == "up\n")
    await process.stop(grace=0.5)
    assert await process.wait() == -signal.SIGKILL


async def test_stop_of_a_paused_process(tmp_path: Path, launcher: Launcher | None) -> None:
    process = await start(tmp_path, launcher, "import time; time.sleep(60)")
    process.pause()
    await process.stop(grace=10)
    assert await process.wait() == -signal.SIGTERM


async def test_a_forked_child_does_not_outlive_the_task(
        tmp_path: Path, launcher: Launcher | None) -> None:
    output = Output()
    process = await TaskProcess.start(
        ["sh", "-c", "sleep 300 & echo $!; exit 0"], cwd=tmp_path, env=dict(os.environ),
        limits=Limits(), on_output=output, launcher=launcher)
    assert await process.wait() == 0
    child = int(output.text("stdout"))
    assert await eventually(lambda: state(child) in (None, "Z")), "the forked child to die"


async def test_a_memory_limit_makes_a_big_allocation_fail(
        tmp_path: Path, launcher: Launcher | None) -> None:
    output = Output()
    process = await start(tmp_path, launcher, "x = bytearray(400 * 1024 * 1024)",
                          limits=Limits(memory_mb=200), output=output)
    assert await process.wait() != 0
    assert "MemoryError" in output.text("stderr")


async def test_a_cpu_limit_ends_a_busy_loop(tmp_path: Path, launcher: Launcher | None) -> None:
    process = await start(tmp_path, launcher, "while True: pass", limits=Limits(cpu_seconds=1))
    assert await process.wait() in (-signal.SIGXCPU, -signal.SIGKILL)


def test_log_tail_keeps_the_tail_and_counts_what_it_dropped() -> None:
    tail = LogTail(5)
    tail.add(b"abc")
    tail.add(b"defg")
    assert (tail.bytes(), tail.dropped, tail.total) == (b"cdefg", 2, 7)
