"""The worker's side of the launcher (:mod:`lakeport.tasks.launcher`, the fork server).

:class:`Launchers` keeps one :class:`Launcher` per interpreter, starts it when first needed
(``<python> -u launcher.py <fd>`` over a ``socketpair``, dying with the worker), starts a new
one when it died (the runs it had in flight end as killed by SIGKILL, ``-9``) and closes
them all when the worker stops. :meth:`Launcher.launch` never blocks the event loop: frames
go out on a non-blocking socket, the answers are read by a task of the launcher.
:class:`~lakeport.tasks.process.TaskProcess` uses it when given a launcher.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakeport.tasks.process import DIE_WITH_PARENT

log = logging.getLogger(__name__)
LAUNCHER_FILE = Path(__file__).with_name("launcher.py")
HEADER_SIZE = 4
RECEIVE = 64 * 1024
KEEP = 8  # launchers kept at most (the least recently used idle ones are closed)
CLOSE_WAIT = 5.0  # seconds a closed launcher has to exit before it is killed


class LauncherGone(OSError):
    """The launcher exited before it answered a request."""


@dataclass
class Launched:
    """A process a launcher started: its pid, and its returncode once it exited."""

    pid: int
    returncode: int | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)

    def end(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self.exited.set()


def launcher_env() -> dict[str, str]:
    """The launcher's environment: the worker's, with the variables Python reads at start-up
    set as a task's environment gets them (``LANG`` and ``LC_ALL`` only), so tasks that do
    not set their own run in python mode."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("PYTHON", "LC_")) and name != "LANG"}
    env.update({name: os.environ[name] for name in ("LANG", "LC_ALL") if name in os.environ})
    return env


