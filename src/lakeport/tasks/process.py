"""A task's child process: its own process group, resource limits, output in chunks.

The child starts in a new session (so its process group is its own and signals reach every
process it forks), with ``stdin`` from ``/dev/null`` and the limits of :class:`Limits` set
before it runs (``RLIMIT_AS`` for memory, ``RLIMIT_CPU`` for CPU time: the kernel sends
``SIGXCPU`` at the limit and ``SIGKILL`` a second later). Its stdout and stderr are read in
chunks and handed to ``on_output`` as they come. :meth:`TaskProcess.wait` kills what is left
of the group once the leader exited, so forked children never outlive the task (a child that
starts a session of its own escapes this; containers or cgroups are the fence for that).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import inspect
import logging
import os
import resource
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lakeport.tasks.launching import Launcher

log = logging.getLogger(__name__)
OnOutput = Callable[[str, bytes], Awaitable[None] | None]
CHUNK = 64 * 1024
DRAIN = 5.0  # seconds to wait for the pipes to close once the group is killed


@dataclass(frozen=True)
class Limits:
    """Resource limits of a task's processes (each process of the group gets them)."""

    memory_mb: int | None = None  # RLIMIT_AS: address space, in MiB
    cpu_seconds: int | None = None  # RLIMIT_CPU: CPU time of each process


class TaskProcess:
    """A running task; start it with :meth:`start`."""

    def __init__(self, pid: int, exited: asyncio.Event, returncode: Callable[[], int | None],
                 readers: list[asyncio.Task[None]], started_ns: int,
                 close: Callable[[], None], kill_group: bool = True) -> None:
        self._exited = exited  # set when the leader exited (pipes may still be open)
        self._returncode = returncode
        self._readers = readers
        self._close = close
        self._kill_group = kill_group  # False: the launcher killed the group before reaping
        self._done = False  # wait() returned: the group id may be reused, no more signals
        self.pid = pid
        self.started_ns = started_ns
        self.paused = False

    @classmethod
    async def start(cls, argv: list[str], *, cwd: Path, env: dict[str, str], limits: Limits,
                    on_output: OnOutput, launcher: Launcher | None = None,
                    python: bool = False) -> TaskProcess:
        """Spawn ``argv`` in ``cwd`` with exactly ``env`` as its environment: forked by
        ``launcher`` when given (in python mode when ``python``, see
        :mod:`lakeport.tasks.launcher`), else spawned from this process.

        Raises ``OSError`` (e.g. ``FileNotFoundError``) when the program cannot be started."""
        if launcher is not None:
            from lakeport.tasks.launching import LauncherGone

            try:
                return await cls._launch(launcher, argv, cwd=cwd, env=env, limits=limits,
                                         on_output=on_output, python=python)
            except LauncherGone as exc:
                log.warning("%s: starting the task directly", exc)
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.subprocess_exec(
            lambda: _Protocol(loop), *argv, cwd=str(cwd), env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True,
            preexec_fn=_limiter(limits))
        started_ns = time.time_ns()
        process = asyncio.subprocess.Process(transport, protocol, loop)
        assert process.stdout is not None and process.stderr is not None
        readers = [asyncio.create_task(_pump(stream, name, on_output))
                   for name, stream in (("stdout", process.stdout),
                                        ("stderr", process.stderr))]
        return cls(process.pid, protocol.exited, lambda: process.returncode, readers,
                   started_ns, transport.close)

    @classmethod
    async def _launch(cls, launcher: Launcher, argv: list[str], *, cwd: Path,
                      env: dict[str, str], limits: Limits, on_output: OnOutput,
                      python: bool) -> TaskProcess:
        loop = asyncio.get_running_loop()
        pipes = [os.pipe(), os.pipe()]  # (read, write) for stdout and stderr
        stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            run = await launcher.launch(
                argv, cwd=str(cwd), env=env, limits=dataclasses.asdict(limits),
                python=python, fds=[stdin, pipes[0][1], pipes[1][1]])
        except BaseException:
            for read, _ in pipes:
                os.close(read)
            raise
        finally:
            os.close(stdin)
            for _, write in pipes:
                os.close(write)
        started_ns = time.time_ns()
        transports: list[asyncio.BaseTransport] = []
        readers = []
        for name, (read, _) in zip(("stdout", "stderr"), pipes, strict=True):
            stream = asyncio.StreamReader(limit=CHUNK)
            transport, _ = await loop.connect_read_pipe(
                lambda s=stream: asyncio.StreamReaderProtocol(s),
                open(read, "rb", buffering=0))  # noqa: SIM115 - the transport closes it
            transports.append(transport)
            readers.append(asyncio.create_task(_pump(stream, name, on_output)))

        def close() -> None:
            for transport in transports:
                transport.close()

        return cls(run.pid, run.exited, lambda: run.returncode, readers, started_ns, close,
                   kill_group=False)

    @property
    def returncode(self) -> int | None:
        return self._returncode()

    def pause(self) -> None:
        """Stop every process of the group (SIGSTOP)."""
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """Let the group go on (SIGCONT)."""
        self._signal(signal.SIGCONT)
        self.paused = False

    async def stop(self, grace: float) -> None:
        """SIGTERM to the group, SIGKILL to it when the leader has not exited after ``grace``."""
        self._signal(signal.SIGTERM)
        if self.paused:
            self.resume()
        try:
            await asyncio.wait_for(self._exited.wait(), grace)
        except TimeoutError:
            self._signal(signal.SIGKILL)
            await self._exited.wait()

    async def wait(self) -> int:
        """The exit code (``-N`` for signal N) once the leader exited, the rest of its group
        is killed and both pipes are drained."""
        await self._exited.wait()
        code = self.returncode
        assert code is not None
        if self._kill_group:
            self._signal(signal.SIGKILL)  # what the task forked and left behind
        self._done = True
        _, pending = await asyncio.wait(self._readers, timeout=DRAIN)
        for reader in pending:  # a process that left the group still holds a pipe
            reader.cancel()
        for reader in self._readers:
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        self._close()
        return code

    def _signal(self, number: int) -> None:
        if self._done:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, number)


