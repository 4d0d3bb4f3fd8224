"""Values checked against their observed property's data type, column by column.

A column is a list of raw values (JSON values from a batch, strings from a CSV file); ``None``
(or an empty CSV cell) means "no observation" and is skipped. Numbers are stored as numbers;
strings, booleans (``"true"``/``"false"``) and objects (JSON text) as text.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from lakeport.errors import Invalid

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


class BadValue(Invalid):
    """A value that does not fit its property; ``index`` is its position in the column."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


def _clean_text(text: str) -> str:
    if "\x00" in text:
        raise ValueError("text must not contain NUL characters")
    return text


def _from_json(value: Any, data_type: str) -> float | str:
    kind = type(value)
    if data_type == "number":
        if kind is float or kind is int:
            number = float(value)
            if math.isfinite(number):
                return number
        raise ValueError(f"{value!r} is not a number")
    if data_type == "string":
        if kind is str:
            return _clean_text(value)
        raise ValueError(f"{value!r} is not a string")
    if data_type == "boolean":
        if kind is bool:
            return "true" if value else "false"
        raise ValueError(f"{value!r} is not a boolean")
    if kind is dict or kind is list:
        return orjson.dumps(value).decode()
    raise ValueError(f"{value!r} is not an object")


def _from_text(value: str, data_type: str) -> float | str:
    if data_type == "number":
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"{value!r} is not a finite number")
        return number
    if data_type == "string":
        return _clean_text(value)
    if data_type == "boolean":
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return "true"
        if lowered in _FALSE:
            return "false"
        raise ValueError(f"{value!r} is not a boolean (true/false)")
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise ValueError(f"{value!r} is not a JSON object") from None
    if not isinstance(parsed, dict | list):
        raise ValueError(f"{value!r} is not a JSON object")
    return orjson.dumps(parsed).decode()


def encode_column(values: list[Any], data_type: str, text: bool = False
                  ) -> tuple[np.ndarray | None, list[float] | None, list[str] | None]:
    """(indexes kept or None for all, numbers, texts) of a column; BadValue on the first bad
    value. ``text``: the values are CSV strings (an empty string means no observation)."""
    if not text and data_type == "number":
        try:
            numbers = np.array(values, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            numbers = None
        if numbers is not None and numbers.ndim == 1 and np.isfinite(numbers).all() and \
                not any(type(v) is bool or type(v) is str for v in values):
            return None, numbers.tolist(), None
    convert = _from_text if text else _from_json
    kept: list[int] = []
    out: list[Any] = []
    missing = "" if text else None
    for index, value in enumerate(values):
        if value is None or value == missing:
            continue
        try:
            out.append(convert(value, data_type))
        except (ValueError, TypeError, orjson.JSONEncodeError) as exc:
            raise BadValue(index, f"{exc} (the property's data_type is {data_type})") from None
        kept.append(index)
    keep = None if len(kept) == len(values) else np.array(kept, np.int64)
    if data_type == "number":
        return keep, out, None
    return keep, None, out


__all__ = ["BadValue", "encode_column"]

