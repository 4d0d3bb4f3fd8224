"""Write an Arrow table of rows as Parquet (zstd), CSV or JSON Lines."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from lakeport.errors import Invalid

EXTENSIONS = {"parquet": "parquet", "csv": "csv", "jsonl": "jsonl"}
"""Format name → file extension."""

ROW_GROUP_ROWS = 1_000_000
"""Rows per Parquet row group at most: large enough for lake engines to scan efficiently."""

_JSONL_CHUNK = 65_536


def check_format(fmt: str) -> str:
    if fmt not in EXTENSIONS:
        raise Invalid(f"unknown export format {fmt!r}: use one of {', '.join(EXTENSIONS)}")
    return fmt


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


__all__ = ["EXTENSIONS", "ROW_GROUP_ROWS", "check_format", "write_table"]
