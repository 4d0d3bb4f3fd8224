"""The lakeport home folder (``LAKEPORT_HOME``, default ``~/.lakeport``) holding embedded state,
and private folders and files: state that only its user may read (0700 / 0600 whatever the
umask), like the home, the platform store and the lake's objects."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

PRIVATE_FOLDER = 0o700
PRIVATE_FILE = 0o600


def home_folder() -> Path:
    """The lakeport home folder, without creating it."""
    return Path(os.environ.get("LAKEPORT_HOME") or Path.home() / ".lakeport").expanduser()


def lakeport_home() -> Path:
    """Return the lakeport home folder, creating it when missing."""
    return private_folder(home_folder())


def private_folder(path: Path) -> Path:
    """``path``, created with its missing parents as 0700 folders whatever the umask (folders
    that exist are left as they are); FileExistsError when a file is in the way."""
    missing = []
    current = Path(path)
    while not os.path.lexists(current) and current.parent != current:
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_FOLDER)
        except FileExistsError:
            continue  # made at the same time by another process
        os.chmod(folder, PRIVATE_FOLDER)
    Path(path).mkdir(exist_ok=True)
    return Path(path)


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """A descriptor of ``path`` opened with ``flags``; with ``O_CREAT`` the file is 0600
    whatever the umask."""
    fd = os.open(path, flags | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        if flags & os.O_CREAT:
            os.fchmod(fd, PRIVATE_FILE)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created, with its folder) while the block runs:
    processes building the same thing wait for each other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def default_streams_url() -> str:
    """The streams URL used when none is given: ``LAKEPORT_STREAMS`` or the embedded engine."""
    return os.environ.get("LAKEPORT_STREAMS") or (lakeport_home() / "streams").as_uri()
