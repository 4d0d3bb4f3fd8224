"""CSV uploads, told apart by their header:

- wide: ``time`` and one column per observed property, optionally ``sensor`` and ``feature``
  columns that override the query parameters per row;
- long (the layout of a CSV download): ``property``, ``time`` and ``value``, optionally
  ``sensor`` and ``feature`` (``sensor,feature,property,time,value``); one observation a row.

Errors name the 1-based line of the file (the header is line 1).
"""

from __future__ import annotations

import csv
import io
from typing import Any

from lakeport.errors import Invalid, NotFound

SPECIAL = ("time", "sensor", "feature")
LONG = ("sensor", "feature", "property", "time", "value")
"""The columns of the long form (a header with ``property`` and ``value`` is long)."""


class InvalidAt(Invalid):
    """Invalid input at a place the ``details`` name."""

    def __init__(self, message: str, details: Any) -> None:
        super().__init__(message)
        self.details = details


class NotFoundAt(NotFound):
    def __init__(self, message: str, details: Any) -> None:
        super().__init__(message)
        self.details = details


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        raise InvalidAt(f"line {line}: the file is not UTF-8 ({exc.reason})",
                        {"line": line, "column": None}) from None


def read(body: bytes, sensor: str | None, feature: str | None) -> tuple[list[Any], bool]:
    """The file's observations as parts (one per sensor and feature, and per property in the
    long form), in file order; and whether the file is in the long form."""
    from lakeport.server.observations.ingest import Part

    text = _text(body)
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise InvalidAt(f"line {line}: the file contains a NUL character",
                        {"line": line, "column": None})
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise InvalidAt("line 1: the file is empty: a header row with time and observed "
                            "properties is required", {"line": 1, "column": None})
        header = [name.strip() for name in header]
        long = "property" in header and "value" in header
        _check_header(header, sensor, long)
        at = {name: i for i, name in enumerate(header)}
        props = [(name, i) for i, name in enumerate(header) if name not in SPECIAL]
        t_at, s_at, f_at = at["time"], at.get("sensor"), at.get("feature")
        p_at, v_at = at.get("property"), at.get("value")
        parts: dict[tuple[str, str | None, str | None], Part] = {}
        width = len(header)
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != width:
                raise InvalidAt(f"line {line}: has {len(row)} fields, the header has {width}",
                                {"line": line, "column": None})
            row_sensor = (row[s_at] if s_at is not None else "") or sensor
            if not row_sensor:
                raise InvalidAt(f"line {line}: no sensor (the sensor column is empty and no "
                                "?sensor= was given)", {"line": line, "column": "sensor"})
            row_feature = (row[f_at] if f_at is not None else "") or feature
            row_property = row[p_at].strip() if p_at is not None else None
            if long and not row_property:
                raise InvalidAt(f"line {line}: the property column is empty",
                                {"line": line, "column": "property"})
            key = (row_sensor, row_feature, row_property)
            part = parts.get(key)
            if part is None:
                columns = [(row_property, v_at)] if long else props
                part = parts[key] = Part(row_sensor, row_feature,
                                         columns={name: [] for name, _ in columns})
                part.located = s_at is not None or f_at is not None
            part.rows.append(line)
            part.times.append(row[t_at].strip())
            if long:
                part.columns[row_property].append(row[v_at])
            else:
                for name, i in props:
                    part.columns[name].append(row[i])
    except csv.Error as exc:
        line = reader.line_num
        raise InvalidAt(f"line {line}: {exc}", {"line": line, "column": None}) from None
    return list(parts.values()), long


def _check_header(header: list[str], sensor: str | None, long: bool) -> None:
    def bad(message: str, column: str | None = None) -> Exception:
        return InvalidAt(f"line 1: {message}", {"line": 1, "column": column})

    if "time" not in header:
        raise bad("the header has no time column (columns: time, one per observed property, "
                  "optionally sensor and feature; or sensor,feature,property,time,value)")
    seen: set[str] = set()
    for name in header:
        if not name:
            raise bad("the header has an empty column name")
        if name in seen:
            raise bad(f"column {name!r} appears twice", name)
        seen.add(name)
    if long:
        for name in header:
            if name not in LONG:
                raise bad(f"column {name!r} is not one of {','.join(LONG)} (a header with "
                          "property and value columns is the long form)", name)
    elif len(header) == 1 or all(name in SPECIAL for name in header):
        raise bad("the header names no observed property")
    if sensor is None and "sensor" not in header:
        raise Invalid("no sensor: pass ?sensor=NAME or add a sensor column")


__all__ = ["LONG", "SPECIAL", "InvalidAt", "NotFoundAt", "read"]
