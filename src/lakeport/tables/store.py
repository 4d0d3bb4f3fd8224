"""The table store: Delta tables at ``<root>/<stage>/<bucket>/<name>``.

Each table describes itself: its description is the Delta table's description, the metadata
of a column is the metadata of its Delta field, and the primary key sits in the metadata of
the hidden change-time column (``_lakeport_changed``, the time of the load that inserted or
last updated the row). No other database is involved.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable

from lakeport.errors import Conflict, Invalid, NotFound
from lakeport.tables.errors import translate
from lakeport.tables.ids import (
    CHANGED,
    HIDDEN_PREFIX,
    STAGES,
    ExportResult,
    LoadResult,
    TableId,
    TableInfo,
    check_column_names,
    parse_table_id,
)

if TYPE_CHECKING:
    from lakeport.tables.exports import Filters

PRIMARY_KEY = "lakeport.primary_key"
CHANGED_FIELD = pa.field(CHANGED, pa.timestamp("us", tz="UTC"))
REMOTE = ("s3://", "s3a://", "abfs://", "abfss://", "az://", "adl://", "gs://", "memory://")


def lake_root(root: str | os.PathLike[str]) -> str:
    """``root`` as deltalake takes it: an absolute folder, or an object store URL."""
    text = os.fspath(root)
    if text.startswith(REMOTE):
        return text.rstrip("/")
    if text.startswith("file://"):
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise Invalid(f"bad lake URL {text!r}: expected file:///path/to/folder")
        text = unquote(parts.path)
    if "://" in text:
        raise Invalid(f"bad lake {text!r}: expected a folder, file://, s3:// or abfs:// URL")
    return str(Path(text).expanduser().resolve())


def default_storage_options(root: str) -> dict[str, str] | None:
    """For ``s3://`` lakes without options: what the ``delta+s3://`` sink takes from the
    environment (endpoint, region, plain HTTP for MinIO / moto)."""
    if not root.startswith("s3://"):
        return None
    from lakeport.export.sinks.delta import DeltaSink

    return DeltaSink(f"delta+{root}/_", {}).storage_options() or None


def fsspec_options(options: dict[str, str] | None) -> dict[str, Any]:
    """deltalake's S3 storage options as s3fs options (listing and deleting tables)."""
    if not options:
        return {}
    upper = {k.upper(): v for k, v in options.items()}
    mapped: dict[str, Any] = {}
    for delta, fs in (("AWS_ACCESS_KEY_ID", "key"), ("AWS_SECRET_ACCESS_KEY", "secret"),
                      ("AWS_SESSION_TOKEN", "token"), ("AWS_ENDPOINT_URL", "endpoint_url")):
        if upper.get(delta):
            mapped[fs] = upper[delta]
    if upper.get("AWS_REGION"):
        mapped["client_kwargs"] = {"region_name": upper["AWS_REGION"]}
    return mapped


def commit(operation: str, **extra: Any) -> CommitProperties:
    """Commit properties naming the lakeport operation (kept in the Delta log)."""
    return CommitProperties(custom_metadata={"lakeport.operation": operation,
                                             **{f"lakeport.{k}": str(v) for k, v in extra.items()}})


def arrow_schema(table: DeltaTable) -> pa.Schema:
    """The Delta table's schema as a pyarrow schema (with field metadata)."""
    return pa.schema(table.schema().to_arrow())


def user_columns(schema: pa.Schema) -> list[str]:
    return [name for name in schema.names if not name.startswith(HIDDEN_PREFIX)]


