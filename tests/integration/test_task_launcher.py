"""The launcher (fork server) of task processes: python mode runs a ``py`` task as
``python -u main.py`` would, other programs are ``exec``'d, a launcher that dies takes its
tasks along and is started again, and a killed worker takes its launcher and tasks along."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lakeport.tasks.launching import Launcher, Launchers
from lakeport.tasks.process import Limits, TaskProcess
from waiting import eventually, wait_until

pytestmark = pytest.mark.timeout(60)
FORKED = "import sys; print('forked' if 'selectors' in sys.modules else 'fresh')\n"
"""Prints how the task started: the launcher imported ``selectors``, a fresh interpreter
does not."""


class Output:
    def __init__(self) -> None:
        self.chunks: list[tuple[str, bytes]] = []

    def __call__(self, stream: str, chunk: bytes) -> None:
        self.chunks.append((stream, chunk))

    def text(self, stream: str) -> str:
        return b"".join(chunk for name, chunk in self.chunks if name == stream).decode()


@pytest.fixture
async def launchers() -> AsyncIterator[Launchers]:
    found = Launchers()
    try:
        yield found
    finally:
        await found.close()


@pytest.fixture
async def launcher(launchers: Launchers) -> Launcher:
    found = await launchers.get(sys.executable)
    assert found is not None
    return found


def task_env(**more: str) -> dict[str, str]:
    """A task's environment as a worker makes it (its LANG and LC_ALL among a few)."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "LC_ALL")
           if name in os.environ}
    env.update(more)
    return env


async def start_py(tmp_path: Path, launcher: Launcher | None, code: str, *args: str,
                   env: dict[str, str] | None = None, limits: Limits = Limits(),
                   output: Output | None = None) -> TaskProcess:
    folder = tmp_path / "code"
    folder.mkdir(exist_ok=True)
    (folder / "main.py").write_text(textwrap.dedent(code))
    return await TaskProcess.start([sys.executable, "-u", "main.py", *args], cwd=folder,
                                   env=task_env() if env is None else env, limits=limits,
                                   on_output=output or Output(), launcher=launcher,
                                   python=True)


async def run_py(tmp_path: Path, launcher: Launcher | None, code: str, *args: str,
                 env: dict[str, str] | None = None, limits: Limits = Limits()
                 ) -> tuple[int, Output]:
    output = Output()
    process = await start_py(tmp_path, launcher, code, *args, env=env, limits=limits,
                             output=output)
    return await process.wait(), output


