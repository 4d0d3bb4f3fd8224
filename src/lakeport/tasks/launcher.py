"""The launcher: a small fork server that starts a worker's task processes.

A worker runs one launcher per interpreter (``<python> -u launcher.py <fd>``, any Python
>= 3.9, standard library only: it also runs with a task's own virtual-environment
interpreter) and talks to it over the Unix stream socket ``fd`` (the worker-side client is
:mod:`lakeport.tasks.launching`). Forking this small, single-threaded process is cheap where
spawning from the big worker is not.

Protocol: frames of a 4-byte big-endian length and a JSON object, both ways. A request
``{"id", "argv", "cwd", "env", "limits": {"memory_mb", "cpu_seconds"}, "python"}`` comes with
three descriptors (SCM_RIGHTS on its first bytes: stdin, stdout, stderr). The launcher
forks, answers ``{"id", "pid"}`` (or ``{"id", "errno", "filename"}`` when the program could
not start), and later ``{"pid", "status"}`` once the process exited (``status`` as
``subprocess``'s ``returncode``: the exit code, or ``-N`` for signal N). Before reaping an
exited process it kills what is left of its process group. The launcher exits when the
socket reaches end of file (the worker closed it or died; ``PR_SET_PDEATHSIG`` on the
launcher and on each task makes the kernel kill them when their parent goes).

Each task process starts a session of its own, dies with the launcher (``PR_SET_PDEATHSIG``),
gets its limits (``RLIMIT_AS``, ``RLIMIT_CPU``), the three descriptors as 0, 1 and 2, no
other descriptor, the given working directory and signal dispositions of a fresh process,
then ``exec``s ``argv`` (``argv[0]`` looked up on the ``PATH`` of the given environment, as
``subprocess`` does).

Python mode (asked for ``py`` tasks, ``argv = [python, "-u", entry, *args]``): when
``argv[0]`` is the launcher's own interpreter, the forked child does not ``exec``: it takes
exactly the given environment (``os.environ``, ``time.tzset()``), ``sys.argv = [entry,
*args]``, ``sys.path[0]`` = the entry's folder, and runs the entry as ``__main__`` in the
already initialised interpreter, which then exits as ``python -u entry`` would (atexit
handlers, non-daemon threads joined, ``SystemExit`` codes; an uncaught exception prints a
traceback of the task's own frames and exits 1). What differs from a fresh interpreter:
forked runs share the launcher's hash seed (``PYTHONHASHSEED``: the order of sets of
strings) and the standard-library modules it imported already, and the interpreter is not
torn down at exit (:func:`leave`: a fork's teardown costs as much as the rest of a run).
The launcher ``exec``s a fresh interpreter instead when ``argv`` is of another form or
interpreter, or when the environment differs from the launcher's start-up environment in a
variable Python reads at start-up (any ``PYTHON*``, ``LANG``, ``LC_*``; ``HOME`` where user
site-packages are enabled), so that e.g. ``PYTHONPATH`` in a task's environment keeps
working.
"""

from __future__ import annotations

import array
import atexit
import ctypes
import gc
import importlib
import importlib.machinery
import io
import json
import os
import resource
import selectors
import signal
import site
import socket
import struct
import sys
import time
import types
from collections import deque
from typing import Any

HEADER = struct.Struct("!I")
RECEIVE = 64 * 1024
MAX_FDS = 64  # descriptors one recvmsg can carry
PR_SET_PDEATHSIG = 1


def _startup_names(env: dict[str, str]) -> set[str]:
    """The variables of ``env`` that Python reads when it starts."""
    names = {name for name in env
             if name.startswith(("PYTHON", "LC_")) or name == "LANG"}
    if site.ENABLE_USER_SITE:
        names |= {"HOME"} & set(env)
    return names


def _startup_env(env: dict[str, str]) -> dict[str, str]:
    return {name: env[name] for name in _startup_names(env)}


def _initial_environ() -> dict[str, str]:
    """The environment this process was started with (``os.environ`` may have changed since:
    Python coerces a C locale by setting ``LC_CTYPE``)."""
    try:
        with open("/proc/self/environ", "rb") as handle:
            entries = handle.read().split(b"\0")
    except OSError:
        return dict(os.environ)
    pairs = (os.fsdecode(entry).partition("=") for entry in entries if b"=" in entry)
    return {name: value for name, _, value in pairs}


def _prctl() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


