"""The sink plug point: where exporters land batches. One module per sink, chosen by URL.

A sink gets a :class:`Batch` (an Arrow table of rows in :data:`ROW_SCHEMA` and the seqno
range it came from) and must land it **idempotently**: writing the same batch again (after
a crash, before the ack) leaves exactly one copy. Object stores get that from deterministic
keys (:meth:`Batch.object_key`), Delta tables from an app-transaction version.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Self

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ValidationError

from lakeport.errors import Invalid, LakeportError, Terminal, Transient
from lakeport.export import formats

TERMINAL_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
                   errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                   errno.EROFS: "the file system is read-only",
                   errno.ENOENT: "the folder does not exist",
                   errno.ENOTDIR: "a part of the path is a file, not a folder"}
"""Local file errors a retry cannot mend (an operator must act); any other one is Transient."""

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
MAX_VALUE_BYTES = 200
"""The longest partition value in a folder name, in UTF-8 bytes (``name=`` adds a few)."""
"""The folder value Hive-partitioned readers take for a null value."""

_HIVE_ESCAPED = frozenset('"#%\'*/:=?[\\]^{}')
"""Characters Hive and Spark percent-encode in partition values (besides control characters)."""


def _percent(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode())


def partition_value(value: str) -> str:
    """``value`` as the ``<value>`` of one ``name=<value>`` folder, escaped as Hive does and
    DuckDB, polars and pyarrow (``segment_encoding="uri"``) undo: ``/ = % \\ : # " ' * ? [ ] { }
    ^``, control and other non-printable characters become ``%XX`` (UTF-8 bytes), so a value is
    always exactly one folder level. Trailing dots become ``%2E`` too (``.`` and ``..`` are
    never a value on disk, and Azure advises against path segments ending in a dot); an empty value
    stays empty (``asset=``, read back as ``""``), and a value spelled like :data:`HIVE_NULL`
    gets its first ``_`` escaped so DuckDB does not read it as null.

    A folder name holds at most 255 bytes on common file systems: an escaped value longer
    than :data:`MAX_VALUE_BYTES` keeps its first part and ends in ``~`` and a hash of the whole
    value, so long names stay apart (the column inside the files holds the exact value)."""
    escaped = "".join(_percent(c) if c in _HIVE_ESCAPED or not c.isprintable() else c
                      for c in value)
    kept = escaped.rstrip(".")
    escaped = kept + "%2E" * (len(escaped) - len(kept))
    escaped = "%5F" + escaped[1:] if value == HIVE_NULL else escaped
    return _shortened(escaped, value) if len(escaped.encode()) > MAX_VALUE_BYTES else escaped


def _shortened(escaped: str, value: str) -> str:
    digest = hashlib.blake2b(value.encode(), digest_size=8).hexdigest()
    room = MAX_VALUE_BYTES - len(digest) - 1
    head = escaped.encode()[:room].decode(errors="ignore")
    head = head[:head.rfind("%")] if "%" in head[-2:] else head  # never cut an escape
    return f"{head.rstrip('.')}~{digest}"


def _unsafe_segment(segment: str) -> bool:
    return segment in ("", ".", "..") or "/" in segment or "\\" in segment or "\x00" in segment


@dataclass(frozen=True)
class Batch:
    """Rows of one topic with seqnos ``first_seqno..last_seqno`` (some may be dead letters)."""

    topic: str
    first_seqno: int
    last_seqno: int
    table: pa.Table

    @property
    def rows(self) -> int:
        return self.table.num_rows

    def partitions(self, by_asset: bool = False) -> list[tuple[str, pa.Table]]:
        """``("date=YYYY-MM-DD[/asset=A]", rows)`` per Hive partition, in a stable order
        (rows keep their seqno order within a partition); ``A`` is the asset escaped by
        :func:`partition_value`, so it is always one folder level."""
        table = self.table
        if table.num_rows == 0:
            return []
        if not by_asset:
            low, high = (v.as_py() for v in pc.min_max(table["time"]).values())
            if low.date() == high.date():  # the common case: one day, no copy
                return [(f"date={low:%Y-%m-%d}", table)]
        key = pc.strftime(table["time"], format="%Y-%m-%d")
        if by_asset:
            key = pc.binary_join_element_wise(key, table["asset"], "\x00")
        counts = pc.value_counts(key)
        groups = sorted(zip(counts.field("values").to_pylist(),
                            counts.field("counts").to_pylist(), strict=True))
        if len(groups) > 1:
            table = table.take(pc.sort_indices(key))  # a stable sort by partition
        out = []
        offset = 0
        for value, count in groups:
            day, _, asset = value.partition("\x00")
            path = f"date={day}" + (f"/asset={partition_value(asset)}" if by_asset else "")
            out.append((path, table.slice(offset, count)))
            offset += count
        return out

    def object_key(self, prefix: str, partition: str, extension: str) -> str:
        """``<prefix>/<topic>/<partition>/<topic>-<first>-<last>.<ext>``: the same batch always
        lands under the same key, so a retry overwrites instead of duplicating.

        Raises Terminal unless the key stays in ``<prefix>/<topic>/``: the topic must be one
        folder level other than ``.`` and ``..``, each partition level one ``name=value``."""
        name = f"{self.topic}-{self.first_seqno}-{self.last_seqno}.{extension}"
        levels = partition.split("/") if partition else []
        if _unsafe_segment(self.topic) or any(
                _unsafe_segment(level) or "=" not in level[1:] for level in levels):
            raise Terminal(f"topic {self.topic!r}, partition {partition!r}: the file would not "
                           "land in the topic's own folder of the lake")
        return "/".join(p for p in (prefix.strip("/"), self.topic, partition, name) if p)


class Sink(ABC):
    """Lands batches somewhere. Use as ``async with sink:``; call :meth:`healthcheck` first."""

    scheme: ClassVar[str] = ""
    extra: ClassVar[str | None] = None  # the pip extra that brings the sink's dependencies

    def __init__(self, url: str, options: dict[str, Any] | None = None) -> None:
        self.url = url
        self.options = dict(options or {})

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Create clients; no network round trip needed here."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients."""

    @abstractmethod
    async def healthcheck(self) -> None:
        """Fail fast: Terminal for bad credentials or a missing bucket/container/volume/table
        (the message names which and how to fix it), Transient when it cannot be reached."""

    @abstractmethod
    async def write(self, batch: Batch, fmt: str = "parquet") -> list[str]:
        """Land ``batch`` idempotently in format ``fmt``; return the locations written.

        Raise :class:`lakeport.errors.Transient` when a retry can help, Terminal otherwise.
        Return only once the data is durable in the sink.
        """

    def describe(self) -> str:
        """The URL without secrets, for status lines and logs."""
        return self.url


