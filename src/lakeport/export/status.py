"""An exporter's counters and the JSON status file ``$LAKEPORT_HOME/exports/<name>/status.json``."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from lakeport.durable import fsync_path
from lakeport.errors import NotFound
from lakeport.home import lakeport_home


def export_dir(name: str) -> Path:
    """Where exporter ``name`` keeps its status and batch intents."""
    path = lakeport_home() / "exports" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json_atomic(path: Path, value: Any, *, durable: bool = True) -> None:
    """Replace ``path`` with ``value`` as JSON: temp file, (fsync,) rename, (fsync folder)."""
    temp = path.with_name(f".{path.name}.tmp")
    with open(temp, "wb") as out:
        out.write(orjson.dumps(value, option=orjson.OPT_INDENT_2))
        if durable:
            out.flush()
            os.fsync(out.fileno())
    os.replace(temp, path)
    if durable:
        fsync_path(path.parent)


@dataclass
class ExportStatus:
    """What ``lakeport export status`` shows."""

    name: str
    topics: list[str]
    sink: str
    format: str
    state: str = "starting"  # starting, running, retrying, stopped, failed
    rows: int = 0  # rows landed
    bytes: int = 0  # payload bytes of the messages exported
    files: int = 0  # data files written: objects landed, or the Parquet files of Delta commits
    batches: int = 0  # batches acknowledged (one Delta commit each, none for a batch already in)
    dead_letters: int = 0
    lag: int = 0
    last_error: str | None = None
    last_file: str | None = None  # the location of the last data file written
    started: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    pid: int = field(default_factory=os.getpid)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> None:
        self.updated = time.time()
        with contextlib.suppress(OSError):  # status is advisory: never stop an export for it
            write_json_atomic(path, self.to_dict(), durable=False)


def read_status(name: str) -> dict[str, Any]:
    """The last status exporter ``name`` wrote (NotFound if it never ran here)."""
    path = lakeport_home() / "exports" / name / "status.json"
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise NotFound(
            f"no exporter named {name!r} has run under {lakeport_home()} (no {path})"
        ) from None
