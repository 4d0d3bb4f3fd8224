"""A private PostgreSQL server for one test: a cluster made with ``initdb`` in a temporary
folder, listening on a free loopback port (and a unix socket in that folder), that the test may
stop and start again. The machine's own PostgreSQL is never touched.

As root, ``initdb`` and ``pg_ctl`` run as the ``postgres`` OS user (PostgreSQL refuses root),
with a folder owned by that user. Without the binaries (``/usr/lib/postgresql/*/bin``) the test
skips, or fails when ``LAKEPORT_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from conftest import require_service
from servers import free_port


def _bin_folder() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parent.parent.name)
                   if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


class PrivatePostgres:
    """A cluster in ``folder`` on ``port``; ``url`` reaches its database ``postgres``."""

    def __init__(self, bin_folder: Path, folder: Path, port: int, user: str | None) -> None:
        self.bin = bin_folder
        self.folder = folder
        self.data = folder / "data"
        self.port = port
        self.user = user  # the OS user the server runs as (None: the current one)
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        command = [str(self.bin / tool), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              cwd=self.folder, check=False)
        if done.returncode:
            raise RuntimeError(f"{tool} failed ({done.returncode}): "
                               f"{done.stderr.strip() or done.stdout.strip()}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8", "--locale=C")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories={self.folder} -c fsync=off")
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data),
                  "-l", str(self.folder / "server.log"), "-o", options)

    def stop(self) -> None:
        """Stop the server at once (``pg_ctl stop -m fast``: sessions are disconnected)."""
        self._run("pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", str(self.data))

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started private PostgreSQL; stopped and removed afterwards."""
    bin_folder = _bin_folder()
    if bin_folder is None or not (bin_folder / "initdb").exists():
        require_service("PostgreSQL binaries", "no initdb/pg_ctl under /usr/lib/postgresql/*/bin")
    user = None
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            require_service("PostgreSQL", "running as root without a postgres OS user for initdb")
        if shutil.which("runuser") is None:
            require_service("PostgreSQL", "running as root without runuser to run initdb")
        user = account.pw_name
    # not under pytest's tmp_path: as root that folder is 0700, out of reach of the postgres user
    folder = Path(tempfile.mkdtemp(prefix="lakeport-pg-"))
    try:
        if user is not None:
            os.chown(folder, account.pw_uid, account.pw_gid)
        server = PrivatePostgres(bin_folder, folder, free_port(), user)
        try:
            server.init()
            server.start()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            require_service("PostgreSQL", f"cannot run a private PostgreSQL ({exc})")
        try:
            yield server
        finally:
            if server.running():
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    server.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


__all__ = ["PrivatePostgres", "private_postgres"]