class TableStore:
    """Storage tables in one lake: a local folder or an object store URL."""

    def __init__(self, root: str | os.PathLike[str],
                 storage_options: dict[str, str] | None = None) -> None:
        self.root = lake_root(root)
        self.local = not self.root.startswith(REMOTE)
        self.storage_options = (storage_options if storage_options is not None
                                else default_storage_options(self.root))

    def __repr__(self) -> str:
        return f"TableStore({self.root!r})"

    # -- locating ----------------------------------------------------------------------------
    def uri(self, table_id: str | TableId) -> str:
        """The Delta table URI of ``table_id``."""
        tid = table_id if isinstance(table_id, TableId) else parse_table_id(table_id)
        return f"{self.root}/{tid.path}"

    def _open(self, tid: TableId, version: int | None = None) -> DeltaTable | None:
        uri = self.uri(tid)
        try:
            if self.local and not (Path(uri) / "_delta_log").is_dir():
                return None
            if not self.local and not DeltaTable.is_deltatable(uri, self.storage_options):
                return None
            return DeltaTable(uri, version=version, storage_options=self.storage_options)
        except Exception as exc:
            raise translate(exc, f"open table {tid}") from exc

    def open(self, table_id: str | TableId, version: int | None = None) -> DeltaTable:
        """The Delta table of ``table_id`` (at ``version``); :class:`NotFound` when missing."""
        tid = table_id if isinstance(table_id, TableId) else parse_table_id(table_id)
        table = self._open(tid, version)
        if table is None:
            raise NotFound(f"table {tid} does not exist in {self.root}")
        return table

    # -- the table API -----------------------------------------------------------------------
    def create(self, table_id: str, schema: pa.Schema | list[str], *,
               primary_key: list[str] | tuple[str, ...] = (), description: str = "",
               column_metadata: dict[str, dict[str, str]] | None = None) -> TableInfo:
        """Create an empty table; ``schema`` as column names makes string columns."""
        tid = parse_table_id(table_id)
        if isinstance(schema, pa.Schema):
            fields = list(schema)
        else:
            fields = [pa.field(name, pa.string()) for name in schema]
        names = [f.name for f in fields]
        check_column_names(names, f"table {tid}")
        missing = [c for c in primary_key if c not in names]
        if missing:
            raise Invalid(f"table {tid}: primary key column {', '.join(missing)} is not one of "
                          f"the columns {', '.join(names)}")
        metadata = column_metadata or {}
        unknown = sorted(set(metadata) - set(names))
        if unknown:
            raise Invalid(f"table {tid}: column metadata for unknown column "
                          f"{', '.join(unknown)}")
        fields = [f.with_metadata({**(f.metadata or {}), **{
            str(k): str(v) for k, v in metadata.get(f.name, {}).items()}}) for f in fields]
        hidden = CHANGED_FIELD.with_metadata({PRIMARY_KEY: json.dumps(list(primary_key))})
        if self._open(tid) is not None:
            raise Conflict(f"table {tid} already exists in {self.root}")
        try:
            DeltaTable.create(self.uri(tid), pa.schema([*fields, hidden]), mode="error",
                              name=str(tid), description=description or None,
                              storage_options=self.storage_options,
                              commit_properties=commit("create"))
        except Exception as exc:
            if "already exists" in str(exc).lower():
                raise Conflict(f"table {tid} already exists in {self.root}") from exc
            raise translate(exc, f"create table {tid}") from exc
        return self.info(str(tid))

    def exists(self, table_id: str) -> bool:
        """Whether the table exists."""
        return self._open(parse_table_id(table_id)) is not None

    def info(self, table_id: str) -> TableInfo:
        """The table's columns, primary key, rows and change times; NotFound when missing."""
        tid = parse_table_id(table_id)
        return describe(tid, self.open(tid))

    def list(self, stage: str | None = None, bucket: str | None = None) -> list[TableInfo]:
        """Every table of the lake (of one stage / bucket), ordered by id."""
        if stage is not None and stage not in STAGES:
            raise Invalid(f"bad stage {stage!r}: expected 'in' or 'out'")
        found: list[TableInfo] = []
        for stage_name in [stage] if stage else list(STAGES):
            for bucket_name in self._children(stage_name):
                if bucket is not None and bucket_name != bucket:
                    continue
                for name in self._children(f"{stage_name}/{bucket_name}"):
                    text = f"{stage_name}.{bucket_name}.{name}"
                    try:
                        tid = parse_table_id(text)
                    except Invalid:
                        continue
                    table = self._open(tid)
                    if table is not None:
                        found.append(describe(tid, table))
        return sorted(found, key=lambda info: info.id)

    def _children(self, below: str) -> list[str]:
        if self.local:
            folder = Path(self.root) / below
            return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() \
                else []
        fs, path = self._fs(f"{self.root}/{below}")
        try:
            return sorted(Path(p).name for p in fs.ls(path, detail=False)
                          if fs.isdir(p))
        except FileNotFoundError:
            return []

    def delete(self, table_id: str) -> None:
        """Remove the table and its files; NotFound when missing."""
        tid = parse_table_id(table_id)
        self.open(tid)
        uri = self.uri(tid)
        if self.local:
            shutil.rmtree(uri)
            return
        fs, path = self._fs(uri)
        fs.rm(path, recursive=True)

    def _fs(self, url: str) -> tuple[Any, str]:
        """An fsspec file system for an object store URL (the s3 / azure extras bring the
        backends) and the path in it."""
        import fsspec

        options = fsspec_options(self.storage_options) if url.startswith("s3") else {}
        return fsspec.core.url_to_fs(url, **options)

    def load(self, table_id: str, source: pa.Table | str | os.PathLike[str], *,
             incremental: bool = False, primary_key: list[str] | None = None,
             columns: list[str] | None = None, delimiter: str = ",", enclosure: str = '"',
             delete_where_column: str | None = None,
             delete_where_values: list[str] | None = None,
             delete_where_operator: str = "eq", create: bool = True) -> LoadResult:
        """Load an Arrow table, a CSV file or a folder of CSV slices as ONE Delta commit:
        replace all rows, append (incremental) or upsert by primary key (incremental with a
        key), deleting the rows ``delete_where_*`` selects in the same commit."""
        from lakeport.tables.loads import Load

        return Load(self, parse_table_id(table_id), source, incremental=incremental,
                    primary_key=primary_key, columns=columns, delimiter=delimiter,
                    enclosure=enclosure, delete_where_column=delete_where_column,
                    delete_where_values=delete_where_values,
                    delete_where_operator=delete_where_operator, create=create).run()

    def export(self, table_id: str, dest: str | os.PathLike[str], *,
               format: Literal["csv", "parquet"] = "csv", columns: list[str] | None = None,
               where_column: str | None = None, where_values: list[str] | None = None,
               where_operator: Literal["eq", "ne"] = "eq",
               changed_since: str | datetime | None = None, days: int | None = None,
               limit: int | None = None, delimiter: str = ",",
               enclosure: str = '"') -> ExportResult:
        """Write the table's rows (filtered) to ``dest`` as CSV with a header, or Parquet."""
        from lakeport.tables.exports import Filters, export

        filters = Filters.build(columns=columns, where_column=where_column,
                                where_values=where_values, where_operator=where_operator,
                                changed_since=changed_since, days=days, limit=limit)
        return export(self, parse_table_id(table_id), Path(dest), filters, format=format,
                      delimiter=delimiter, enclosure=enclosure)

    def read(self, table_id: str, *, columns: list[str] | None = None,
             where_column: str | None = None, where_values: list[str] | None = None,
             where_operator: Literal["eq", "ne"] = "eq",
             changed_since: str | datetime | None = None, days: int | None = None,
             limit: int | None = None, version: int | None = None) -> pa.Table:
        """The table's rows (filtered like :meth:`export`) as an Arrow table."""
        from lakeport.tables.exports import Filters, read

        filters: Filters = Filters.build(columns=columns, where_column=where_column,
                                         where_values=where_values,
                                         where_operator=where_operator,
                                         changed_since=changed_since, days=days, limit=limit)
        return read(self, parse_table_id(table_id), filters, version=version)


