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
DATA_ERRORS = (pa.ArrowException, ArithmeticError, LookupError, TypeError, ValueError)
"""What pyarrow, orjson and Python's conversions raise for data they cannot represent (a
timestamp in year 10000, an integer beyond 64 bits, a struct without fields, ...)."""
_JSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


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
    except DATA_ERRORS as exc:
        raise Invalid(f"cannot read '{path}' as {kind}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise ValueError("a JSON array of objects is expected")
        try:
            return pa.Table.from_pylist(rows[:limit]), len(rows)
        except DATA_ERRORS as exc:
            raise _column_error(rows[:limit], exc) from exc
    import pyarrow.json as pjson

    table = pjson.read_json(io.BytesIO(data))
    return table.slice(0, limit), table.num_rows


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


def _column_error(rows: list[dict[str, Any]], exc: BaseException) -> ValueError:
    """The error of building a table from ``rows``, naming the first column that fails."""
    names = list(rows[0]) if rows else []
    for name in names:
        try:
            pa.array([row.get(name) for row in rows])
        except DATA_ERRORS:
            return ValueError(f"column {name!r}: {_first_line(exc)}")
    return ValueError(_first_line(exc))


def table_json(table: pa.Table, total: int, path: str) -> bytes:
    """``{"columns", "rows", "total_rows"}`` as JSON bytes; Invalid naming the column whose
    values JSON cannot carry."""
    columns = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        try:
            columns.append(column.to_pylist())
        except DATA_ERRORS as exc:
            raise _not_json(path, name, exc) from exc
    rows = [list(row) for row in zip(*columns, strict=True)] if columns else []
    try:
        return orjson.dumps({"columns": table.column_names, "rows": rows, "total_rows": total},
                            default=_json_default, option=_JSON_OPTIONS)
    except DATA_ERRORS as exc:
        for name, values in zip(table.column_names, columns, strict=True):
            try:
                orjson.dumps(values, default=_json_default, option=_JSON_OPTIONS)
            except DATA_ERRORS:
                raise _not_json(path, name, exc) from exc
        raise _not_json(path, None, exc) from exc


def _not_json(path: str, column: str | None, exc: BaseException) -> Invalid:
    where = f"column {column!r} of '{path}'" if column is not None else f"'{path}'"
    return Invalid(f"cannot convert {where} to JSON: {_first_line(exc)}")


def table_parquet(table: pa.Table, path: str) -> bytes:
    """The table as Parquet bytes; Invalid when Parquet cannot hold it (a struct without
    fields, ...)."""
    import pyarrow.parquet as pq

    out = io.BytesIO()
    try:
        pq.write_table(table, out, compression="zstd")
    except DATA_ERRORS as exc:
        raise Invalid(f"cannot convert '{path}' to Parquet: {_first_line(exc)}") from exc
    return out.getvalue()


__all__ = ["read_table", "table_json", "table_kind", "table_parquet"]