class Launcher:
    """The launcher's state and loop; :meth:`serve` returns only in a python-mode child."""

    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=fd)
        self.sock.setblocking(True)
        self.pid = os.getpid()
        self.prctl = _prctl()
        self.python = os.path.abspath(sys.executable)
        self.startup = _startup_env(_initial_environ())
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.selector = selectors.DefaultSelector()
        self.buffer = bytearray()
        self.fds: deque[int] = deque()

    def serve(self) -> dict[str, Any] | None:
        """Serve requests until end of file (None); a python-mode child returns its run."""
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is the worker's
        self.selector.register(self.sock, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        gc.freeze()  # what exists now is shared with the children: their collections skip it
        while True:
            for key, _ in self.selector.select():
                if key.fileobj is self.sock:
                    if not self._receive():
                        return None
                    while (request := self._next_request()) is not None:
                        run = self._spawn(*request)
                        if run is not None:
                            return run
                else:
                    while True:
                        try:
                            if not os.read(self.wake_r, 4096):
                                break
                        except BlockingIOError:
                            break
                    self._reap()

    def _receive(self) -> bool:
        data, ancillary, _, _ = self.sock.recvmsg(RECEIVE, socket.CMSG_SPACE(MAX_FDS * 4))
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
                self.fds.extend(fds)
        self.buffer += data
        return bool(data)

    def _next_request(self) -> tuple[dict[str, Any], list[int]] | None:
        if len(self.buffer) < HEADER.size:
            return None
        (size,) = HEADER.unpack_from(self.buffer)
        if len(self.buffer) < HEADER.size + size:
            return None
        body = bytes(self.buffer[HEADER.size:HEADER.size + size])
        del self.buffer[:HEADER.size + size]
        return json.loads(body), [self.fds.popleft() for _ in range(3)]

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        try:
            self.sock.sendall(HEADER.pack(len(body)) + body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the worker is gone: end of file comes next

    def _reap(self) -> None:
        while True:
            try:
                if hasattr(os, "waitid"):  # peek first: the group is killed before reaping
                    info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                    if info is None:
                        return
                    pid = info.si_pid
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                    _, status = os.waitpid(pid, 0)
                else:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                    if pid == 0:
                        return
            except ChildProcessError:
                return
            self._send({"pid": pid, "status": os.waitstatus_to_exitcode(status)})

    def _python_mode(self, request: dict[str, Any]) -> bool:
        argv, env = request["argv"], request["env"]
        return (bool(request.get("python")) and len(argv) >= 3 and argv[1] == "-u"
                and os.path.abspath(argv[0]) == self.python
                and _startup_env(env) == self.startup)

    def _spawn(self, request: dict[str, Any], fds: list[int]) -> dict[str, Any] | None:
        python = self._python_mode(request)
        failed_r, failed_w = os.pipe()  # closes on exec; carries the errno of a failure
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in (*fds, failed_r, failed_w):
                os.close(fd)
            self._send({"id": request["id"], "errno": exc.errno, "filename": None})
            return None
        if pid == 0:
            return self._child(request, fds, failed_w, python)
        os.close(failed_w)
        for fd in fds:
            os.close(fd)
        chunks = []
        while chunk := os.read(failed_r, 4096):
            chunks.append(chunk)
        os.close(failed_r)
        if chunks:
            failure = json.loads(b"".join(chunks))
            os.waitpid(pid, 0)
            self._send({"id": request["id"], **failure})
        else:
            self._send({"id": request["id"], "pid": pid})
        return None

    def _child(self, request: dict[str, Any], fds: list[int], failed: int,
               python: bool) -> dict[str, Any] | None:
        """In the forked child: set up, then ``exec`` or (python mode) return the run."""
        filename = None
        try:
            os.setsid()
            if self.prctl is not None:
                self.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                if os.getppid() != self.pid:  # the launcher died before prctl
                    os._exit(1)
            limits = request.get("limits") or {}
            memory, cpu = limits.get("memory_mb"), limits.get("cpu_seconds")
            if memory is not None:
                size = int(memory) * 1024 * 1024
                resource.setrlimit(resource.RLIMIT_AS, (size, size))
            if cpu is not None:
                resource.setrlimit(resource.RLIMIT_CPU, (int(cpu), int(cpu) + 1))
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self.selector.close()
            self.sock.close()
            os.closerange(3, failed)
            os.closerange(failed + 1, _max_fd())
            filename = request["cwd"]
            os.chdir(filename)
            argv, env = request["argv"], request["env"]
            if python:
                signal.signal(signal.SIGINT, signal.default_int_handler)
                os.environ.clear()
                os.environ.update(env)
                time.tzset()
                os.close(failed)
                return {"argv": argv, "entry": argv[2], "args": argv[3:]}
            for number in ("SIGINT", "SIGPIPE", "SIGXFSZ"):
                if hasattr(signal, number):
                    signal.signal(getattr(signal, number), signal.SIG_DFL)
            filename = argv[0]
            os.execvpe(argv[0], argv, env)
        except BaseException as exc:  # never back into the launcher's loop
            number = exc.errno if isinstance(exc, OSError) and exc.errno else 0
            try:
                message = {"errno": number, "filename": filename, "message": str(exc)}
                os.write(failed, json.dumps(message).encode())
            finally:
                os._exit(127)
        return None  # not reached: exec replaced the process


def _max_fd() -> int:
    try:
        return max(int(os.sysconf("SC_OPEN_MAX")), 256)
    except (OSError, ValueError):
        return 65536


def _trimmed(traceback: types.TracebackType | None) -> types.TracebackType | None:
    """The traceback without the launcher's own frames at its head."""
    while traceback is not None and traceback.tb_frame.f_code.co_filename == __file__:
        traceback = traceback.tb_next
    return traceback


def run_task(run: dict[str, Any]) -> int:
    """Run a python-mode task's entry as ``__main__`` (in the forked child); its exit code
    as ``python -u entry`` would end with (:data:`INTERRUPTED` for an uncaught ^C)."""
    entry = run["entry"]
    path = os.path.abspath(entry)
    sys.argv = [entry, *run["args"]]
    sys.orig_argv = list(run["argv"])
    sys.path[0] = os.path.dirname(path)
    importlib.invalidate_caches()
    if isinstance(sys.stdout, io.TextIOWrapper) and sys.stdout.line_buffering:
        sys.stdout.reconfigure(line_buffering=False)  # a pipe now, whatever the launcher had
    module = types.ModuleType("__main__")
    module.__file__ = path
    module.__cached__ = None  # type: ignore[attr-defined]
    module.__builtins__ = __builtins__  # type: ignore[attr-defined]
    module.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
    sys.modules["__main__"] = module
    try:
        with io.open_code(path) as handle:
            source = handle.read()
    except OSError as exc:
        print(f"{sys.executable}: can't open file {path!r}: [Errno {exc.errno}] "
              f"{exc.strerror}", file=sys.stderr)
        return 2
    try:
        exec(compile(source, path, "exec"), module.__dict__)
    except SystemExit as exc:
        return _exit_code(exc)
    except BaseException as exc:
        trimmed = _trimmed(exc.__traceback__)
        sys.excepthook(type(exc), exc.with_traceback(trimmed), trimmed)
        return INTERRUPTED if isinstance(exc, KeyboardInterrupt) else 1
    return 0


INTERRUPTED = -signal.SIGINT
""":func:`run_task`'s code for an uncaught ``KeyboardInterrupt``: the process ends by SIGINT."""


def _exit_code(exc: SystemExit) -> int:
    """The exit status of ``SystemExit`` as the interpreter makes it (a message: printed, 1)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def leave(code: int) -> None:
    """End a python-mode child as the interpreter ends ``python -u entry``, without tearing
    down what it shares with the launcher (that teardown touches, and so copies, every
    shared page): non-daemon threads are joined, atexit handlers run, the task's ``__main__``
    is cleared and garbage collected (so files it left open are flushed and closed), the
    standard streams are flushed; then ``os._exit``. Objects still alive then and not held
    by ``__main__`` get no ``__del__`` (Python does not promise it for them either)."""
    threading = sys.modules.get("threading")
    if threading is not None:
        for thread in threading.enumerate():
            if thread is not threading.main_thread() and not thread.daemon:
                thread.join()
    atexit._run_exitfuncs()
    main = sys.modules.get("__main__")
    if main is not None:
        main.__dict__.clear()
    gc.collect()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 120  # as the interpreter does when stdout cannot be flushed
    if code == INTERRUPTED:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code & 0xFF)


if __name__ == "__main__":
    if not hasattr(os, "waitstatus_to_exitcode"):  # a task's interpreter older than 3.9
        sys.exit(f"the launcher needs Python 3.9 or later, not {sys.version.split()[0]}")
    task = Launcher(int(sys.argv[1])).serve()
    if task is not None:
        leave(run_task(task))
