"""Storage tables: ``table://in.c-edge.readings[?root=...&primary_key=a,b]``.

Each batch is ONE :meth:`lakeport.tables.TableStore.load` (``incremental=True``): an append,
or with ``primary_key`` an upsert by that key; either way one Delta commit, so a batch is
stored completely or not at all. The table gets the lake's row columns
(:data:`lakeport.readings.ROW_SCHEMA`) plus ``topic`` and is created by the first batch.

The lake is ``?root=`` (a folder or an ``s3://`` / ``abfs://`` URL; a folder must exist),
else ``LAKEPORT_TABLES``, else ``<LAKEPORT_HOME>/tables`` (these two folders are created).

**A batch is stored once.** A load cannot carry a batch id in its commit, so before loading
the sink reads the ``seqno`` of the rows of the batch's topic in the batch's seqno range
(Delta and Parquet statistics let the scan skip the other files) and loads only the rows
after the highest one found. As loads are atomic and batches come in seqno order, a batch
replayed after a crash (before the ack) is skipped, and one cut at other boundaries stores
only its new rows.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lakeport.errors import Invalid, LakeportError, NotFound, Terminal
from lakeport.export.sinks.base import Batch, Sink, parse_options
from lakeport.readings import ROW_SCHEMA
from lakeport.tables import TableId, TableStore, parse_table_id
from lakeport.tables.errors import translate
from lakeport.tables.store import REMOTE, arrow_schema, primary_key_of, user_columns

ENV_TABLES = "LAKEPORT_TABLES"
TOPIC_COLUMN = "topic"
TABLE_SCHEMA = ROW_SCHEMA.append(pa.field(TOPIC_COLUMN, pa.string(), nullable=False))
"""The columns of a table the sink writes: the row columns plus the batch's topic."""


