"""Opaque cursors, the shared ``limit`` parameter of list endpoints and the bounded integer
of other query parameters."""

from __future__ import annotations

import base64
from typing import Annotated, Any

import orjson
from fastapi import Query

from lakeport.errors import Invalid

MAX_INT = 2**53
"""The largest integer a query parameter or cursor may hold (exact in every JSON reader; far
inside the store's 64-bit columns, so no comparison or offset overflows)."""
Limit = Annotated[int, Query(ge=1, le=10_000, description="items per page (max 10000)")]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page")]
Integer = Annotated[int | None, Query(ge=-MAX_INT, le=MAX_INT,
                                      description=f"an integer in -2^53..2^53 ({MAX_INT})")]
"""An optional integer query parameter; out of range is 422, not an overflow in the store."""


def _bounded(value: Any) -> bool:
    """Whether every integer in a decoded cursor is within ±MAX_INT."""
    if type(value) is int:
        return -MAX_INT <= value <= MAX_INT
    if isinstance(value, list):
        return all(_bounded(item) for item in value)
    if isinstance(value, dict):
        return all(_bounded(item) for item in value.values())
    return True


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    """The value inside ``cursor`` (None when absent); Invalid when it was not made here."""
    if not cursor:
        return None
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not _bounded(value):
            raise ValueError("an integer is out of range")
        return value
    except (ValueError, RecursionError, orjson.JSONDecodeError):
        raise Invalid(f"bad cursor {cursor[:50]!r}: pass next_cursor of the previous page "
                      "unchanged") from None


def dump_json(value: Any, what: str) -> str:
    """``value`` as JSON text; Invalid naming ``what`` when it cannot be stored."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:
        raise Invalid(f"{what}: {exc}") from None


__all__ = ["MAX_INT", "Cursor", "Integer", "Limit", "decode_cursor", "dump_json",
           "encode_cursor"]