def utc_now() -> datetime:
    return datetime.now(UTC)


def parse_options(model: type[BaseModel], options: dict[str, Any], where: str) -> Any:
    """Validate sink options; the one-line error names the option and the sink."""
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"]) or "options"
        if first["type"] == "extra_forbidden":
            known = ", ".join(sorted(model.model_fields))
            raise Invalid(f"unknown option {name!r} for {where}: use one of {known}") from exc
        raise Invalid(f"bad option {name!r} for {where}: {first['msg']}") from exc


def os_error(exc: OSError, what: str, fix: str) -> LakeportError:
    """``exc`` as one line starting with ``what``: Terminal (ending with ``fix``) when a retry
    cannot help (:data:`TERMINAL_ERRNOS`), else Transient."""
    reason = TERMINAL_ERRNOS.get(exc.errno or 0)
    if reason is not None:
        return Terminal(f"{what}: {reason} ({exc.strerror}); {fix}")
    return Transient(f"{what}: {exc.strerror or exc}")


@contextlib.asynccontextmanager
async def staged(table: pa.Table, name: str, fmt: str, tmp_dir: Path | None,
                 where: str) -> AsyncIterator[tuple[Path, int]]:
    """``table`` written as ``fmt`` to a temporary file ``name`` for an upload: yields its
    path and size, and removes it on exit (also when the upload fails)."""
    root = Path(tmp_dir) if tmp_dir else Path(tempfile.gettempdir())
    folder: Path | None = None
    try:
        folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="lakeport-", dir=root))
        path = folder / name
        size = await asyncio.to_thread(formats.write_table, table, path, fmt)
    except BaseException as exc:  # never leave a staged file behind
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, OSError):
            raise os_error(exc, f"cannot stage {name} in {root} for {where}",
                           "free space or set the tmp_dir option") from exc
        raise
    try:
        yield path, size
    finally:
        shutil.rmtree(folder, ignore_errors=True)
