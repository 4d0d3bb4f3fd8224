"""Opaque cursors and the shared ``limit`` parameter of list endpoints."""

from __future__ import annotations

import base64
from typing import Annotated, Any

import orjson
from fastapi import Query

from lakeport.errors import Invalid

Limit = Annotated[int, Query(ge=1, le=10_000, description="items per page (max 10000)")]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page")]


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    """The value inside ``cursor`` (None when absent); Invalid when it was not made here."""
    if not cursor:
        return None
    try:
        return orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise Invalid(f"bad cursor {cursor[:50]!r}: pass next_cursor of the previous page "
                      "unchanged") from None


def dump_json(value: Any, what: str) -> str:
    """``value`` as JSON text; Invalid naming ``what`` when it cannot be stored."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:
        raise Invalid(f"{what}: {exc}") from None


__all__ = ["Cursor", "Limit", "decode_cursor", "dump_json", "encode_cursor"]
