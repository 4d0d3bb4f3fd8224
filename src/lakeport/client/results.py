"""Results in the shape a caller asks for: ``json`` (Python objects), ``table`` (an ASCII table
as a string), ``dataframe`` (pandas) or ``polars`` (a polars DataFrame); the frame libraries
are imported only when asked for."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson
from rich import box
from rich.console import Console
from rich.table import Table

from lakeport.errors import Invalid

ResultFormat = Literal["json", "table", "dataframe", "polars"]
FORMATS = ("json", "table", "dataframe", "polars")
FRAME_FORMATS = frozenset({"dataframe", "polars"})
"""Formats whose results travel as Parquet where the server offers it."""
TIME_COLUMNS = frozenset({"time", "bucket", "created", "modified", "updated"})
"""Columns that hold times in the server's answers (ISO 8601 text on the wire)."""


@dataclass
class Page:
    """One page of a list: its ``items`` and the cursor of the next page (None: the last)."""

    items: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: str | None = None


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise Invalid(f"bad format {fmt!r}: use json, table, dataframe or polars")
    return fmt


def require_pandas() -> Any:
    """The pandas module, or Invalid saying how to install it."""
    try:
        import pandas
    except ImportError:
        raise Invalid("format='dataframe' needs pandas: pip install pandas") from None
    return pandas


def require_polars() -> Any:
    """The polars module, or Invalid saying how to install it."""
    try:
        import polars
    except ImportError:
        raise Invalid("format='polars' needs polars: pip install polars") from None
    return polars


def columns_of(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every key of ``rows`` in the order of first appearance."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def cell(value: Any) -> str:
    """A value as table text: nothing for None, compact JSON for lists and objects."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list | tuple):
        return orjson.dumps(value, default=str).decode()
    return str(value)


def to_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
             title: str | None = None) -> Table:
    """A rich table of ``rows`` (a column per key)."""
    names = list(columns) if columns is not None else columns_of(rows)
    table = Table(*names, title=title, box=box.ASCII, header_style="bold")
    for row in rows:
        table.add_row(*(cell(row.get(name)) for name in names))
    return table


def record_table(record: Mapping[str, Any]) -> Table:
    """A two-column table (field, value) of one record."""
    table = Table("field", "value", box=box.ASCII, header_style="bold")
    for key, value in record.items():
        table.add_row(key, cell(value))
    return table


def render(table: Table) -> str:
    """A rich table as plain text (no colour), wide enough not to wrap most values."""
    out = io.StringIO()
    Console(file=out, width=200, color_system=None, force_terminal=False,
            highlight=False).print(table)
    return out.getvalue()


def utc_times(frame: Any, names: Iterable[str]) -> Any:
    """``frame`` (pandas or polars) with its columns ``names`` that hold ISO 8601 text as
    ``datetime64[ms, UTC]`` / ``Datetime("ms", "UTC")``; other columns are left as they are."""
    present = [name for name in names if name in frame.columns]
    pl = sys.modules.get("polars")
    if pl is not None and isinstance(frame, pl.DataFrame):
        kinds = {name: frame.schema[name] for name in present}
        return frame.with_columns(
            *(pl.col(name).str.to_datetime(time_zone="UTC", time_unit="ms")
              for name, kind in kinds.items() if kind == pl.String),
            *(pl.col(name).cast(pl.Datetime("ms", "UTC"))
              for name, kind in kinds.items() if kind == pl.Null))
    pd = require_pandas()
    for name in present:
        column = frame[name]
        if pd.api.types.is_string_dtype(column.dtype) or column.isna().all():
            frame[name] = pd.to_datetime(column, utc=True, format="ISO8601").dt.as_unit("ms")
    return frame


def dataframe(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
              times: Iterable[str] = TIME_COLUMNS) -> Any:
    """A pandas DataFrame of ``rows``; the ``times`` columns become UTC timestamps."""
    pd = require_pandas()
    frame = pd.DataFrame.from_records(list(rows), columns=list(columns) if columns else None)
    return utc_times(frame, times)


def polars_frame(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
                 times: Iterable[str] = TIME_COLUMNS) -> Any:
    """A polars DataFrame of ``rows``; the ``times`` columns become UTC datetimes."""
    pl = require_polars()
    if rows:
        frame = pl.from_dicts(list(rows), infer_schema_length=None)
        if columns:
            frame = frame.select([name for name in columns if name in frame.columns])
    else:
        frame = pl.DataFrame(schema=dict.fromkeys(columns or (), pl.Null))
    return utc_times(frame, times)


def shape(data: Sequence[Mapping[str, Any]] | Mapping[str, Any], fmt: str,
          columns: Sequence[str] | None = None, times: Iterable[str] = TIME_COLUMNS) -> Any:
    """``data`` (a list of records, or one record) in format ``fmt``; in a DataFrame the
    ``times`` columns are UTC datetimes."""
    check_format(fmt)
    if fmt == "json":
        return data
    if isinstance(data, Mapping):
        if fmt == "table":
            return render(record_table(data))
        data = [data]
    elif fmt == "table":
        return render(to_table(data, columns))
    maker = polars_frame if fmt == "polars" else dataframe
    return maker(data, columns, times)


def arrow_to(table: Any, fmt: str) -> Any:
    """A pyarrow table in format ``fmt`` (json: a list of records with ISO times)."""
    check_format(fmt)
    if fmt == "dataframe":
        require_pandas()
        return table.to_pandas()
    if fmt == "polars":
        return require_polars().from_arrow(table)
    rows = table.to_pylist()
    for row in rows:
        for key, value in row.items():
            if isinstance(value, datetime):
                row[key] = value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return rows if fmt == "json" else render(to_table(rows, table.column_names))


__all__ = [
    "FORMATS",
    "FRAME_FORMATS",
    "TIME_COLUMNS",
    "Page",
    "ResultFormat",
    "arrow_to",
    "cell",
    "check_format",
    "columns_of",
    "dataframe",
    "polars_frame",
    "record_table",
    "render",
    "require_pandas",
    "require_polars",
    "shape",
    "to_table",
    "utc_times",
]
