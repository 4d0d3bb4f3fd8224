"""One load into a table = one Delta commit.

- full (not incremental): the rows replace all rows (an overwrite commit);
- incremental without a primary key: the rows are appended;
- incremental with a primary key: the rows are upserted with a ``MERGE`` on the key.

``delete_where_*`` turns the load into a ``MERGE`` whose ``not matched by source`` clause
deletes the selected rows, so the deletion and the new rows land in the same commit: a reader
sees both or neither. Everything is checked before a byte is written, and a load that fails
while writing (a bad CSV row, a killed process) never commits, so the table stays as it was.
Every inserted or updated row gets the load's time in the hidden change-time column.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake

from lakeport.errors import Invalid, LakeportError, NotFound
from lakeport.tables.csvio import CsvSource
from lakeport.tables.errors import translate
from lakeport.tables.ids import LoadResult, TableId, check_column_names
from lakeport.tables.store import (
    CHANGED_FIELD,
    PRIMARY_KEY,
    arrow_schema,
    commit,
    primary_key_of,
    user_columns,
)

if TYPE_CHECKING:
    from lakeport.tables.store import TableStore

OPERATORS = ("eq", "ne")


def sql_name(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def sql_literal(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def delete_predicate(column: str, values: list[str], operator: str) -> str:
    """The SQL condition on the target rows that ``delete_where_*`` selects."""
    listed = ", ".join(sql_literal(v) for v in values)
    negate = "NOT " if operator == "ne" else ""
    return f"t.{sql_name(column)} {negate}IN ({listed})"


def keep_last(rows: pa.Table, key: list[str]) -> pa.Table:
    """``rows`` with one row per primary key: the last one."""
    index = "__lakeport_row"
    numbered = rows.append_column(index, pa.array(range(rows.num_rows), pa.int64()))
    last = numbered.group_by(key, use_threads=False).aggregate([(index, "max")])
    if last.num_rows == rows.num_rows:
        return rows
    kept = last[f"{index}_max"]
    return rows.take(pc.take(kept, pc.sort_indices(kept)))


class Load:
    """A checked load: build it, then :meth:`run` it."""

    def __init__(self, store: TableStore, tid: TableId,
                 source: pa.Table | str | os.PathLike[str], *, incremental: bool,
                 primary_key: list[str] | None, columns: list[str] | None, delimiter: str,
                 enclosure: str, delete_where_column: str | None,
                 delete_where_values: list[str] | None, delete_where_operator: str,
                 create: bool) -> None:
        self.store, self.tid, self.source = store, tid, source
        self.incremental = incremental
        self.time = datetime.now(UTC)
        self.csv: CsvSource | None = None
        self.table = store._open(tid)
        if self.table is None and not create:
            raise NotFound(f"table {tid} does not exist in {store.root}")
        self.schema = self._target_schema(columns, delimiter, enclosure, primary_key)
        self.columns = user_columns(self.schema)
        self.key = self._primary_key(primary_key)
        self.delete = self._delete_where(delete_where_column, delete_where_values,
                                         delete_where_operator)

    # -- checks --------------------------------------------------------------------------------
    def _target_schema(self, columns: list[str] | None, delimiter: str, enclosure: str,
                       primary_key: list[str] | None) -> pa.Schema:
        existing = arrow_schema(self.table) if self.table is not None else None
        types = {f.name: f.type for f in existing} if existing is not None else {}
        if isinstance(self.source, pa.Table):
            names = list(self.source.column_names)
            what = "the Arrow table"
        else:
            if columns:
                check_column_names(list(columns), f"columns for table {self.tid}")
            self.csv = CsvSource(self.source, columns=columns, delimiter=delimiter,
                                 enclosure=enclosure, types=types)
            names = self.csv.columns
            what = f"the header of {os.fspath(self.source)!r}" if not columns \
                else "the given columns"
        if existing is None:
            check_column_names(names, f"table {self.tid}")
            fields = [self.source.schema.field(n) if isinstance(self.source, pa.Table)
                      else pa.field(n, pa.string()) for n in names]
            hidden = CHANGED_FIELD.with_metadata(
                {PRIMARY_KEY: json.dumps(list(primary_key or []))})
            return pa.schema([*[f.remove_metadata() for f in fields], hidden])
        table_columns = user_columns(existing)
        if sorted(names) != sorted(table_columns):
            missing = [c for c in table_columns if c not in names]
            extra = [c for c in names if c not in table_columns]
            detail = "; ".join(part for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unexpected {', '.join(extra)}" if extra else "") if part)
            raise Invalid(f"{what} ({','.join(names)}) does not match the columns of table "
                          f"{self.tid} ({','.join(table_columns)}): {detail or 'duplicates'}")
        return existing

    def _primary_key(self, given: list[str] | None) -> list[str]:
        stored = primary_key_of(self.schema)
        key = list(given) if given else stored
        if given and stored and list(given) != stored:
            raise Invalid(f"primary key {','.join(given)} differs from the primary key "
                          f"{','.join(stored)} of table {self.tid}")
        missing = [c for c in key if c not in self.columns]
        if missing:
            raise Invalid(f"primary key column {', '.join(missing)} is missing from the "
                          f"columns {','.join(self.columns)} loaded into table {self.tid}")
        return key

    def _delete_where(self, column: str | None, values: list[str] | None,
                      operator: str) -> str | None:
        if operator not in OPERATORS:
            raise Invalid(f"delete_where_operator must be 'eq' or 'ne', not {operator!r}")
        if column is None:
            if values:
                raise Invalid("delete_where_values without delete_where_column: name the column")
            return None
        if not values:
            raise Invalid(f"delete_where_column {column!r} without delete_where_values: "
                          "give the values to delete")
        if column not in self.columns:
            raise Invalid(f"delete_where_column {column!r} is not a column of table "
                          f"{self.tid} ({','.join(self.columns)})")
        kind = self.schema.field(column).type
        try:
            pa.array([str(v) for v in values]).cast(kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise Invalid(f"delete_where_values do not fit column {column!r} ({kind}): "
                          f"{exc}") from exc
        return delete_predicate(column, [str(v) for v in values], operator)

    # -- rows ----------------------------------------------------------------------------------
    def _stamp(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        arrays = [batch.column(name) for name in self.columns]
        types = [self.schema.field(name).type for name in self.columns]
        arrays = [a if a.type == t else a.cast(t) for a, t in zip(arrays, types, strict=True)]
        changed = pa.repeat(pa.scalar(self.time, CHANGED_FIELD.type), batch.num_rows)
        return pa.RecordBatch.from_arrays([*arrays, changed], schema=self.schema)

    def _batches(self) -> Iterator[pa.RecordBatch]:
        self.rows = 0
        try:
            if isinstance(self.source, pa.Table):
                batches = self.source.select(self.columns).to_batches()
            else:
                assert self.csv is not None
                batches = self.csv.batches()
            for batch in batches:
                stamped = self._stamp(batch)
                self.rows += stamped.num_rows
                yield stamped
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            self.failure = Invalid(f"rows for table {self.tid} do not fit its columns: {exc}")
            raise self.failure from exc

    def _reader(self) -> pa.RecordBatchReader:
        self.failure: LakeportError | None = None
        return pa.RecordBatchReader.from_batches(self.schema, self._batches())

    def _rows(self) -> pa.RecordBatchReader | pa.Table:
        """What a create or a full load writes: streamed, or with a primary key one row per
        key (the last), as an upsert keeps it."""
        if not self.key:
            return self._reader()
        rows = keep_last(self._reader().read_all(), self.key)
        self.rows = rows.num_rows
        return rows

    # -- writing -------------------------------------------------------------------------------
    def run(self) -> LoadResult:
        """Write the rows as one commit and return what it did."""
        deleted = 0
        try:
            if self.table is None:
                write_deltalake(self.store.uri(self.tid), self._rows(), mode="error",
                                name=str(self.tid), storage_options=self.store.storage_options,
                                commit_properties=commit("load", mode="create"))
                table = DeltaTable(self.store.uri(self.tid),
                                   storage_options=self.store.storage_options)
            elif not self.incremental:
                deleted = self._row_count(self.table)
                write_deltalake(self.table, self._rows(), mode="overwrite",
                                commit_properties=commit("load", mode="full"))
                table = self.table
            elif not self.key and not self.delete:
                write_deltalake(self.table, self._reader(), mode="append",
                                commit_properties=commit("load", mode="append"))
                table = self.table
            else:
                deleted = self._merge(self.table)
                table = self.table
        except Exception as exc:
            failure = getattr(self, "failure", None) or (self.csv.failure if self.csv else None)
            if failure is not None:
                raise failure from exc
            raise translate(exc, f"load table {self.tid}") from exc
        return LoadResult(table_id=str(self.tid), rows_loaded=self.rows, rows_deleted=deleted,
                          incremental=self.incremental, version=table.version())

    def _merge(self, table: DeltaTable) -> int:
        rows = self._reader().read_all()
        if self.key:
            rows = keep_last(rows, self.key)
            self.rows = rows.num_rows
            on = " AND ".join(f"t.{sql_name(c)} = s.{sql_name(c)}" for c in self.key)
        else:
            on = "false"
        merger = table.merge(rows, predicate=on, source_alias="s", target_alias="t",
                             commit_properties=commit("load", mode="merge"))
        if self.key:
            merger = merger.when_matched_update_all()
        merger = merger.when_not_matched_insert_all()
        if self.delete:
            merger = merger.when_not_matched_by_source_delete(self.delete)
        metrics = merger.execute()
        return int(metrics.get("num_target_rows_deleted", 0))

    @staticmethod
    def _row_count(table: DeltaTable) -> int:
        actions = pa.table(table.get_add_actions(flatten=True))
        if not actions.num_rows or "num_records" not in actions.column_names:
            return 0
        return int(pc.sum(actions["num_records"]).as_py() or 0)


__all__ = ["Load", "delete_predicate", "keep_last"]
