"""The runtime seam: a :class:`Job` (what to run) and the :class:`Runtime` protocol.

A runtime turns a job into the argv that runs it (with the task's code folder as the working
directory), building what it needs first: a virtual environment, compiled classes or a
binary. Built things go under ``job.cache`` and are reused by later runs of the same
version (:func:`build_once`).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from lakeport.errors import Invalid, Unavailable
from lakeport.home import file_lock

Progress = Callable[[str], None]
READY = ".lakeport-ready"
ERROR_LINES = 5  # compiler output lines kept in a compile error


@dataclass(frozen=True)
class Job:
    """One run of a task's code, as a runtime sees it."""

    code: Path  # folder with the executable and the unpacked dependencies zip
    entry: str  # the entry point, relative to code ("main.py", "Hello.java", "app.jar", ...)
    args: list[str] = field(default_factory=list)  # arguments after the entry
    settings: dict[str, str] = field(default_factory=dict)  # e.g. {"master": "local[2]"}
    cache: Path = Path(".")  # built things shared between runs (venvs, classes, binaries)
    version_key: str = ""  # "<project>/<task>/<version>": what makes a build unique


class Runtime(Protocol):
    """How one kind of code runs: ``py``, ``js``, ``java``, ``c``, ``cpp``, ``sh``, ``spark``,
    ``component``."""

    name: str

    def missing(self) -> str | None:
        """None when usable here, else one line naming what to install."""

    def prepare(self, job: Job, on_progress: Progress) -> list[str]:
        """Build what the job needs and return the argv to run it (cwd = ``job.code``).

        Raises :class:`Invalid` with one line for the task's fault (a missing entry, a
        compile error with the compiler's first lines)."""


def entry_file(job: Job, *suffixes: str) -> Path:
    """The entry's path inside the code folder; Invalid when absent, outside or of a kind
    (suffix) the runtime does not run."""
    code = job.code.resolve()
    path = (code / job.entry).resolve()
    if not job.entry or not path.is_relative_to(code):
        raise Invalid(f"the entry {job.entry!r} is not inside the task's code")
    if not path.is_file():
        raise Invalid(f"the entry {job.entry!r} is not in the task's code")
    if suffixes and path.suffix.lower() not in suffixes:
        raise Invalid(f"the entry {job.entry!r} is not a {' or '.join(suffixes)} file")
    return path


def tool(name: str) -> str | None:
    """The absolute path of a program on PATH."""
    return shutil.which(name)


def needed(name: str, hint: str) -> str:
    """The absolute path of a program the runtime needs; Unavailable when it is absent."""
    found = shutil.which(name)
    if found is None:
        raise Unavailable(f"{name} is not installed on this worker ({hint})")
    return found


def fingerprint(parts: Iterable[str | bytes], files: Iterable[Path]) -> str:
    """A short hash of some strings and the names and bytes of some files."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    for path in files:
        digest.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def build_once(job: Job, kind: str, key: str, build: Callable[[Path], None],
               on_progress: Progress) -> Path:
    """The folder of a build, made by ``build(folder)`` unless a finished one exists.

    Folders live under ``<cache>/<kind>/<version key>/<key>``; builds of one folder wait for
    each other (a lock file) and a build counts only once its marker is written."""
    version = "".join(c if c.isalnum() or c in "-_." else "_" for c in job.version_key)
    target = job.cache / kind / (version or "_") / key
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.with_suffix(".lock")):
        if (target / READY).is_file():
            return target
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        try:
            build(target)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        (target / READY).write_text(job.version_key + "\n")
    on_progress(f"built {kind} for {job.version_key or job.entry} in {target}")
    return target


def compile_with(argv: list[str], *, cwd: Path, what: str, on_progress: Progress) -> None:
    """Run a compiler; its failure is Invalid with the first lines of its output."""
    on_progress(f"compiling {what}")
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, errors="replace",
                              stdin=subprocess.DEVNULL, timeout=600)
    except subprocess.TimeoutExpired:
        raise Invalid(f"{what} does not compile: {argv[0]} took more than 600 s") from None
    if done.returncode != 0:
        lines = [line.rstrip() for line in (done.stderr + done.stdout).splitlines()
                 if line.strip()]
        raise Invalid(f"{what} does not compile: " + " | ".join(lines[:ERROR_LINES]))


