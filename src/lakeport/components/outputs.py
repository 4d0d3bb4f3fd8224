"""The output mapping: ``out/tables`` loaded into storage tables, ``out/files`` uploaded to
the component file storage.

Every output is checked before the first load (a missing source, a header that does not
match the manifest's columns, a primary key column missing from the output, a file without a
destination), so a bad output loads nothing at all. A table's destination is the mapping's,
else its manifest's, else the file name (without ``.csv``) when that is a table id.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakeport.components.config import ComponentConfig, FileOutput, TableOutput
from lakeport.components.files import FileStore
from lakeport.errors import Invalid

if TYPE_CHECKING:
    from lakeport.tables import TableStore


@dataclass
class TablePlan:
    """One table load, checked."""

    path: Path
    destination: str
    incremental: bool = False
    primary_key: list[str] = field(default_factory=list)
    columns: list[str] | None = None  # set for a headless CSV or sliced folder
    delimiter: str = ","
    enclosure: str = '"'
    delete_where_column: str | None = None
    delete_where_values: list[str] = field(default_factory=list)
    delete_where_operator: str = "eq"


@dataclass
class FilePlan:
    """One file upload, checked."""

    path: Path
    tags: list[str]
    is_public: bool = False
    is_permanent: bool = False
    is_encrypted: bool = False


def _manifest(path: Path) -> dict[str, Any]:
    manifest = path.with_name(path.name + ".manifest")
    if not manifest.exists():
        return {}
    try:
        value = json.loads(manifest.read_text())
    except json.JSONDecodeError as exc:
        raise Invalid(f"{_rel(manifest)}: not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Invalid(f"{_rel(manifest)}: a JSON object expected")
    return value


def _rel(path: Path) -> str:
    parts = path.parts
    return "/".join(parts[-3:]) if len(parts) >= 3 else str(path)


def _entries(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if not p.name.endswith(".manifest") and not p.name.startswith("."))


def _is_table_id(text: str) -> bool:
    from lakeport.tables import parse_table_id

    try:
        parse_table_id(text)
    except Invalid:
        return False
    return True


def _first_row(path: Path, delimiter: str, enclosure: str) -> list[str] | None:
    with path.open(newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter, quotechar=enclosure or '"',
                            quoting=csv.QUOTE_MINIMAL if enclosure else csv.QUOTE_NONE)
        return next(reader, None)


def _plan_table(path: Path, mapping: TableOutput | None, where: str) -> TablePlan:
    manifest = _manifest(path)
    schema = manifest.get("schema") or []
    m_columns = [c["name"] for c in schema] if schema else list(manifest.get("columns") or [])
    m_pk = ([c["name"] for c in schema if c.get("primary_key")] if schema
            else list(manifest.get("primary_key") or []))
    # a new-style manifest says whether the file has a header; a legacy one lists the columns
    # of a headless file
    m_has_header = bool(manifest.get("has_header", not schema)) if schema else not m_columns
    stem = path.name.removesuffix(".csv")
    destination = ((mapping.destination if mapping else None) or manifest.get("destination")
                   or (stem if _is_table_id(stem) else None))
    if not destination:
        raise Invalid(f"{where}: no destination: no output mapping names one, the manifest "
                      f"has none and {stem!r} is not a table id")
    if not _is_table_id(destination):
        raise Invalid(f"{where}: bad destination {destination!r}: expected "
                      "<stage>.<bucket>.<table>, like out.c-main.data")

    def pick(key: str, default: Any) -> Any:
        if mapping is not None and key in mapping.model_fields_set:
            return getattr(mapping, key)
        return manifest.get(key, default) if manifest.get(key) is not None else default

    headless_columns: list[str] | None = None
    header_columns: list[str] | None = None
    if mapping is not None and mapping.columns:
        headless_columns = list(mapping.columns)
    elif m_columns and not m_has_header:
        headless_columns = m_columns
    elif m_columns:
        header_columns = m_columns
    plan = TablePlan(
        path=path, destination=destination, incremental=bool(pick("incremental", False)),
        primary_key=list(pick("primary_key", []) or m_pk), columns=headless_columns,
        delimiter=pick("delimiter", ","), enclosure=pick("enclosure", '"'),
        delete_where_column=pick("delete_where_column", None),
        delete_where_values=list(pick("delete_where_values", []) or []),
        delete_where_operator=pick("delete_where_operator", "eq"))
    parts = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")) \
        if path.is_dir() else [path]
    if path.is_dir() and headless_columns is None:
        raise Invalid(f"{where}: a sliced table (a folder of CSV parts) needs its columns in "
                      "the output mapping or the manifest")
    columns: list[str] = headless_columns or []
    for part in parts:
        first = _first_row(part, plan.delimiter, plan.enclosure)
        if first is None:
            continue
        if headless_columns is not None:
            if len(first) != len(headless_columns):
                raise Invalid(f"{_rel(part)}: rows have {len(first)} fields but the columns are "
                              f"{headless_columns} ({len(headless_columns)})")
        elif header_columns is not None and first != header_columns:
            raise Invalid(f"{_rel(part)}: header {first} does not match the manifest's "
                          f"columns {header_columns}")
        else:
            columns = first
    if not columns and header_columns:
        columns = header_columns
    if not columns:
        raise Invalid(f"{_rel(path)}: empty file without columns; write a header or list the "
                      "columns in the manifest")
    for key in plan.primary_key:
        if key not in columns:
            raise Invalid(f"{where}: primary key column {key!r} is missing from the output "
                          f"columns {columns}")
    if plan.delete_where_column and plan.delete_where_column not in columns:
        raise Invalid(f"{where}: delete_where_column {plan.delete_where_column!r} is not "
                      f"among the output columns {columns}")
    if plan.delete_where_operator not in ("eq", "ne"):
        raise Invalid(f"{where}: delete_where_operator must be eq or ne")
    return plan


def plan_outputs(folder: Path, config: ComponentConfig) -> tuple[list[TablePlan],
                                                                 list[FilePlan]]:
    """Check every output of a finished run and return what to load; Invalid on the first
    problem, before anything is loaded."""
    tables_dir = folder / "out" / "tables"
    out = config.storage.output
    plans: list[TablePlan] = []
    mapped: set[str] = set()
    for index, mapping in enumerate(out.tables):
        where = f"storage.output.tables[{index}]"
        candidates = [mapping.file_name] if mapping.source else [
            mapping.file_name, f"{mapping.file_name}.csv"]
        path = next((tables_dir / c for c in candidates if (tables_dir / c).exists()), None)
        if path is None:
            raise Invalid(f"{where}: source {candidates[0]!r} is missing in out/tables")
        mapped.add(path.name)
        plans.append(_plan_table(path, mapping, where))
    for path in _entries(tables_dir):
        if path.name not in mapped:
            plans.append(_plan_table(path, None, f"out/tables/{path.name}"))
    files_dir = folder / "out" / "files"
    file_maps: dict[str, FileOutput] = {}
    for index, fmap in enumerate(out.files):
        if not (files_dir / fmap.source).is_file():
            raise Invalid(f"storage.output.files[{index}]: source {fmap.source!r} is missing "
                          "in out/files")
        file_maps[fmap.source] = fmap
    file_plans: list[FilePlan] = []
    for path in _entries(files_dir):
        if not path.is_file():
            continue
        manifest = _manifest(path)
        fmap = file_maps.get(path.name)
        tags = list(dict.fromkeys([*(manifest.get("tags") or []),
                                   *(fmap.tags if fmap else [])]))
        file_plans.append(FilePlan(
            path, tags,
            is_public=bool(fmap.is_public if fmap else manifest.get("is_public", False)),
            is_permanent=bool(fmap.is_permanent if fmap else manifest.get("is_permanent",
                                                                          False)),
            is_encrypted=bool(fmap.is_encrypted if fmap else manifest.get("is_encrypted",
                                                                          False))))
    return plans, file_plans


def apply_outputs(tables: list[TablePlan], files: list[FilePlan], store: TableStore | None,
                  file_store: FileStore, run_id: str,
                  log: Callable[[str, str], None] | None = None,
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Load the checked tables and upload the files; what landed, for the job record."""
    if tables and store is None:
        raise Invalid("out/tables: no table storage configured")
    tables_out: list[dict[str, Any]] = []
    for plan in tables:
        assert store is not None
        if log:
            log("lakeport", f"loading out/tables/{plan.path.name} into {plan.destination}")
        result = store.load(
            plan.destination, plan.path, incremental=plan.incremental,
            primary_key=plan.primary_key or None, columns=plan.columns,
            delimiter=plan.delimiter, enclosure=plan.enclosure,
            delete_where_column=plan.delete_where_column,
            delete_where_values=plan.delete_where_values or None,
            delete_where_operator=plan.delete_where_operator)
        tables_out.append({"source": plan.path.name, "destination": plan.destination,
                           "rows": result.rows_loaded, "deleted": result.rows_deleted,
                           "incremental": plan.incremental})
    files_out: list[dict[str, Any]] = []
    for fplan in files:
        record = file_store.upload(fplan.path, tags=fplan.tags, run_id=run_id,
                                   is_public=fplan.is_public, is_permanent=fplan.is_permanent,
                                   is_encrypted=fplan.is_encrypted)
        files_out.append({"id": record.id, "name": record.name, "tags": record.tags})
    return tables_out, files_out
