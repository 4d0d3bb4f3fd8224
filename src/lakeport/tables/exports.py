"""Reading and exporting tables with the input-mapping filters of the component contract:
``columns``, ``where_column`` / ``where_values`` / ``where_operator``, ``changed_since``,
``days`` and ``limit``. Hidden columns are never part of the result."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lakeport.errors import Invalid
from lakeport.tables.csvio import write_csv
from lakeport.tables.errors import translate
from lakeport.tables.ids import CHANGED, ExportResult, TableId
from lakeport.tables.store import user_columns

if TYPE_CHECKING:
    from lakeport.tables.store import TableStore

RELATIVE = re.compile(r"^\s*-?\s*(\d+)\s*(second|minute|hour|day|week)s?(\s+ago)?\s*$", re.I)


def parse_since(value: str | datetime, now: datetime | None = None) -> datetime:
    """``changed_since`` as a UTC time: a datetime, ISO 8601 (a naive time is UTC), a Unix
    timestamp, or relative: ``"2 days ago"``, ``"-2 days"``, ``"3 hours"``."""
    now = now or datetime.now(UTC)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).strip()
    match = RELATIVE.match(text)
    if match:
        amount, unit = int(match.group(1)), match.group(2).lower()
        return now - timedelta(**{f"{unit}s": amount})
    if re.fullmatch(r"\d{9,}(\.\d+)?", text):
        return datetime.fromtimestamp(float(text), UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z")
                                        else text)
    except ValueError:
        raise Invalid(f"bad changed_since {value!r}: expected ISO 8601 "
                      "(2026-01-31T12:00:00Z), a Unix timestamp or 'N days ago'") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Filters:
    """The checked export filters."""

    columns: list[str] | None = None
    where_column: str | None = None
    where_values: list[str] | None = None
    where_operator: str = "eq"
    since: datetime | None = None
    limit: int | None = None

    @classmethod
    def build(cls, *, columns: list[str] | None = None, where_column: str | None = None,
              where_values: list[str] | None = None, where_operator: str = "eq",
              changed_since: str | datetime | None = None, days: int | None = None,
              limit: int | None = None) -> Filters:
        """Check the filters; each mistake is one Invalid line."""
        if where_operator not in ("eq", "ne"):
            raise Invalid(f"where_operator must be 'eq' or 'ne', not {where_operator!r}")
        if where_column and not where_values:
            raise Invalid(f"where_column {where_column!r} without where_values: "
                          "give the values to filter on")
        if where_values and not where_column:
            raise Invalid("where_values without where_column: name the column to filter on")
        if days is not None and changed_since not in (None, ""):
            raise Invalid("days and changed_since both given: use one of them")
        since = None
        if days is not None:
            try:
                count = int(days)
            except (TypeError, ValueError):
                raise Invalid(f"days must be a whole number, not {days!r}") from None
            if count < 0:
                raise Invalid(f"days must be 0 or more, not {days!r}")
            since = datetime.now(UTC) - timedelta(days=count)
        elif changed_since not in (None, ""):
            since = parse_since(changed_since)  # type: ignore[arg-type]
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise Invalid(f"limit must be 0 or more, not {limit!r}")
        return cls(columns=list(columns) if columns else None, where_column=where_column or None,
                   where_values=[str(v) for v in where_values] if where_values else None,
                   where_operator=where_operator, since=since, limit=limit)


class Scan:
    """The filtered batches of one table version (filters applied per batch: the dataset's
    own pushdown trips over the string types deltalake writes)."""

    def __init__(self, store: TableStore, tid: TableId, filters: Filters,
                 version: int | None = None) -> None:
        table = store.open(tid, version)
        try:
            self.dataset = table.to_pyarrow_dataset()
        except Exception as exc:
            raise translate(exc, f"read table {tid}") from exc
        schema = self.dataset.schema
        available = user_columns(schema)
        self.columns = filters.columns or available
        unknown = [c for c in self.columns if c not in available]
        if unknown:
            raise Invalid(f"column {', '.join(unknown)} is not in table {tid} "
                          f"({','.join(available)})")
        self.filters = filters
        self.values: pa.Array | None = None
        if filters.where_column:
            if filters.where_column not in available:
                raise Invalid(f"where_column {filters.where_column!r} is not in table {tid} "
                              f"({','.join(available)})")
            kind = schema.field(filters.where_column).type
            try:
                self.values = pa.array(filters.where_values or []).cast(kind)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise Invalid(f"where_values do not fit column {filters.where_column!r} "
                              f"({kind}): {exc}") from exc
        needed = list(self.columns)
        for extra in (filters.where_column, CHANGED if filters.since else None):
            if extra and extra not in needed:
                needed.append(extra)
        self.needed = needed
        self.schema = pa.schema([schema.field(c) for c in self.columns])

    def _mask(self, batch: pa.RecordBatch) -> pa.Array | None:
        mask = None
        if self.values is not None:
            column = batch.column(self.filters.where_column)
            mask = pc.is_in(column, value_set=self.values.cast(column.type))
            if self.filters.where_operator == "ne":
                mask = pc.invert(mask)
        if self.filters.since is not None:
            since = pa.scalar(self.filters.since, pa.timestamp("us", tz="UTC"))
            recent = pc.greater_equal(batch.column(CHANGED), since)
            mask = recent if mask is None else pc.and_(mask, recent)
        return mask

    def batches(self) -> Iterator[pa.RecordBatch]:
        left = self.filters.limit
        scanner = self.dataset.scanner(columns=self.needed, batch_size=1 << 17)
        for batch in scanner.to_batches():
            if left is not None and left <= 0:
                return
            mask = self._mask(batch)
            if mask is not None:
                batch = batch.filter(mask)
            if left is not None:
                batch = batch.slice(0, left)
                left -= batch.num_rows
            if batch.num_rows:
                yield batch.select(self.columns).cast(self.schema)


def read(store: TableStore, tid: TableId, filters: Filters,
         version: int | None = None) -> pa.Table:
    """The filtered rows as one Arrow table."""
    scan = Scan(store, tid, filters, version)
    return pa.Table.from_batches(list(scan.batches()), schema=scan.schema)


def export(store: TableStore, tid: TableId, dest: Path, filters: Filters, *,
           format: str = "csv", delimiter: str = ",", enclosure: str = '"') -> ExportResult:
    """Write the filtered rows to ``dest``; CSV has a header row."""
    if format not in ("csv", "parquet"):
        raise Invalid(f"export format must be csv or parquet, not {format!r}")
    scan = Scan(store, tid, filters)
    schema, columns, batches = scan.schema, scan.columns, scan.batches()
    if not dest.parent.is_dir():
        raise Invalid(f"folder {str(dest.parent)!r} does not exist")
    partial = dest.with_name(f".{dest.name}.partial")
    try:
        if format == "csv":
            rows = write_csv(batches, schema, partial, delimiter=delimiter, enclosure=enclosure,
                             label=dest.name)
        else:
            rows = 0
            with pq.ParquetWriter(partial, schema) as writer:
                for batch in batches:
                    writer.write_batch(batch)
                    rows += batch.num_rows
        partial.replace(dest)  # a reader of dest never sees half a file
    finally:
        partial.unlink(missing_ok=True)
    return ExportResult(table_id=str(tid), rows=rows, columns=columns, path=str(dest))


__all__ = ["Filters", "export", "parse_since", "read"]
