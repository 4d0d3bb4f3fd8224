"""``file:///path``: a local (or mounted) folder; every file appears atomically."""

from __future__ import annotations

import asyncio
import errno
import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from lakeport.durable import fsync_path
from lakeport.errors import Invalid, Terminal, Transient
from lakeport.export.formats import EXTENSIONS, check_format, write_table
from lakeport.export.sinks.base import Batch, Sink
from lakeport.processes import pid_alive

_TERMINAL_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
                    errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                    errno.EROFS: "the file system is read-only",
                    errno.ENOTDIR: "a part of the path is a file, not a folder"}


def _drop_stale_temps(folder: Path, pattern: str = ".*.tmp-*") -> None:
    """Delete temporary files in ``folder`` (those matching ``pattern``) left by writers that
    died (a killed exporter's batch, written again under the same name after its restart)."""
    for stale in folder.glob(pattern):
        pid = stale.name.rpartition("-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            stale.unlink(missing_ok=True)


class LocalSink(Sink):
    """Writes ``<root>/<topic>/<partition>/<topic>-<first>-<last>.<ext>`` under the URL's folder."""

    scheme = "file"

    def __init__(self, url: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(url, options)
        parts = urlsplit(url)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost") or not parts.path:
            raise Invalid(f"bad file sink URL {url!r}: use file:///absolute/path")
        self.root = Path(unquote(parts.path))
        self.partition_by_asset = bool(self.options.get("partition_by_asset"))
        self._swept: set[Path] = set()  # folders cleared of dead writers' temporary files

    def _error(self, exc: OSError, doing: str) -> Exception:
        reason = _TERMINAL_ERRNOS.get(exc.errno or 0)
        if reason is not None:
            return Terminal(f"file sink {self.root}: cannot {doing}: {reason} ({exc.strerror}); "
                            "free space or fix the folder's permissions, then restart")
        return Transient(f"file sink {self.root}: cannot {doing}: {exc}")

    async def healthcheck(self) -> None:
        await asyncio.to_thread(self._check)

    def _check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._error(exc, "create the folder") from exc
        probe = self.root / f".lakeport-probe-{uuid.uuid4().hex}"
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
        check_format(fmt)
        return await asyncio.to_thread(self._write, batch, fmt)

    def _write(self, batch: Batch, fmt: str) -> list[str]:
        written = []
        folders = set()
        for partition, table in batch.partitions(self.partition_by_asset):
            path = self.root / batch.object_key("", partition, EXTENSIONS[fmt])
            temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._sweep(path)
                write_table(table, temp, fmt)
                fsync_path(temp)
                os.replace(temp, path)
            except OSError as exc:
                temp.unlink(missing_ok=True)
                raise self._error(exc, f"write {path}") from exc
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