class Launcher:
    """One launcher process and its socket; make it with :meth:`open`."""

    def __init__(self, python: str, popen: subprocess.Popen[bytes], sock: socket.socket
                 ) -> None:
        self.python = python
        self.popen = popen
        self.pid = popen.pid
        self.answered = False  # it answered a request: the interpreter can run it
        self._sock = sock
        self._ids = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._runs: dict[int, Launched] = {}
        self._sending = asyncio.Lock()
        self._deliveries: set[asyncio.Task[None]] = set()
        self._alive = True
        self._reader = asyncio.create_task(self._read())

    @classmethod
    def open(cls, python: str) -> Launcher:
        """Start a launcher running on ``python`` (from the event loop's thread: it dies
        when the thread that started it ends)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            popen = subprocess.Popen(
                [python, "-u", str(LAUNCHER_FILE), str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, cwd="/",
                env=launcher_env(), preexec_fn=DIE_WITH_PARENT)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        return cls(python, popen, ours)

    @property
    def alive(self) -> bool:
        return self._alive

    @property
    def running(self) -> int:
        """Processes started and not yet ended, and starts not yet answered."""
        return len(self._runs) + len(self._pending)

    async def launch(self, argv: list[str], *, cwd: str, env: dict[str, str],
                     limits: dict[str, int | None], python: bool, fds: list[int]
                     ) -> Launched:
        """Start ``argv`` with ``fds`` as its stdin, stdout and stderr (python mode when
        ``python``). Raises ``OSError`` as ``subprocess`` does when the program cannot be
        started, :class:`LauncherGone` when the launcher died first."""
        if not self._alive:
            raise LauncherGone(f"the launcher of {self.python} exited")
        loop = asyncio.get_running_loop()
        self._ids += 1
        number = self._ids
        body = json.dumps({"id": number, "argv": argv, "cwd": cwd, "env": env,
                           "limits": limits, "python": python}).encode()
        answer: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending[number] = answer
        frame = len(body).to_bytes(HEADER_SIZE, "big") + body
        # the frame goes out whole even when the caller is cancelled: a task of its own,
        # with descriptors of its own
        delivery = asyncio.create_task(self._deliver(number, frame, [os.dup(fd) for fd in fds]))
        self._deliveries.add(delivery)
        delivery.add_done_callback(self._deliveries.discard)
        try:
            reply = await asyncio.shield(answer)
        except asyncio.CancelledError:
            answer.add_done_callback(_kill_orphan)
            raise
        if "run" in reply:
            return reply["run"]
        code = int(reply.get("errno") or 0)
        raise OSError(code, os.strerror(code) if code else reply.get("message", "failed"),
                      reply.get("filename"))

    async def close(self) -> None:
        """End the launcher (end of file on its socket) and reap it."""
        if self._alive:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    async def _deliver(self, number: int, frame: bytes, fds: list[int]) -> None:
        try:
            async with self._sending:
                await self._send(frame, fds)
        except OSError as exc:
            answer = self._pending.pop(number, None)
            if answer is not None and not answer.done():
                answer.set_exception(exc)
        finally:
            for fd in fds:
                os.close(fd)

    async def _send(self, frame: bytes, fds: list[int]) -> None:
        loop = asyncio.get_running_loop()
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
        while True:
            if not self._alive:
                raise LauncherGone(f"the launcher of {self.python} exited")
            try:
                sent = self._sock.sendmsg([frame], rights)
                break
            except BlockingIOError:
                writable: asyncio.Future[None] = loop.create_future()
                loop.add_writer(self._sock, _settle, writable)
                try:
                    await writable
                finally:
                    loop.remove_writer(self._sock)
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise LauncherGone(f"the launcher of {self.python} exited") from exc
        if sent < len(frame):  # the descriptors went with the first bytes
            try:
                await loop.sock_sendall(self._sock, frame[sent:])
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise LauncherGone(f"the launcher of {self.python} exited") from exc

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        buffer = bytearray()
        try:
            while data := await loop.sock_recv(self._sock, RECEIVE):
                buffer += data
                while len(buffer) >= HEADER_SIZE:
                    size = int.from_bytes(buffer[:HEADER_SIZE], "big")
                    if len(buffer) < HEADER_SIZE + size:
                        break
                    message = json.loads(bytes(buffer[HEADER_SIZE:HEADER_SIZE + size]))
                    del buffer[:HEADER_SIZE + size]
                    self._dispatch(message)
        except OSError as exc:
            log.warning("the launcher of %s: %s", self.python, exc)
        finally:
            self._gone()
            await asyncio.gather(*self._deliveries, return_exceptions=True)
            self._sock.close()
            await asyncio.shield(self._reap())

    def _dispatch(self, message: dict[str, Any]) -> None:
        self.answered = True
        if "id" in message:
            answer = self._pending.pop(message["id"], None)
            if "pid" in message:  # known at once: its end may come before the caller runs
                run = self._runs[message["pid"]] = Launched(message["pid"])
                message = {**message, "run": run}
            if answer is not None and not answer.done():
                answer.set_result(message)
        elif "pid" in message:
            run = self._runs.pop(message["pid"], None)
            if run is not None:
                run.end(int(message["status"]))

    def _gone(self) -> None:
        """The socket closed: the launcher exited, its processes died with it."""
        self._alive = False
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(LauncherGone(f"the launcher of {self.python} exited"))
        self._pending.clear()
        for run in self._runs.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(run.pid, signal.SIGKILL)  # what the task forked (not tied to it)
            run.end(-signal.SIGKILL)
        self._runs.clear()
        for delivery in self._deliveries:
            delivery.cancel()

    async def _reap(self) -> None:
        try:
            await asyncio.to_thread(self.popen.wait, CLOSE_WAIT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            await asyncio.to_thread(self.popen.wait)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _kill_orphan(answer: asyncio.Future[dict[str, Any]]) -> None:
    """A start whose caller was cancelled: stop the process it started."""
    if not answer.cancelled() and answer.exception() is None and "pid" in answer.result():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(answer.result()["pid"], signal.SIGKILL)


class Launchers:
    """A worker's launchers, one per interpreter, started when first needed."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._launchers: dict[str, Launcher] = {}
        self._unusable: set[str] = set()  # interpreters a launcher cannot run on
        self._closing: set[asyncio.Task[None]] = set()

    async def get(self, python: str) -> Launcher | None:
        """The launcher running on ``python``; None where there is none (not Linux, or an
        interpreter the launcher does not run on: the caller spawns directly)."""
        if DIE_WITH_PARENT is None or python in self._unusable:
            return None
        launcher = self._launchers.pop(python, None)
        if launcher is not None and not launcher.alive:
            if not launcher.answered:
                log.warning("the launcher exited at start with %s: its tasks start "
                            "directly", python)
                self._unusable.add(python)
                return None
            log.warning("the launcher of %s exited: starting a new one", python)
            launcher = None
        if launcher is None:
            try:
                launcher = Launcher.open(python)
            except OSError as exc:
                log.warning("cannot start a launcher with %s: %s", python, exc)
                return None
        self._launchers[python] = launcher  # the most recently used last
        self._evict()
        return launcher

    def _evict(self) -> None:
        for python, launcher in list(self._launchers.items()):
            if len(self._launchers) <= self.keep:
                return
            if launcher.running == 0:
                del self._launchers[python]
                closing = asyncio.create_task(launcher.close())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every launcher (their processes are killed by the kernel as they go)."""
        launchers = list(self._launchers.values())
        self._launchers.clear()
        await asyncio.gather(*(launcher.close() for launcher in launchers),
                             *self._closing, return_exceptions=True)


__all__ = ["LAUNCHER_FILE", "Launched", "Launcher", "LauncherGone", "Launchers",
           "launcher_env"]
