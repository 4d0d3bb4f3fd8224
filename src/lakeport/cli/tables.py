"""``lakeport tables ...``: storage tables (Delta tables named like ``in.c-main.readings``) in
a local lake folder or object store."""

from __future__ import annotations

import os
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lakeport.cli.common import stderr
from lakeport.cli.remote import JsonOption, print_table, show_record, show_records
from lakeport.errors import Invalid

if TYPE_CHECKING:
    from lakeport.tables import TableInfo, TableStore

ENV_LAKE = "LAKEPORT_TABLES"

app = typer.Typer(
    help="Storage tables: Delta tables named <stage>.<bucket>.<table> with a primary key, "
    "loads (full, incremental, upsert) and filtered exports.\n\n"
    "Example: lakeport tables import in.c-main.readings readings.csv --primary-key id "
    "&& lakeport tables preview in.c-main.readings",
    no_args_is_help=True,
)

LakeOption = Annotated[str | None, typer.Option(
    "--lake", envvar=ENV_LAKE, show_default=False,
    help="Lake folder or URL (file://, s3://, abfs://); default <LAKEPORT_HOME>/tables.")]
IdArg = Annotated[str, typer.Argument(help="Table id, like in.c-main.readings.",
                                      show_default=False)]
ListOption = Annotated[str | None, typer.Option(show_default=False)]


def _store(lake: str | None) -> TableStore:
    from lakeport.home import home_folder
    from lakeport.tables import TableStore

    root = lake or str(home_folder() / "tables")
    if "://" not in root:
        Path(root).expanduser().mkdir(parents=True, exist_ok=True)
    return TableStore(root)


def _names(text: str | None, option: str) -> list[str] | None:
    if text is None:
        return None
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise Invalid(f"{option}: expected comma-separated names, got {text!r}")
    return names


def _record(info: TableInfo) -> dict[str, Any]:
    data = asdict(info)
    for key in ("created", "last_change"):
        value = data[key]
        data[key] = value.isoformat(timespec="seconds") if isinstance(value, datetime) else None
    return data


@app.command()
def create(
    table_id: IdArg,
    columns: Annotated[str, typer.Option("--columns", help="Column names: a,b,c.",
                                         show_default=False)],
    primary_key: Annotated[str | None, typer.Option(
        "--primary-key", help="Primary key columns: a[,b].", show_default=False)] = None,
    description: Annotated[str, typer.Option("--description", help="What the table holds.")]
    = "",
    lake: LakeOption = None, as_json: JsonOption = False,
) -> None:
    """Create an empty table of string columns."""
    info = _store(lake).create(table_id, _names(columns, "--columns") or [],
                               primary_key=_names(primary_key, "--primary-key") or [],
                               description=description)
    if as_json:
        show_record(_record(info), True)
    else:
        stderr.print(f"created {info.id} ({', '.join(info.columns)})", markup=False)


@app.command("ls")
def list_tables(
    stage: ListOption = None, bucket: ListOption = None,
    lake: LakeOption = None, as_json: JsonOption = False,
) -> None:
    """List the tables (of one --stage in|out, one --bucket c-name)."""
    infos = _store(lake).list(stage=stage, bucket=bucket)
    rows = [{"id": i.id, "columns": len(i.columns), "rows": i.rows,
             "primary_key": ",".join(i.primary_key),
             "last_change": _record(i)["last_change"] or ""} for i in infos]
    show_records([_record(i) for i in infos] if as_json else rows, as_json,
                 empty="no tables")


@app.command()
def show(table_id: IdArg, lake: LakeOption = None, as_json: JsonOption = False) -> None:
    """Show a table's columns, primary key, size and change times."""
    record = _record(_store(lake).info(table_id))
    if not as_json:
        record["columns"] = ", ".join(record["columns"])
        record["primary_key"] = ", ".join(record["primary_key"])
        record["column_metadata"] = "; ".join(
            f"{c}: " + ", ".join(f"{k}={v}" for k, v in m.items())
            for c, m in record["column_metadata"].items())
    show_record(record, as_json)


