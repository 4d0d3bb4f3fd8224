"""Shared pieces of the file routes: the lake, paging, records, tags and metadata."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncConnection

from lakeport.errors import Invalid
from lakeport.server.files.lake import Lake
from lakeport.server.files.paths import name_of, parent_of
from lakeport.server.files.tables import entries, meta, record, tags
from lakeport.server.paging import decode_cursor, encode_cursor
from lakeport.server.store import insert_ignore
from lakeport.server.store.users import users

_TAG = re.compile(r"[^\x00-\x1f\x7f,]{1,200}")
_META_KEY = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
META_HEADER = "x-lakeport-meta-"


async def get_lake(request: Request) -> Lake:
    return request.app.state.files_lake


def decode_path_cursor(cursor: str | None) -> str | None:
    """The path inside a cursor made by :func:`page` (None when absent)."""
    if not cursor:
        return None
    value = decode_cursor(cursor)
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    raise Invalid(f"bad cursor {cursor[:50]!r}: pass next_cursor of the previous page unchanged")


def check_tags(values: Iterable[Any]) -> list[str]:
    """Tags as given (deduplicated); Invalid naming a bad one."""
    out: list[str] = []
    for value in values:
        if not isinstance(value, str) or not _TAG.fullmatch(value):
            raise Invalid(f"bad tag {value!r}: use 1-200 characters without commas")
        if value not in out:
            out.append(value)
    return out


def split_tags(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return check_tags(part.strip() for part in text.split(",") if part.strip())


def check_meta(values: dict[str, Any], *, allow_null: bool = False) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key, value in values.items():
        if not _META_KEY.fullmatch(key):
            raise Invalid(f"bad metadata key {key!r}: use 1-200 printable characters")
        if value is None and allow_null:
            out[key] = None
        elif isinstance(value, str) and "\x00" not in value and len(value) <= 4000:
            out[key] = value
        else:
            raise Invalid(f"bad metadata value for {key!r}: use a string of up to 4000 "
                          "characters" + (" (null removes the key)" if allow_null else ""))
    return out


def meta_from_headers(request: Request) -> dict[str, str | None] | None:
    found = {name[len(META_HEADER):]: value for name, value in request.headers.items()
             if name.startswith(META_HEADER)}
    return check_meta(found) if found else None


async def make_dirs(conn: AsyncConnection, dialect: str, paths: Sequence[str], owner_id: int,
                    now: int) -> None:
    """Create the directories ``paths`` (existing ones are left alone)."""
    if not paths:
        return
    await conn.execute(insert_ignore(dialect, entries), [
        {"path": p, "parent": parent_of(p), "name": name_of(p), "kind": "dir",
         "owner_id": owner_id, "object_key": None, "size": 0, "checksum": None,
         "content_type": None, "created_ms": now, "modified_ms": now, "archived": False}
        for p in paths])


async def set_tags(conn: AsyncConnection, entry_id: int, values: Sequence[str]) -> None:
    await conn.execute(tags.delete().where(tags.c.entry_id == entry_id))
    if values:
        await conn.execute(tags.insert(), [{"entry_id": entry_id, "tag": t} for t in values])


async def set_meta(conn: AsyncConnection, entry_id: int, values: dict[str, str | None],
                   *, replace: bool) -> None:
    if replace:
        await conn.execute(meta.delete().where(meta.c.entry_id == entry_id))
    elif values:
        await conn.execute(meta.delete().where(meta.c.entry_id == entry_id,
                                               meta.c.key.in_(list(values))))
    rows = [{"entry_id": entry_id, "key": k, "value": v} for k, v in values.items()
            if v is not None]
    if rows:
        await conn.execute(meta.insert(), rows)


def with_owner(*columns: Any) -> Any:
    """SELECT entries (or ``columns``) with the owner's name as ``owner``."""
    return sa.select(*(columns or (entries,)), users.c.name.label("owner")).join(
        users, users.c.id == entries.c.owner_id)


async def records(conn: AsyncConnection, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Info records of rows selected with :func:`with_owner` (tags and metadata loaded)."""
    ids = [row.id for row in rows if row.kind == "file"]
    tag_map: dict[int, list[str]] = {}
    meta_map: dict[int, dict[str, str]] = {}
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        for entry_id, tag in await conn.execute(
                sa.select(tags.c.entry_id, tags.c.tag).where(tags.c.entry_id.in_(part))):
            tag_map.setdefault(entry_id, []).append(tag)
        for entry_id, key, value in await conn.execute(
                sa.select(meta.c.entry_id, meta.c.key, meta.c.value).where(
                    meta.c.entry_id.in_(part))):
            meta_map.setdefault(entry_id, {})[key] = value
    return [record(row, row.owner, tag_map.get(row.id), meta_map.get(row.id)) for row in rows]


async def one_record(conn: AsyncConnection, entry_id: int) -> dict[str, Any]:
    row = (await conn.execute(with_owner().where(entries.c.id == entry_id))).one()
    return (await records(conn, [row]))[0]


def page(items: list[Any], rows: Sequence[Any], limit: int) -> dict[str, Any]:
    """``{"items", "next_cursor"}`` of a query by path that fetched ``limit + 1`` ``rows``."""
    more = len(rows) > limit
    return {"items": items,
            "next_cursor": encode_cursor([rows[limit - 1].path]) if more else None}


__all__ = ["META_HEADER", "check_meta", "check_tags", "decode_path_cursor", "get_lake",
           "make_dirs", "page", "records", "set_meta", "set_tags", "split_tags", "with_owner"]