class TableOptions(BaseModel):
    """Options of the ``table://`` sink (also given as ``?name=value`` in the URL)."""

    model_config = ConfigDict(extra="forbid")

    root: str | None = Field(None, description="The lake: a folder or an s3:// / abfs:// URL "
                             "(default LAKEPORT_TABLES, else <LAKEPORT_HOME>/tables)")
    primary_key: list[str] = Field(default_factory=list, description="Upsert by these "
                                   "columns (comma-separated in the URL); default: append")
    partition_by_asset: bool = Field(False, description="Not available: storage tables are "
                                     "not partitioned (only false is accepted)")

    @field_validator("primary_key", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


def rows_of(batch: Batch) -> pa.Table:
    """The batch's rows in the table's columns: the row columns plus ``topic``."""
    try:
        rows = batch.table.select(ROW_SCHEMA.names).cast(ROW_SCHEMA)
    except (KeyError, pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise Invalid(f"batch rows do not match the lake row schema: {exc}") from exc
    topic = pa.array([batch.topic] * rows.num_rows, pa.string())
    return rows.append_column(TABLE_SCHEMA.field(TOPIC_COLUMN), topic)


class TableSink(Sink):
    """Loads each batch into a storage table as one commit (append or upsert)."""

    scheme = "table"
    extra = "delta"

    def __init__(self, url: str, options: dict[str, Any] | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "table" or parts.path not in ("", "/") or parts.fragment:
            raise Invalid(f"bad table URL {url!r}: expected table://<stage>.<bucket>.<table>, "
                          "like table://in.c-edge.readings")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        clash = sorted(set(query) & set(options or {}))
        if clash:
            raise Invalid(f"option {clash[0]!r} for table://{parts.netloc} is given both in "
                          "the URL and as an option: keep one")
        super().__init__(url, {**query, **(options or {})})
        self.table_id: TableId = parse_table_id(parts.netloc)
        self.config: TableOptions = parse_options(TableOptions, self.options, self.describe())
        self.root_given = self.config.root is not None
        if self.config.root is not None:
            self.root = self.config.root
        else:
            from lakeport.home import home_folder

            self.root = os.environ.get(ENV_TABLES) or str(home_folder() / "tables")
        self._store: TableStore | None = None

    def describe(self) -> str:
        return f"table://{self.table_id}"

    # -- the lake ----------------------------------------------------------------------------
    @property
    def local(self) -> bool:
        return not self.root.startswith(REMOTE)

    def store(self) -> TableStore:
        """The table store, once its folder is there (a default folder is created; one given
        with ``root`` must exist, so a mistyped path does not start a lake elsewhere)."""
        if self._store is None:
            if self.local:
                folder = Path(self.root.removeprefix("file://")).expanduser()
                if not self.root_given:
                    try:
                        folder.mkdir(parents=True, exist_ok=True)
                    except OSError as exc:
                        raise Terminal(f"cannot create the lake folder {str(folder)!r} for "
                                       f"{self.describe()}: {exc.strerror}") from exc
                if not folder.is_dir():
                    raise NotFound(f"lake folder {str(folder)!r} does not exist "
                                   f"({self.describe()}): create it or fix the root option")
                if not os.access(folder, os.W_OK):
                    raise Terminal(f"lake folder {str(folder)!r} is not writable "
                                   f"({self.describe()})")
            self._store = TableStore(self.root)
        return self._store

    def _check(self) -> DeltaTable | None:
        """The existing table (None when there is none yet), checked against the sink:
        the same columns and, with ``primary_key``, the same primary key."""
        if self.config.partition_by_asset:
            raise Terminal(f"option 'partition_by_asset' for {self.describe()}: storage "
                           "tables are not partitioned; drop the option")
        store = self.store()
        table = store._open(self.table_id)
        if table is None:
            return None
        schema = arrow_schema(table)
        columns = user_columns(schema)
        if sorted(columns) != sorted(TABLE_SCHEMA.names):
            missing = sorted(set(TABLE_SCHEMA.names) - set(columns))
            extra = sorted(set(columns) - set(TABLE_SCHEMA.names))
            detail = "; ".join(p for p in (f"missing {', '.join(missing)}" if missing else "",
                                           f"unexpected {', '.join(extra)}" if extra else "")
                               if p)
            raise Terminal(f"table {self.table_id} in {store.root} has other columns than "
                           f"an exporter writes ({detail}): use another table id")
        stored = primary_key_of(schema)
        if self.config.primary_key and self.config.primary_key != stored:
            raise Terminal(f"option 'primary_key' for {self.describe()}: the table's primary "
                           f"key is {','.join(stored) or 'none'}, not "
                           f"{','.join(self.config.primary_key)}")
        return table

    # -- the Sink API ------------------------------------------------------------------------
    async def healthcheck(self) -> None:
        """The lake folder is there and an existing table has the exporter's columns."""
        await self._run(self._check, "open the table")

    async def write(self, batch: Batch, fmt: str = "parquet") -> list[str]:
        """Load the batch's rows not yet in the table as one commit; return the data files
        it added (none when the batch was already stored)."""
        if fmt != "parquet":
            raise Invalid(f"a storage table stores Parquet only, not {fmt!r}: drop the format "
                          f"option for {self.describe()}")
        if batch.rows == 0:
            return []
        rows = rows_of(batch)
        missing = [c for c in self.config.primary_key if c not in rows.column_names]
        if missing:
            raise Invalid(f"option 'primary_key' for {self.describe()}: "
                          f"{', '.join(missing)} is not a column ({', '.join(TABLE_SCHEMA.names)})")
        return await self._run(lambda: self._load(batch, rows),
                               f"load seqnos {batch.first_seqno}-{batch.last_seqno}")

    async def _run(self, work: Any, action: str) -> Any:
        try:
            return await asyncio.to_thread(work)
        except LakeportError:
            raise
        except Exception as exc:
            raise translate(exc, f"{action} for {self.describe()}") from exc

    def _load(self, batch: Batch, rows: pa.Table) -> list[str]:
        table = self._check()
        if table is not None:
            done = self._stored_up_to(table, batch)
            if done is not None:
                rows = rows.filter(pc.greater(rows["seqno"], done))
                if rows.num_rows == 0:
                    return []
        result = self.store().load(str(self.table_id), rows, incremental=True,
                                   primary_key=self.config.primary_key or None)
        return self._added_files(result.version)

    def _stored_up_to(self, table: DeltaTable, batch: Batch) -> int | None:
        """The highest seqno of the batch's topic and seqno range already in the table."""
        found = table.to_pyarrow_dataset().to_table(
            columns=["seqno"],
            filter=(pc.field(TOPIC_COLUMN) == batch.topic)
            & (pc.field("seqno") >= batch.first_seqno)
            & (pc.field("seqno") <= batch.last_seqno))
        return pc.max(found["seqno"]).as_py() if found.num_rows else None

    def _added_files(self, version: int) -> list[str]:
        """The data files the commit at ``version`` added."""
        store = self.store()
        after = set(store.open(self.table_id, version).file_uris())
        before = set(store.open(self.table_id, version - 1).file_uris()) if version > 0 \
            else set()
        return sorted(after - before)


__all__ = ["TABLE_SCHEMA", "TableOptions", "TableSink", "rows_of"]
