"""The data folder a component runs on: ``config.json``, ``in/tables`` and ``in/files`` with
their manifests, ``in/state.json`` (always present, ``{}`` when empty), ``out/tables`` and
``out/files``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakeport.components.config import ComponentConfig
from lakeport.components.files import FileStore, StoredFile
from lakeport.errors import Invalid, NotFound

if TYPE_CHECKING:
    from lakeport.tables import TableStore

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"  # the contract's manifest time format


@dataclass
class InputSummary:
    """What was handed to the run."""

    tables: list[dict[str, Any]] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    processed: list[tuple[list[int], list[str]]] = field(default_factory=list)


def _time(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.strftime(TIME_FORMAT)


def _metadata(items: Any) -> list[dict[str, Any]]:
    if isinstance(items, dict):
        return [{"key": k, "value": v} for k, v in items.items()]
    return list(items or [])


def table_manifest(info: Any, columns: list[str], rows: int) -> dict[str, Any]:
    """The input manifest of an exported table (the contract's fields)."""
    column_metadata = {name: _metadata(items)
                       for name, items in (getattr(info, "column_metadata", None) or {}).items()
                       if name in columns}
    description = getattr(info, "description", None)
    return {
        "id": info.id,
        "uri": getattr(info, "uri", None) or "",
        "name": info.name,
        "primary_key": [c for c in (info.primary_key or []) if c in columns],
        "created": _time(info.created),
        "last_change_date": _time(info.last_change),
        "last_import_date": _time(info.last_change),
        "columns": list(columns),
        "rows_count": rows,
        "is_alias": False,
        "attributes": [],
        "indexed_columns": list(info.primary_key or []),
        "metadata": [{"key": "KBC.description", "value": description}] if description else [],
        "column_metadata": column_metadata,
    }


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, default=str))


def make_data_folder(folder: Path, config: ComponentConfig, tables: TableStore | None,
                     files: FileStore, run_id: str, state: dict[str, Any],
                     adaptive_since: datetime | None = None) -> InputSummary:
    """Write the data folder for one run; every input is checked before anything is
    exported (NotFound for a missing table, Invalid for a file mapping over its limit)."""
    for sub in ("in/tables", "in/files", "out/tables", "out/files"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    _write_json(folder / "config.json", config.contract_json())
    _write_json(folder / "in" / "state.json", state or {})
    summary = InputSummary()
    inputs = config.storage.input
    if inputs.tables and tables is None:
        raise Invalid("storage.input.tables: no table storage configured")
    for index, mapping in enumerate(inputs.tables):
        assert tables is not None
        if not tables.exists(mapping.source):
            raise NotFound(f"storage.input.tables[{index}]: table {mapping.source!r} does not "
                           "exist")
        if mapping.changed_since and mapping.changed_since != "adaptive":
            from lakeport.tables import parse_since

            try:
                parse_since(mapping.changed_since)
            except Invalid as exc:
                raise Invalid(f"storage.input.tables[{index}]: {exc}") from None
    handed: list[list[StoredFile]] = []
    for index, fmap in enumerate(inputs.files):
        handed.append(files.find(fmap.tags, fmap.query,
                                 run_id if fmap.filter_by_run_id else None, fmap.limit,
                                 where=f"storage.input.files[{index}]"))
    for mapping in inputs.tables:
        assert tables is not None
        dest = folder / "in" / "tables" / mapping.file_name
        changed_since: Any = mapping.changed_since
        if changed_since == "adaptive":
            changed_since = adaptive_since
        result = tables.export(
            mapping.source, dest, columns=mapping.columns or None,
            where_column=mapping.where_column, where_values=mapping.where_values or None,
            where_operator=mapping.where_operator, changed_since=changed_since,
            days=mapping.days, limit=mapping.limit)
        info = tables.info(mapping.source)
        _write_json(dest.with_name(dest.name + ".manifest"),
                    table_manifest(info, list(result.columns), result.rows))
        summary.tables.append({"source": mapping.source, "destination": mapping.file_name,
                               "rows": result.rows})
    seen: set[int] = set()
    for fmap, found in zip(inputs.files, handed, strict=True):
        for record in found:
            if record.id not in seen:
                seen.add(record.id)
                dest = folder / "in" / "files" / f"{record.id}_{record.name}"
                files.copy_to(record, dest)
                _write_json(dest.with_name(dest.name + ".manifest"), record.manifest())
                summary.files.append({"id": record.id, "name": record.name})
        if fmap.processed_tags and found:
            summary.processed.append(([r.id for r in found], list(fmap.processed_tags)))
    return summary
