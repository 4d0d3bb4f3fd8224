"""Read a CSV, Parquet or JSON(-lines) file as a table (the first ``limit`` rows)."""

from __future__ import annotations

import base64
import io
from typing import Any, BinaryIO

import orjson
import pyarrow as pa

from lakeport.errors import Invalid

KINDS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet",
         ".json": "json", ".jsonl": "json", ".ndjson": "json"}
CONTENT_KINDS = {"text/csv": "csv", "application/vnd.apache.parquet": "parquet",
                 "application/json": "json", "application/jsonl": "json",
                 "application/x-ndjson": "json"}


def table_kind(path: str, content_type: str | None) -> str:
    """``csv`` / ``parquet`` / ``json`` from the name, else from the content type."""
    name = path.rpartition("/")[2].lower()
    for suffix, kind in KINDS.items():
        if name.endswith(suffix):
            return kind
    kind = CONTENT_KINDS.get((content_type or "").split(";")[0].strip().lower())
    if kind is None:
        raise Invalid(f"cannot read '{path}' as a table: use a .csv, .parquet, .json or "
                      ".jsonl file (or upload it with such a content type)")
    return kind


def read_table(source: BinaryIO, kind: str, limit: int, path: str) -> tuple[pa.Table, int]:
    """(the first ``limit`` rows, the number of rows in the file)."""
    try:
        if kind == "parquet":
            return _parquet(source, limit)
        if kind == "csv":
            delimiter = "\t" if path.lower().endswith(".tsv") else ","
            return _csv(source, limit, delimiter)
        return _json(source, limit)
    except (pa.ArrowException, ValueError, orjson.JSONDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Invalid(f"cannot read '{path}' as {kind}: {first}") from exc


def _parquet(source: BinaryIO, limit: int) -> tuple[pa.Table, int]:
    import pyarrow.parquet as pq

    reader = pq.ParquetFile(source)
    total = reader.metadata.num_rows
    batches = []
    taken = 0
    for batch in reader.iter_batches(batch_size=min(max(limit, 1), 65_536)):
        batches.append(batch.slice(0, limit - taken))
        taken += batches[-1].num_rows
        if taken >= limit:
            break
    table = pa.Table.from_batches(batches, schema=reader.schema_arrow) if batches \
        else reader.schema_arrow.empty_table()
    return table, total


def _csv(source: BinaryIO, limit: int, delimiter: str) -> tuple[pa.Table, int]:
    import pyarrow.csv as pcsv

    reader = pcsv.open_csv(source, parse_options=pcsv.ParseOptions(delimiter=delimiter))
    batches, total = [], 0
    for batch in reader:
        if total < limit:
            batches.append(batch.slice(0, limit - total))
        total += batch.num_rows
    table = pa.Table.from_batches(batches, schema=reader.schema) if batches \
        else reader.schema.empty_table()
    return table, total


def _json(source: BinaryIO, limit: int) -> tuple[pa.Table, int]:
    data = source.read()
    if data.lstrip()[:1] == b"[":
        rows = orjson.loads(data)
        if not all(isinstance(row, dict) for row in rows):
            raise ValueError("a JSON array of objects is expected")
        return pa.Table.from_pylist(rows[:limit]), len(rows)
    import pyarrow.json as pjson

    table = pjson.read_json(io.BytesIO(data))
    return table.slice(0, limit), table.num_rows


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


def table_json(table: pa.Table, total: int) -> bytes:
    """``{"columns", "rows", "total_rows"}`` as JSON bytes."""
    columns = [column.to_pylist() for column in table.columns]
    rows = [list(row) for row in zip(*columns, strict=True)] if columns else []
    return orjson.dumps({"columns": table.column_names, "rows": rows, "total_rows": total},
                        default=_json_default,
                        option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)


def table_parquet(table: pa.Table) -> bytes:
    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()


__all__ = ["read_table", "table_json", "table_kind", "table_parquet"]
