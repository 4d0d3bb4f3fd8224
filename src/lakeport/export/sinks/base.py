"""The sink plug point: where exporters land batches. One module per sink, chosen by URL.

A sink gets a :class:`Batch` (an Arrow table of rows in :data:`ROW_SCHEMA` and the seqno
range it came from) and must land it **idempotently**: writing the same batch again (after
a crash, before the ack) leaves exactly one copy. Object stores get that from deterministic
keys (:meth:`Batch.object_key`), Delta tables from an app-transaction version.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ValidationError

from lakeport.errors import Invalid, Terminal

FORMAT_EXTENSIONS = {"parquet": "parquet", "csv": "csv", "jsonl": "jsonl"}

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
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
    gets its first ``_`` escaped so DuckDB does not read it as null."""
    escaped = "".join(_percent(c) if c in _HIVE_ESCAPED or not c.isprintable() else c
                      for c in value)
    kept = escaped.rstrip(".")
    escaped = kept + "%2E" * (len(escaped) - len(kept))
    return "%5F" + escaped[1:] if value == HIVE_NULL else escaped


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
    """Validate sink options; an error names the option and the sink."""
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"]) or "options"
        raise Invalid(f"bad option {name!r} for {where}: {first['msg']}") from exc
