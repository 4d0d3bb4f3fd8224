"""Running a component's command: its own process group, a timeout that kills the group,
the contract's exit codes and every output line masked before anyone sees it.

Exit code 0 is success; 1 a user error whose message is the last line on stderr; any other
code an application error that keeps the stderr tail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TAIL_LINES = 20
KILL_GRACE = 2.0


@dataclass(frozen=True)
class ProcessResult:
    """How a component's process ended."""

    exit_code: int | None
    timed_out: bool
    duration: float
    stdout: str
    stderr_tail: list[str]

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def message(self, timeout: float) -> str:
        """The job message of this outcome (already masked)."""
        if self.timed_out:
            return f"timed out after {timeout:g} s; the component's processes were killed"
        if self.exit_code == 0:
            return "done"
        last = next((line for line in reversed(self.stderr_tail) if line.strip()), "")
        if self.exit_code == 1:
            return last or "user error (exit code 1, nothing on stderr)"
        tail = " | ".join(line for line in self.stderr_tail[-5:] if line.strip())
        return f"application error (exit code {self.exit_code})" + (f": {tail}" if tail else "")


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def run_process(command: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float,
                mask: Callable[[str], str], log: Callable[[str, str], None],
                keep_stdout: bool = False) -> ProcessResult:
    """Run ``command`` in a new process group; ``log(stream, line)`` gets every masked line."""
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            list(command), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            text=True, errors="replace", bufsize=1)
    except OSError as exc:
        return ProcessResult(127, False, time.monotonic() - started, "",
                             [mask(f"cannot start {command[0]!r}: {exc.strerror}")])
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    stdout: list[str] = []

    def pump(stream: str) -> None:
        pipe = process.stdout if stream == "stdout" else process.stderr
        assert pipe is not None
        for raw in pipe:
            line = mask(raw.rstrip("\n"))
            if stream == "stderr":
                tail.append(line)
            elif keep_stdout:
                stdout.append(line)
            log(stream, line)

    readers = [threading.Thread(target=pump, args=(s,), daemon=True)
               for s in ("stdout", "stderr")]
    for reader in readers:
        reader.start()
    timed_out = False
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(process.pid, signal.SIGTERM)
        try:
            process.wait(KILL_GRACE)
        except subprocess.TimeoutExpired:
            pass
    except BaseException:
        _kill_group(process.pid, signal.SIGKILL)
        raise
    finally:
        _kill_group(process.pid, signal.SIGKILL)  # also whatever the command left behind
        process.wait()
    for reader in readers:
        reader.join(5)
    return ProcessResult(None if timed_out else process.returncode, timed_out,
                         time.monotonic() - started, "\n".join(stdout), list(tail))