def gone(pid: int) -> bool:
    """The process ended (a zombie no one reaped yet counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


async def test_python_mode_runs_the_entry_as_main_with_exactly_the_env(
        tmp_path: Path, launcher: Launcher) -> None:
    code = """
    import json, os, sys
    print(json.dumps({"name": __name__, "file": __file__, "argv": sys.argv,
                      "path0": sys.path[0], "cwd": os.getcwd(), "env": dict(os.environ),
                      "forked": "selectors" in sys.modules}))
    """
    env = task_env(ONLY="this")
    result, output = await run_py(tmp_path, launcher, code, "a", "b c", env=env)
    assert result == 0, output.text("stderr")
    folder = tmp_path / "code"
    assert json.loads(output.text("stdout")) == {
        "name": "__main__", "file": str(folder / "main.py"), "argv": ["main.py", "a", "b c"],
        "path0": str(folder), "cwd": str(folder), "env": env, "forked": True}


@pytest.mark.parametrize(("code", "expected", "stderr"), [
    ("import sys\nsys.exit(3)\n", 3, ""),
    ("import sys\nsys.exit('no luck')\n", 1, "no luck\n"),
    ("raise SystemExit\n", 0, ""),
])
async def test_exit_codes_are_those_of_a_fresh_interpreter(
        tmp_path: Path, launcher: Launcher, code: str, expected: int, stderr: str) -> None:
    result, output = await run_py(tmp_path, launcher, FORKED + code)
    assert (result, output.text("stderr")) == (expected, stderr)
    assert output.text("stdout") == "forked\n"


@pytest.mark.parametrize("code", [
    "open('left-open.txt', 'w').write('kept')\nkeep = open('held.txt', 'w')\n"
    "keep.write('held')\nprint('no newline', end='')\n",
    "import atexit\natexit.register(print, 'at exit')\nraise KeyboardInterrupt\n",
    "import threading, time\nthreading.Thread(target=lambda: (time.sleep(0.2), "
    "print('late'))).start()\nraise SystemExit(4)\n",
], ids=["files-left-open", "interrupted", "thread-outlives-exit"])
async def test_the_end_of_a_run_is_that_of_a_fresh_interpreter(
        tmp_path: Path, launcher: Launcher, code: str) -> None:
    """Files the script left open are flushed, output without a newline arrives, ^C ends it
    by SIGINT after atexit, threads are joined before the exit code: as python -u main.py."""
    ends = []
    for where, through in (("fresh", None), ("forked", launcher)):
        (tmp_path / where).mkdir()
        result, output = await run_py(tmp_path / where, through, code)
        files = {path.name: path.read_text()
                 for path in (tmp_path / where / "code").glob("*.txt")}
        stderr = output.text("stderr").replace(str(tmp_path / where), "<folder>")
        ends.append((result, output.text("stdout"), stderr, files))
    assert ends[0] == ends[1]


async def test_an_exception_prints_the_tasks_traceback_and_exits_1(
        tmp_path: Path, launcher: Launcher) -> None:
    code = FORKED + "def fail():\n    raise ValueError('boom')\n\nfail()\n"
    result, output = await run_py(tmp_path, launcher, code)
    stderr = output.text("stderr")
    assert result == 1 and output.text("stdout") == "forked\n"
    main = tmp_path / "code" / "main.py"
    assert stderr == (f"Traceback (most recent call last):\n  File \"{main}\", line 5, in "
                      f"<module>\n    fail()\n  File \"{main}\", line 3, in fail\n"
                      f"    raise ValueError('boom')\nValueError: boom\n")
    assert "launcher" not in stderr and "runpy" not in stderr


async def test_sigterm_ends_a_python_mode_task_with_minus_15(
        tmp_path: Path, launcher: Launcher) -> None:
    output = Output()
    process = await start_py(tmp_path, launcher, FORKED + "import time\ntime.sleep(60)\n",
                             output=output)
    assert await eventually(lambda: output.text("stdout") == "forked\n")
    await process.stop(grace=10)
    assert await process.wait() == -signal.SIGTERM


async def test_atexit_handlers_run_and_threads_are_joined(
        tmp_path: Path, launcher: Launcher) -> None:
    code = FORKED + textwrap.dedent("""
        import atexit, threading, time
        atexit.register(print, "atexit ran")
        def late():
            time.sleep(0.3)
            print("thread done")
        threading.Thread(target=late).start()
        print("main done")
        """)
    result, output = await run_py(tmp_path, launcher, code)
    assert result == 0, output.text("stderr")
    assert output.text("stdout") == "forked\nmain done\nthread done\natexit ran\n"


async def test_two_runs_draw_different_random_numbers(tmp_path: Path,
                                                      launcher: Launcher) -> None:
    code = FORKED + "import random\nprint(random.random())\n"
    draws = set()
    for _ in range(2):
        result, output = await run_py(tmp_path, launcher, code)
        assert result == 0, output.text("stderr")
        forked, draw = output.text("stdout").split()
        assert forked == "forked"
        draws.add(draw)
    assert len(draws) == 2


async def test_requests_of_any_size_get_through(tmp_path: Path, launcher: Launcher) -> None:
    """Megabytes of arguments and environment (more than the socket buffer holds: sent in
    parts), several starts at once."""
    args = [f"{index}:" + "a" * 100_000 for index in range(20)]
    env = task_env(BIG="b" * 1_000_000)
    code = FORKED + "import os\nprint(len(sys.argv), sum(map(len, sys.argv)), " \
        "len(os.environ['BIG']))\n"
    results = await asyncio.gather(*(run_py(tmp_path, launcher, code, *args, env=env)
                                     for _ in range(4)))
    expected = f"forked\n21 {len('main.py') + sum(map(len, args))} 1000000\n"
    assert [(code, output.text("stdout")) for code, output in results] == \
        [(0, expected)] * 4


async def test_pythonpath_in_the_env_runs_a_fresh_interpreter(
        tmp_path: Path, launcher: Launcher) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "helper.py").write_text("WHO = 'helper'\n")
    result, output = await run_py(tmp_path, launcher, FORKED + "import helper\nprint(helper.WHO)\n",
                                  env=task_env(PYTHONPATH=str(lib)))
    assert result == 0, output.text("stderr")
    assert output.text("stdout") == "fresh\nhelper\n"


async def test_another_interpreter_or_form_is_execd(tmp_path: Path,
                                                    launcher: Launcher) -> None:
    output = Output()
    process = await TaskProcess.start([sys.executable, "-c", FORKED], cwd=tmp_path,
                                       env=task_env(), limits=Limits(), on_output=output,
                                       launcher=launcher, python=True)
    assert await process.wait() == 0
    assert output.text("stdout") == "fresh\n"


async def test_a_missing_or_unrunnable_program_raises_as_subprocess_does(
        tmp_path: Path, launcher: Launcher) -> None:
    with pytest.raises(FileNotFoundError) as missing:
        await TaskProcess.start(["no-such-program-here", "x"], cwd=tmp_path, env=task_env(),
                                limits=Limits(), on_output=Output(), launcher=launcher)
    assert (missing.value.errno, missing.value.filename) == (2, "no-such-program-here")
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(PermissionError):
        await TaskProcess.start([str(script)], cwd=tmp_path, env=task_env(), limits=Limits(),
                                on_output=Output(), launcher=launcher)
    with pytest.raises(FileNotFoundError) as no_folder:
        await TaskProcess.start(["sh", "-c", "true"], cwd=tmp_path / "nowhere",
                                env=task_env(), limits=Limits(), on_output=Output(),
                                launcher=launcher)
    assert no_folder.value.filename == str(tmp_path / "nowhere")
    output = Output()  # the launcher still serves
    process = await TaskProcess.start(["sh", "-c", "echo still"], cwd=tmp_path,
                                      env=task_env(), limits=Limits(), on_output=output,
                                      launcher=launcher)
    assert await process.wait() == 0 and output.text("stdout") == "still\n"


@pytest.mark.parametrize("mode", ["python", "exec"])
async def test_limits_apply_in_both_modes(tmp_path: Path, launcher: Launcher,
                                          mode: str) -> None:
    env = task_env() if mode == "python" else task_env(PYTHONNOUSERSITE="1")
    result, output = await run_py(tmp_path, launcher,
                                  FORKED + "x = bytearray(400 * 1024 * 1024)\n", env=env,
                                  limits=Limits(memory_mb=200))
    assert result == 1 and "MemoryError" in output.text("stderr")
    assert output.text("stdout") == ("forked\n" if mode == "python" else "fresh\n")
    result, output = await run_py(tmp_path, launcher, "while True: pass\n", env=env,
                                  limits=Limits(cpu_seconds=1))
    assert result in (-signal.SIGXCPU, -signal.SIGKILL)


async def test_a_killed_launcher_takes_its_tasks_and_a_new_one_starts(
        tmp_path: Path, launchers: Launchers, launcher: Launcher) -> None:
    output = Output()
    process = await start_py(tmp_path, launcher, FORKED + "import time\ntime.sleep(60)\n",
                             output=output)
    assert await eventually(lambda: output.text("stdout") == "forked\n")
    os.kill(launcher.pid, signal.SIGKILL)
    assert await process.wait() == -signal.SIGKILL
    assert await eventually(lambda: gone(process.pid)), "the task to die with its launcher"
    again = await launchers.get(sys.executable)
    assert again is not None and again is not launcher and again.pid != launcher.pid
    result, output = await run_py(tmp_path, again, FORKED)
    assert (result, output.text("stdout")) == (0, "forked\n")


PARENT = """
import asyncio, os, sys, time
from pathlib import Path
from lakeport.tasks.launching import Launchers
from lakeport.tasks.process import Limits, TaskProcess

async def main():
    launchers = Launchers()
    launcher = await launchers.get(sys.executable)
    process = await TaskProcess.start([sys.executable, "-u", "main.py"], cwd=Path.cwd(),
                                      env=dict(os.environ), limits=Limits(),
                                      on_output=lambda *_: None, launcher=launcher,
                                      python=True)
    print(launcher.pid, process.pid, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def test_a_killed_worker_takes_its_launcher_and_tasks_along(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("import time\ntime.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=tmp_path,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        launcher_pid, task_pid = map(int, parent.stdout.readline().split())
        assert not gone(launcher_pid) and not gone(task_pid)
        parent.kill()
        parent.wait()
        assert wait_until(lambda: gone(launcher_pid), 10), "the launcher to die with its worker"
        assert wait_until(lambda: gone(task_pid), 10), "the task to die with its launcher"
    finally:
        parent.kill()
        parent.wait()
