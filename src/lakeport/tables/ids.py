"""Table ids (``in.c-main.readings``) and the records the table store returns."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from lakeport.errors import Invalid

STAGES = ("in", "out")
BUCKET = re.compile(r"c-[A-Za-z0-9_-]+")
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
HIDDEN_PREFIX = "_lakeport_"
CHANGED = "_lakeport_changed"


@dataclass(frozen=True)
class TableId:
    """A table's id: stage (``in`` or ``out``), bucket (``c-<name>``) and table name."""

    stage: str
    bucket: str
    name: str

    def __str__(self) -> str:
        return f"{self.stage}.{self.bucket}.{self.name}"

    @property
    def path(self) -> str:
        """The table's folder below the lake root: ``<stage>/<bucket>/<name>``."""
        return f"{self.stage}/{self.bucket}/{self.name}"


def parse_table_id(text: str) -> TableId:
    """``"in.c-main.readings"`` as a :class:`TableId`; :class:`Invalid` for anything else."""
    if not isinstance(text, str):
        raise Invalid(f"bad table id {text!r}: expected a string like in.c-main.readings")
    parts = text.split(".")
    if len(parts) != 3:
        raise Invalid(f"bad table id {text!r}: expected <stage>.<bucket>.<table>, "
                      "like in.c-main.readings")
    stage, bucket, name = parts
    if stage not in STAGES:
        raise Invalid(f"bad table id {text!r}: the stage must be 'in' or 'out', not {stage!r}")
    if not BUCKET.fullmatch(bucket):
        raise Invalid(f"bad table id {text!r}: the bucket must be c-<name> (letters, digits, "
                      f"_ and -), not {bucket!r}")
    if not NAME.fullmatch(name):
        raise Invalid(f"bad table id {text!r}: the table name must be letters, digits, _ and -, "
                      f"not {name!r}")
    return TableId(stage, bucket, name)


def check_column_names(columns: list[str], what: str) -> None:
    """Column names are non-empty, unique and not lakeport's hidden ones."""
    if not columns:
        raise Invalid(f"{what}: no columns")
    seen: set[str] = set()
    for column in columns:
        if not isinstance(column, str) or not column:
            raise Invalid(f"{what}: empty column name")
        if column.startswith(HIDDEN_PREFIX):
            raise Invalid(f"{what}: column name {column!r} is reserved "
                          f"(names starting with {HIDDEN_PREFIX} are lakeport's own)")
        if column in seen:
            raise Invalid(f"{what}: column {column!r} appears twice")
        seen.add(column)


@dataclass
class TableInfo:
    """What a table is: its id, columns, primary key, size and change times."""

    id: str
    stage: str
    bucket: str
    name: str
    columns: list[str]
    primary_key: list[str]
    rows: int
    created: datetime
    last_change: datetime | None
    description: str
    column_metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    uri: str = ""
    version: int = 0


@dataclass
class LoadResult:
    """The outcome of one load: rows written and deleted, and the Delta version it made."""

    table_id: str
    rows_loaded: int
    rows_deleted: int
    incremental: bool
    version: int


@dataclass
class ExportResult:
    """The outcome of one export: rows and columns written to ``path``."""

    table_id: str
    rows: int
    columns: list[str]
    path: str


__all__ = ["CHANGED", "ExportResult", "LoadResult", "TableId", "TableInfo", "check_column_names",
           "parse_table_id"]
