"""``file:///path``: a local (or mounted) folder; every file appears atomically."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from lakeport.durable import fsync_path
from lakeport.errors import Invalid, LakeportError
from lakeport.export import formats
from lakeport.export.sinks.base import Batch, Sink, os_error, parse_options
from lakeport.processes import pid_alive


class LocalOptions(BaseModel):
    """Options of the ``file://`` sink."""

    model_config = ConfigDict(extra="forbid")

    partition_by_asset: bool = Field(False, description="Add an asset=<name> partition below date=")


PROBE_PREFIX = ".lakeport-probe-"
STALE_PROBE_SECONDS = 600.0
"""A probe lives for milliseconds: one this old was left by a health check that never ended
(also one without a pid in its name, or of a process on another host)."""


def _dead_writer(name: str) -> bool:
    """Whether the process named at the end of ``name`` (``…tmp-<pid>``) no longer runs."""
    _, sep, pid = name.rpartition(".tmp-")
    if not sep or not pid.isdigit() or not 0 < int(pid) < 2**31:
        return False
    return int(pid) != os.getpid() and not pid_alive(int(pid))


def _drop_stale_temps(folder: Path, pattern: str = ".*.tmp-*") -> None:
    """Delete temporary files in ``folder`` (those matching ``pattern``) left by writers that
    died (a killed exporter's batch, written again under the same name after its restart)."""
    for stale in folder.glob(pattern):
        if _dead_writer(stale.name):
            stale.unlink(missing_ok=True)


def _drop_stale_probes(folder: Path) -> None:
    """Delete health-check probes in ``folder`` left by exporters killed while probing: those
    of processes that no longer run, and any older than :data:`STALE_PROBE_SECONDS`. Best
    effort: a probe that cannot be removed (another user's) is left, the export goes on."""
    now = time.time()
    with contextlib.suppress(OSError):
        for probe in folder.glob(f"{PROBE_PREFIX}*"):
            with contextlib.suppress(OSError):
                if (now - probe.lstat().st_mtime > STALE_PROBE_SECONDS
                        or _dead_writer(probe.name)):
                    probe.unlink(missing_ok=True)


def _probe_unnamed(folder: Path) -> bool:
    """Write and sync a file without a name in ``folder`` (Linux ``O_TMPFILE``), so a process
    killed while probing leaves nothing behind; False where the system or file system has no
    such files (then a named probe is used)."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag:
        return False
    try:
        fd = os.open(folder, flag | os.O_WRONLY, 0o600)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            return False
        raise
    try:
        os.write(fd, b"probe")
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


class LocalSink(Sink):
    """Writes ``<root>/<topic>/<partition>/<topic>-<first>-<last>.<ext>`` under the URL's folder."""

    scheme = "file"

    def __init__(self, url: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(url, options)
        parts = urlsplit(url)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost") or not parts.path:
            raise Invalid(f"bad file sink URL {url!r}: use file:///absolute/path")
        self.root = Path(unquote(parts.path))
        self.config: LocalOptions = parse_options(LocalOptions, self.options, self.describe())
        self._swept: set[Path] = set()  # folders cleared of dead writers' temporary files

    def _error(self, exc: OSError, doing: str) -> LakeportError:
        return os_error(exc, f"file sink {self.root}: cannot {doing}",
                        "free space or fix the folder's permissions, then restart")

    async def healthcheck(self) -> None:
        await asyncio.to_thread(self._check)

    def _check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._error(exc, "create the folder") from exc
        _drop_stale_probes(self.root)
        try:
            if _probe_unnamed(self.root):
                return
        except OSError as exc:
            raise self._error(exc, "write to the folder") from exc
        probe = self.root / f"{PROBE_PREFIX}{uuid.uuid4().hex}.tmp-{os.getpid()}"
        try:
            with open(probe, "wb") as out:
                out.write(b"probe")
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise self._error(exc, "write to the folder") from exc
        finally:
            probe.unlink(missing_ok=True)

    async def write(self, batch: Batch, fmt: str = "parquet") -> list[str]:
        formats.check_format(fmt)
        return await asyncio.to_thread(self._write, batch, fmt)

    def _write(self, batch: Batch, fmt: str) -> list[str]:
        written = []
        folders = set()
        extension = formats.FORMATS[fmt].extension
        for partition, table in batch.partitions(self.config.partition_by_asset):
            path = self.root / batch.object_key("", partition, extension)
            temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._sweep(path)
                formats.write_table(table, temp, fmt)
                fsync_path(temp)
                os.replace(temp, path)
            except BaseException as exc:  # never leave a temporary file behind
                with contextlib.suppress(OSError):
                    temp.unlink(missing_ok=True)
                if isinstance(exc, OSError):
                    raise self._error(exc, f"write {path}") from exc
                raise
            folders.add(path.parent)
            written.append(str(path))
        try:
            for folder in folders:
                fsync_path(folder)
        except OSError as exc:
            raise self._error(exc, "sync the folder") from exc
        return written

    def _sweep(self, path: Path) -> None:
        """Sweep ``path``'s folder the first time this sink writes there (one listing per
        folder, not one per file); a batch written again also sweeps its own name."""
        if path.parent not in self._swept:
            _drop_stale_temps(path.parent)
            self._swept.add(path.parent)
        elif path.exists():
            _drop_stale_temps(path.parent, f".{path.name}.tmp-*")

    def describe(self) -> str:
        return str(self.root)
