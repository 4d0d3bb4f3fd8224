"""Write an Arrow table of rows as Parquet (zstd), CSV or JSON Lines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from lakeport.errors import Invalid


@dataclass(frozen=True)
class Format:
    """One export format: its file extension and the content type objects are stored with."""

    name: str
    extension: str
    content_type: str


FORMATS: dict[str, Format] = {
    "parquet": Format("parquet", "parquet", "application/vnd.apache.parquet"),
    "csv": Format("csv", "csv", "text/csv"),
    "jsonl": Format("jsonl", "jsonl", "application/jsonl"),
}
"""Every export format by name: the one table sinks and writers look formats up in."""

ROW_GROUP_ROWS = 1_000_000
"""Rows per Parquet row group at most: large enough for lake engines to scan efficiently."""

_JSONL_CHUNK = 65_536


def check_format(fmt: str) -> Format:
    """The :class:`Format` named ``fmt``, or :class:`Invalid` listing the known ones."""
    try:
        return FORMATS[fmt]
    except KeyError:
        raise Invalid(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}") from None


def write_table(table: pa.Table, path: Path, fmt: str) -> int:
    """Write ``table`` to ``path`` in ``fmt`` (parquet, csv, jsonl); return the bytes written."""
    check_format(fmt)
    path = Path(path)
    if fmt == "parquet":
        pq.write_table(table, path, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    elif fmt == "csv":
        pa_csv.write_csv(_iso_times(table), path)
    else:
        _write_jsonl(table, path)
    return path.stat().st_size


def _iso_times(table: pa.Table) -> pa.Table:
    """Timestamps as ISO 8601 UTC text (``2026-01-01T00:00:00.000000Z``)."""
    for index, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            text = pc.strftime(table[field.name], format="%Y-%m-%dT%H:%M:%SZ")
            table = table.set_column(index, pa.field(field.name, pa.string()), text)
    return table


def _write_jsonl(table: pa.Table, path: Path) -> None:
    """One JSON object per line; null columns are left out (``value_object`` stays text)."""
    table = _iso_times(table)
    with open(path, "wb") as out:
        for batch in table.to_batches(max_chunksize=_JSONL_CHUNK):
            lines = [
                orjson.dumps({k: v for k, v in row.items() if v is not None})
                for row in batch.to_pylist()
            ]
            if lines:
                out.write(b"\n".join(lines) + b"\n")


__all__ = ["FORMATS", "ROW_GROUP_ROWS", "Format", "check_format", "write_table"]