class LogTail:
    """The last ``cap`` bytes of a stream, and how many bytes before them were dropped."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.dropped = 0
        self._data = bytearray()

    def add(self, chunk: bytes) -> None:
        self._data += chunk
        over = len(self._data) - self.cap
        if over > 0:
            del self._data[:over]
            self.dropped += over

    @property
    def total(self) -> int:
        """Bytes seen in all."""
        return self.dropped + len(self._data)

    def bytes(self) -> bytes:
        return bytes(self._data)


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """asyncio's protocol, telling when the process exited even while its pipes are open
    (``Process.wait()`` waits for the pipes too: a forked child holding them would block)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=CHUNK, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


def _die_with_parent() -> Callable[[], object] | None:
    """Linux's ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, to run in a forked child before ``exec``:
    the child is killed when the thread that started it ends (a worker killed with ``kill -9``
    takes its tasks with it). None where there is no ``prctl``."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


DIE_WITH_PARENT = _die_with_parent()
"""A ``preexec_fn`` that ties a child's life to its parent's (None off Linux)."""


def _limiter(limits: Limits) -> Callable[[], None]:
    """The function the child runs before ``exec``: dies with its parent, and its limits."""
    memory = None if limits.memory_mb is None else limits.memory_mb * 1024 * 1024
    cpu = limits.cpu_seconds
    die = DIE_WITH_PARENT

    def limit() -> None:  # runs in the forked child: no allocation-heavy work here
        if die is not None:
            die()
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        if cpu is not None:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))

    return limit


async def _pump(stream: asyncio.StreamReader, name: str, on_output: OnOutput) -> None:
    while chunk := await stream.read(CHUNK):
        try:
            result = on_output(name, chunk)
            if inspect.isawaitable(result):
                await result
        except Exception:  # keep draining: a full pipe would block the task
            log.exception("handling %s output of a task failed", name)


__all__ = ["DIE_WITH_PARENT", "Limits", "LogTail", "TaskProcess"]
