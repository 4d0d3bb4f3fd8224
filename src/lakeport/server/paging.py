"""Opaque cursors, the shared ``limit`` parameter of list endpoints and the bounded integer
of other query parameters.

A cursor is bound to the query that made it: it carries a short hash of the route's path and
its query parameters but ``cursor`` and ``limit`` (values of a repeated parameter in any
order), and a cursor passed with other parameters is a 422 ``cursor belongs to another
query``. :func:`bind_cursors` sets the current request's query (done app-wide by
:mod:`lakeport.server.query_params`)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Annotated, Any

import orjson
from fastapi import Path, Query

from lakeport.errors import Invalid

MAX_INT = 2**53
"""The largest integer a query parameter or cursor may hold (exact in every JSON reader; far
inside the store's 64-bit columns, so no comparison or offset overflows)."""
Limit = Annotated[int, Query(ge=1, le=10_000, description="items per page (max 10000)")]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page")]
Integer = Annotated[int | None, Query(ge=-MAX_INT, le=MAX_INT,
                                      description=f"an integer in -2^53..2^53 ({MAX_INT})")]
"""An optional integer query parameter; out of range is 422, not an overflow in the store."""
Id = Annotated[int, Path(ge=1, le=MAX_INT, description="an id (1..2^53)")]
"""A numeric id in a route's path; out of range is 422, not an overflow in the store."""
Offset = Annotated[int, Query(ge=0, le=MAX_INT, description="a byte offset (0..2^53)")]


def _bounded(value: Any) -> bool:
    """Whether every integer in a decoded cursor is within ±MAX_INT."""
    if type(value) is int:
        return -MAX_INT <= value <= MAX_INT
    if isinstance(value, list):
        return all(_bounded(item) for item in value)
    if isinstance(value, dict):
        return all(_bounded(item) for item in value.values())
    return True


_UNBOUND = frozenset({"cursor", "limit"})
_query: ContextVar[str] = ContextVar("lakeport_cursor_query", default="")


def query_key(path: str, items: Iterable[tuple[str, str]]) -> str:
    """A short hash of a query: ``path`` and its parameters but cursor and limit."""
    kept = sorted((key, value) for key, value in items if key not in _UNBOUND)
    digest = hashlib.blake2b(orjson.dumps([path, kept]), digest_size=6).digest()
    return base64.urlsafe_b64encode(digest).decode()


def bind_cursors(path: str, items: Iterable[tuple[str, str]]) -> None:
    """Bind the cursors the current request makes and reads to this query."""
    _query.set(query_key(path, items))


def encode_cursor(value: Any) -> str:
    """An opaque cursor holding ``value``, bound to the current query."""
    return base64.urlsafe_b64encode(orjson.dumps([_query.get(), value])).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    """The value inside ``cursor`` (None when absent); Invalid when it was not made here or
    belongs to another query."""
    if not cursor:
        return None
    try:
        bound = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not (isinstance(bound, list) and len(bound) == 2 and isinstance(bound[0], str)):
            raise ValueError("not a cursor")
        key, value = bound
        if not _bounded(value):
            raise ValueError("an integer is out of range")
    except (ValueError, RecursionError, orjson.JSONDecodeError):
        raise Invalid(f"bad cursor {cursor[:50]!r}: pass next_cursor of the previous page "
                      "unchanged") from None
    if key != _query.get():
        raise Invalid("cursor belongs to another query: pass it with the same parameters "
                      "(but limit) as the request that returned it")
    return value


def dump_json(value: Any, what: str) -> str:
    """``value`` as JSON text; Invalid naming ``what`` when it cannot be stored."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:
        raise Invalid(f"{what}: {exc}") from None


__all__ = ["MAX_INT", "Cursor", "Id", "Integer", "Limit", "Offset", "bind_cursors", "decode_cursor",
           "dump_json", "encode_cursor", "query_key"]