@app.command()
def preview(
    table_id: IdArg,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Rows to show.")] = 20,
    lake: LakeOption = None, as_json: JsonOption = False,
) -> None:
    """Show the first rows of a table."""
    from rich.table import Table

    rows = _store(lake).read(table_id, limit=limit)
    if as_json:
        show_records(rows.to_pylist(), True)
        return
    table = Table(*rows.column_names)
    for row in rows.to_pylist():
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    print_table(table)
    stderr.print(f"{table_id}: first {rows.num_rows} rows", markup=False)


@app.command("import")
def import_(
    table_id: IdArg,
    file: Annotated[Path, typer.Argument(help="CSV file or folder of CSV slices.",
                                         show_default=False)],
    incremental: Annotated[bool, typer.Option(
        "--incremental", help="Append, or upsert with a primary key (default: replace).")]
    = False,
    primary_key: Annotated[str | None, typer.Option(
        "--primary-key", help="Primary key columns: a[,b].", show_default=False)] = None,
    columns: Annotated[str | None, typer.Option(
        "--columns", help="Columns of a headless CSV: a,b,c.", show_default=False)] = None,
    delimiter: Annotated[str, typer.Option("--delimiter", help="Field delimiter.")] = ",",
    enclosure: Annotated[str, typer.Option("--enclosure", help="Quote character.")] = '"',
    delete_where_column: ListOption = None,
    delete_where_values: ListOption = None,
    delete_where_operator: Annotated[str, typer.Option(help="eq or ne.")] = "eq",
    lake: LakeOption = None, as_json: JsonOption = False,
) -> None:
    """Load a CSV file (or a folder of slices) into a table as one commit."""
    result = _store(lake).load(
        table_id, file, incremental=incremental,
        primary_key=_names(primary_key, "--primary-key"),
        columns=_names(columns, "--columns"), delimiter=delimiter, enclosure=enclosure,
        delete_where_column=delete_where_column,
        delete_where_values=_names(delete_where_values, "--delete-where-values"),
        delete_where_operator=delete_where_operator)
    if as_json:
        show_record(asdict(result), True)
    else:
        stderr.print(f"loaded {result.rows_loaded} rows into {result.table_id}"
                     + (f", deleted {result.rows_deleted}" if result.rows_deleted else "")
                     + f" (version {result.version})", markup=False)


@app.command()
def export(
    table_id: IdArg,
    dest: Annotated[Path, typer.Argument(help="File to write.", show_default=False)],
    format: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    columns: Annotated[str | None, typer.Option(
        "--columns", help="Columns to export: a,b.", show_default=False)] = None,
    where_column: ListOption = None,
    where_values: Annotated[str | None, typer.Option(
        help="Values of --where-column: a,b.", show_default=False)] = None,
    where_operator: Annotated[str, typer.Option(help="eq or ne.")] = "eq",
    changed_since: Annotated[str | None, typer.Option(
        help="Rows changed since: ISO 8601 or 'N days ago'.", show_default=False)] = None,
    days: Annotated[int | None, typer.Option(
        help="Rows changed in the last N days.", show_default=False)] = None,
    limit: Annotated[int | None, typer.Option(help="At most N rows.", show_default=False)]
    = None,
    delimiter: Annotated[str, typer.Option("--delimiter", help="Field delimiter.")] = ",",
    enclosure: Annotated[str, typer.Option("--enclosure", help="Quote character.")] = '"',
    lake: LakeOption = None, as_json: JsonOption = False,
) -> None:
    """Export a table (filtered) to a CSV or Parquet file."""
    if format not in ("csv", "parquet"):
        raise Invalid(f"--format must be csv or parquet, not {format!r}")
    result = _store(lake).export(
        table_id, dest, format=format,  # type: ignore[arg-type]
        columns=_names(columns, "--columns"), where_column=where_column,
        where_values=_names(where_values, "--where-values"),
        where_operator=where_operator,  # type: ignore[arg-type]
        changed_since=changed_since, days=days, limit=limit, delimiter=delimiter,
        enclosure=enclosure)
    if as_json:
        show_record(asdict(result), True)
    else:
        stderr.print(f"exported {result.rows} rows of {result.table_id} to "
                     f"{os.fspath(result.path)}", markup=False)


@app.command()
def rm(table_id: IdArg, lake: LakeOption = None) -> None:
    """Delete a table and its files."""
    _store(lake).delete(table_id)
    stderr.print(f"deleted {table_id}", markup=False)
