"""The component configuration (``config.json``) of the data-component contract, validated.

Every mapping is a pydantic model with ``extra="forbid"``: an unknown key is an error that
names its path (``storage.input.tables[0].colums: unknown key``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lakeport.errors import Invalid

Operator = Literal["eq", "ne"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TableInput(_Model):
    """One input table: exported from storage to ``in/tables/<destination>``."""

    source: str
    destination: str | None = None
    columns: list[str] = []
    days: int | None = None
    changed_since: str | None = None
    where_column: str | None = None
    where_values: list[str] = []
    where_operator: Operator = "eq"
    limit: int | None = Field(default=None, ge=0)
    column_types: list[dict[str, Any]] = []

    @model_validator(mode="after")
    def _check(self) -> TableInput:
        if self.where_column and not self.where_values:
            raise ValueError(f"where_column {self.where_column!r} needs where_values")
        if self.where_values and not self.where_column:
            raise ValueError("where_values need a where_column")
        if self.days is not None and self.changed_since:
            raise ValueError("days and changed_since cannot be used together")
        return self

    @property
    def file_name(self) -> str:
        """The file name under ``in/tables``: the destination, else the table id."""
        return self.destination or self.source


class FileInput(_Model):
    """One file mapping: files of the file storage matching tags and/or a query."""

    tags: list[str] = []
    query: str | None = None
    processed_tags: list[str] = []
    filter_by_run_id: bool = False
    limit: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> FileInput:
        if not self.tags and not self.query:
            raise ValueError("a file mapping needs tags or a query")
        return self


class TableOutput(_Model):
    """One output table: ``out/tables/<source>`` loaded into storage."""

    source: str | None = None
    destination: str | None = None
    incremental: bool = False
    columns: list[str] = []
    primary_key: list[str] = []
    delete_where_column: str | None = None
    delete_where_values: list[str] = []
    delete_where_operator: Operator = "eq"
    delimiter: str = ","
    enclosure: str = '"'

    @model_validator(mode="after")
    def _check(self) -> TableOutput:
        if not self.source and not self.destination:
            raise ValueError("an output table needs a source or a destination")
        if self.delete_where_column and not self.delete_where_values:
            raise ValueError(f"delete_where_column {self.delete_where_column!r} needs "
                             "delete_where_values")
        if self.delete_where_values and not self.delete_where_column:
            raise ValueError("delete_where_values need a delete_where_column")
        return self

    @property
    def file_name(self) -> str:
        """The file under ``out/tables``: the source, else the destination table id."""
        return self.source or f"{self.destination}"


class FileOutput(_Model):
    """Properties of a file of ``out/files`` uploaded to the file storage."""

    source: str
    tags: list[str] = []
    is_public: bool = False
    is_permanent: bool = False
    is_encrypted: bool = False
    notify: bool = False


class _Tables(_Model):
    tables: list[TableInput] = []
    files: list[FileInput] = []


class _OutTables(_Model):
    tables: list[TableOutput] = []
    files: list[FileOutput] = []
    data_type_support: str | None = None


class Storage(_Model):
    """The ``storage`` section: input and output mappings."""

    input: _Tables = _Tables()
    output: _OutTables = _OutTables()


class ConfigRow(_Model):
    """A configuration row: its storage and parameters replace / extend the root's."""

    id: str
    name: str = ""
    is_disabled: bool = False
    storage: Storage | None = None
    parameters: dict[str, Any] = {}


class ComponentConfig(_Model):
    """A whole ``config.json`` (plus optional ``rows``, which stay out of the data folder)."""

    storage: Storage = Storage()
    parameters: dict[str, Any] = {}
    image_parameters: dict[str, Any] | list[Any] = {}
    authorization: dict[str, Any] = {}
    action: str = "run"
    rows: list[ConfigRow] = []

    @field_validator("action")
    @classmethod
    def _action(cls, value: str) -> str:
        return value or "run"

    def for_row(self, row_id: str | None) -> ComponentConfig:
        """This configuration with row ``row_id`` applied (NotFound-like Invalid if missing)."""
        if row_id is None:
            return self
        for row in self.rows:
            if row.id == row_id:
                return self.model_copy(update={
                    "storage": row.storage or self.storage,
                    "parameters": {**self.parameters, **row.parameters},
                    "rows": [],
                })
        known = ", ".join(r.id for r in self.rows) or "none"
        raise Invalid(f"configuration has no row {row_id!r} (rows: {known})")

    def contract_json(self) -> dict[str, Any]:
        """The ``config.json`` written into the data folder: defaults filled in (each input
        table's destination), no rows."""
        data = self.model_dump(mode="json", exclude={"rows"}, exclude_none=True)
        for table, model in zip(data["storage"]["input"]["tables"],
                                self.storage.input.tables, strict=True):
            table["destination"] = model.file_name
        return data


def _where(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def parse_config(data: Any, origin: str = "config.json") -> ComponentConfig:
    """Validate a parsed ``config.json``; Invalid naming the first problem and its path."""
    try:
        return ComponentConfig.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = _where(error["loc"])
        if error["type"] == "extra_forbidden":
            message = f"{origin}: {where}: unknown key"
        else:
            text = error["msg"].removeprefix("Value error, ")
            message = f"{origin}: {where}: {text}" if where else f"{origin}: {text}"
        more = len(exc.errors()) - 1
        raise Invalid(message + (f" (and {more} more)" if more else "")) from None


def load_config(path: str | Path) -> ComponentConfig:
    """Read and validate a ``config.json`` file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise Invalid(f"{path}: no such configuration file") from None
    except json.JSONDecodeError as exc:
        raise Invalid(f"{path}: not valid JSON: {exc}") from None
    return parse_config(data, str(path))


def secret_values(value: Any, secret: bool = False) -> set[str]:
    """The values of every key starting with ``#`` (at any depth), to mask in logs."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            found |= secret_values(item, secret or str(key).startswith("#"))
    elif isinstance(value, list):
        for item in value:
            found |= secret_values(item, secret)
    elif secret and value is not None and str(value):
        found.add(str(value))
    return found


def masker(secrets: set[str]) -> Callable[[str], str]:
    """A function replacing every secret value in a text by ``***`` (longest first)."""
    ordered = sorted(secrets, key=len, reverse=True)

    def mask(text: str) -> str:
        for value in ordered:
            text = text.replace(value, "***")
        return text

    return mask