def primary_key_of(schema: pa.Schema) -> list[str]:
    """The primary key kept in the metadata of the change-time column."""
    if CHANGED not in schema.names:
        return []
    metadata = schema.field(CHANGED).metadata or {}
    raw = metadata.get(PRIMARY_KEY.encode())
    return list(json.loads(raw)) if raw else []


def describe(tid: TableId, table: DeltaTable) -> TableInfo:
    """A :class:`TableInfo` from the Delta table's metadata and log."""
    schema = arrow_schema(table)
    meta = table.metadata()
    columns = user_columns(schema)
    column_metadata = {
        name: {k.decode(): v.decode() for k, v in (schema.field(name).metadata or {}).items()}
        for name in columns}
    version = table.version()
    last_change = None
    latest = table.history(1)[0] if version >= 0 else {}
    if latest and latest.get("operation") != "CREATE TABLE":
        last_change = datetime.fromtimestamp(latest["timestamp"] / 1000, UTC)
    actions = pa.table(table.get_add_actions(flatten=True))
    rows = int(pc.sum(actions["num_records"]).as_py() or 0) \
        if actions.num_rows and "num_records" in actions.column_names else 0
    return TableInfo(
        id=str(tid), stage=tid.stage, bucket=tid.bucket, name=tid.name, columns=columns,
        primary_key=primary_key_of(schema), rows=rows,
        created=datetime.fromtimestamp(meta.created_time / 1000, UTC),
        last_change=last_change, description=meta.description or "",
        column_metadata={k: v for k, v in column_metadata.items() if v},
        uri=table.table_uri, version=version)


__all__ = ["TableStore", "arrow_schema", "describe", "lake_root", "primary_key_of"]
