"""Routes on single files: upload, append, download (ranges), delete, archive, info."""

from __future__ import annotations

import asyncio
import mimetypes
import re
from typing import Any, Literal
from urllib.parse import quote
from weakref import WeakValueDictionary

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import IntegrityError
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.responses import StreamingResponse

from lakeport.errors import Conflict, Invalid
from lakeport.server.auth import current_user
from lakeport.server.deps import get_store
from lakeport.server.files.access import (
    ADMIN,
    READ,
    WRITE,
    Access,
    access,
    check_creatable,
    missing,
    require,
)
from lakeport.server.files.common import (
    check_meta,
    check_tags,
    get_lake,
    make_dirs,
    meta_from_headers,
    one_record,
    set_meta,
    set_tags,
    split_tags,
)
from lakeport.server.files.lake import Lake
from lakeport.server.files.paths import ancestors, check_path, name_of, parent_of
from lakeport.server.files.tables import entries, tags
from lakeport.server.files.upload import Stored, store_stream
from lakeport.server.responses import JSONResponse
from lakeport.server.store import Store
from lakeport.server.store.schema import now_ms
from lakeport.server.store.users import User

router = APIRouter(tags=["files"])
BINARY_BODY: dict[str, Any] = {"requestBody": {"required": False, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
_GENERIC_TYPES = {"", "application/octet-stream", "application/x-www-form-urlencoded"}
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[\t !#-\[\]-~]|\\[\t -~])*"'
_MEDIA_TYPE = re.compile(  # RFC 9110 media-type, ASCII only (a header value as it is sent)
    rf"{_TOKEN}/{_TOKEN}(?:[ \t]*;[ \t]*(?:{_TOKEN}=(?:{_TOKEN}|{_QUOTED}))?)*")
_ACTIVE_TYPES = frozenset({  # run by a browser that shows them: served as attachments
    "text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml",
    "text/xsl", "application/xslt+xml", "application/javascript", "application/ecmascript",
    "application/x-javascript", "application/x-ecmascript", "text/javascript",
    "text/ecmascript", "text/jscript", "text/livescript", "text/x-javascript",
    "text/x-ecmascript", "text/javascript1.0", "text/javascript1.1", "text/javascript1.2",
    "text/javascript1.3", "text/javascript1.4", "text/javascript1.5"})
_appending: WeakValueDictionary[str, asyncio.Lock] = WeakValueDictionary()


class InfoPatch(BaseModel):
    """Changes to a file's tags and metadata (``null`` metadata values remove keys)."""

    model_config = ConfigDict(extra="forbid")

    tags: list[str] | None = None
    add_tags: list[str] | None = None
    remove_tags: list[str] | None = None
    metadata: dict[str, str | None] | None = None


def content_type_of(given: str | None, header: str | None, path: str) -> str:
    """The explicit type, else the request's Content-Type, else a guess from the name.

    Invalid for a value that is not a valid header value ``type/subtype[; name=value]``.
    """
    for value in ((given or "").strip(" \t"), (header or "").split(";")[0].strip(" \t")):
        if value and value.lower() not in _GENERIC_TYPES:
            if len(value) > 200 or not _MEDIA_TYPE.fullmatch(value):
                raise Invalid(f"bad content type {value[:80]!r}: use type/subtype[; name=value] "
                              "in ASCII (RFC 9110), like text/csv or text/csv; charset=utf-8")
            return value
    return mimetypes.guess_type(name_of(path))[0] or "application/octet-stream"


def check_writable(found: Access, *, overwrite: bool) -> None:
    """Raise unless the caller may create (or, with ``overwrite``, replace) the file."""
    check_creatable(found)
    row = found.row
    if row is not None:
        if found.level < READ:
            raise missing(found.path)
        if row.kind == "dir":
            raise Conflict(f"'{found.path}' is a directory")
        if not overwrite:
            raise Conflict(f"'{found.path}' exists: add ?overwrite=true to replace it")
        require(found, WRITE, "overwrite")


async def save_file(store: Store, user: User, path: str, stored: Stored, *, overwrite: bool,
                content_type: str | None, tag_list: list[str] | None,
                meta_map: dict[str, str | None] | None, appended_to: str | None = None,
                ) -> tuple[dict[str, Any], str | None]:
    """Point the file's metadata at ``stored`` in one transaction; (record, replaced key).

    ``appended_to`` is the object an append copied: the file must still point at it.
    """
    try:
        async with store.begin() as conn:
            found = await access(conn, user, path)
            check_writable(found, overwrite=overwrite)
            current = found.row.object_key if found.row is not None else None
            if appended_to is not None and current != appended_to:
                raise Conflict(f"'{path}' changed during the append: try again")
            now = now_ms()
            values = {"object_key": stored.key, "size": stored.size,
                      "checksum": stored.sha256, "modified_ms": now}
            if content_type is not None:
                values["content_type"] = content_type
            old_key = None
            if found.row is None:
                owner = user.id if found.tree_owner is None else found.tree_owner
                await make_dirs(conn, store.dialect,
                                [p for p in ancestors(path) if p not in found.above], owner, now)
                result = await conn.execute(entries.insert().values(
                    path=path, parent=parent_of(path), name=name_of(path), kind="file",
                    owner_id=owner, created_ms=now, archived=False,
                    **{"content_type": "application/octet-stream", **values}))
                entry_id = result.inserted_primary_key[0]
            else:
                entry_id, old_key = found.row.id, found.row.object_key
                result = await conn.execute(entries.update().where(
                    entries.c.id == entry_id, entries.c.object_key == old_key).values(**values))
                if result.rowcount != 1:
                    raise Conflict(f"'{path}' changed during the upload: try again")
            if tag_list is not None:
                await set_tags(conn, entry_id, tag_list)
            if meta_map is not None:
                await set_meta(conn, entry_id, meta_map, replace=True)
            return await one_record(conn, entry_id), old_key
    except IntegrityError as exc:
        raise Conflict(f"'{path}' was created at the same time by another request") from exc


@router.put("/files/{path:path}", status_code=201, openapi_extra=BINARY_BODY,
            summary="Upload a file (the body is the raw bytes)")
async def put_file(request: Request, path: str, overwrite: bool = False,
                   tags: str | None = Query(None, description="comma-separated tags"),
                   content_type: str | None = None,
                   user: User = Depends(current_user), store: Store = Depends(get_store),
                   lake: Lake = Depends(get_lake)) -> JSONResponse:
    path = check_path(path)
    tag_list, meta_map = split_tags(tags), meta_from_headers(request)
    kind = content_type_of(content_type, request.headers.get("content-type"), path)
    async with store.connect() as conn:
        check_writable(await access(conn, user, path), overwrite=overwrite)
    stored = await store_stream(lake, request.stream())
    try:
        info, old_key = await save_file(store, user, path, stored, overwrite=overwrite,
                                        content_type=kind, tag_list=tag_list, meta_map=meta_map)
    except BaseException:
        await lake.delete(stored.key)
        raise
    # the replaced object goes after the answer (an orphan if the server dies meanwhile)
    return JSONResponse(info, 200 if old_key else 201,
                        background=BackgroundTask(lake.delete, old_key) if old_key else None)


@router.post("/files/{path:path}", openapi_extra=BINARY_BODY,
             summary="Append the body to a file, or archive / unarchive it")
async def file_op(request: Request, path: str,
                  op: Literal["append", "archive", "unarchive"] = Query(...),
                  user: User = Depends(current_user), store: Store = Depends(get_store),
                  lake: Lake = Depends(get_lake)) -> JSONResponse:
    path = check_path(path)
    if op != "append":
        async with store.begin() as conn:
            row = require(await access(conn, user, path), ADMIN, op)
            if row.kind != "file":
                raise Conflict(f"'{path}' is a directory: only files are archived")
            await conn.execute(entries.update().where(entries.c.id == row.id).values(
                archived=op == "archive"))
            return JSONResponse(await one_record(conn, row.id))
    lock = _appending.setdefault(path, asyncio.Lock())
    async with lock:  # appends to one path in this process run one after the other
        return JSONResponse(await _append(request, path, user, store, lake))


async def _append(request: Request, path: str, user: User, store: Store,
                  lake: Lake) -> dict[str, Any]:
    async with store.connect() as conn:
        found = await access(conn, user, path)
    check_writable(found, overwrite=True)
    prepend = found.row.object_key if found.row is not None else None
    try:
        stored = await store_stream(lake, request.stream(), prepend=prepend)
    except FileNotFoundError as exc:
        raise Conflict(f"'{path}' changed during the append: try again") from exc
    kind = None if found.row is not None else content_type_of(
        None, request.headers.get("content-type"), path)
    try:
        info, old_key = await save_file(store, user, path, stored, overwrite=True,
                                        content_type=kind, tag_list=None, meta_map=None,
                                        appended_to=prepend)
    except BaseException:
        await lake.delete(stored.key)
        raise
    if old_key:
        await lake.delete(old_key)
    return info


def parse_range(header: str, size: int) -> tuple[int, int]:
    """``bytes=a-b`` / ``a-`` / ``-n`` → (start, end exclusive); 416 when unsatisfiable."""
    match = _RANGE.fullmatch(header.strip())
    start = end = -1
    if match and (match[1] or match[2]):
        if match[1]:
            start = int(match[1])
            end = min(int(match[2]) + 1, size) if match[2] else size
            if match[2] and int(match[2]) < start:
                end = -1
        else:
            start, end = max(size - int(match[2]), 0), size if int(match[2]) else -1
    if start < 0 or end < 0 or start >= size or end <= start:
        raise HTTPException(416, f"range {header!r} is not satisfiable for {size} bytes",
                            headers={"Content-Range": f"bytes */{size}"})
    return start, end


@router.get("/files/{path:path}", summary="Download a file (supports Range: bytes=a-b)",
            response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}, 206: {}, 416: {}})
async def get_file(request: Request, path: str, user: User = Depends(current_user),
                   store: Store = Depends(get_store), lake: Lake = Depends(get_lake)) -> Response:
    path = check_path(path)
    for attempt in range(3):  # an overwrite may replace the object between the two steps
        async with store.connect() as conn:
            row = require(await access(conn, user, path), READ, "read")
        if row.kind != "file":
            raise Invalid(f"'{path}' is a directory: list it with GET /api/v1/ls/{path}")
        start, end, status = 0, row.size, 200
        if request.headers.get("range"):
            start, end = parse_range(request.headers["range"], row.size)
            status = 206
        try:
            body = await lake.read(row.object_key, start, end)
            break
        except FileNotFoundError:
            if attempt == 2:
                raise Conflict(f"'{path}' is being replaced: try again") from None
    headers = {"ETag": f'"{row.checksum}"', "Accept-Ranges": "bytes",
               "Content-Length": str(end - start), "X-Content-Type-Options": "nosniff"}
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{row.size}"
    media_type = row.content_type or ""  # a type stored before uploads were checked may be bad
    if len(media_type) > 200 or not _MEDIA_TYPE.fullmatch(media_type):
        media_type = "application/octet-stream"
    essence = media_type.split(";")[0].strip().lower()
    if essence in _ACTIVE_TYPES or essence.endswith("+xml"):  # never rendered on our origin
        headers["Content-Disposition"] = \
            f"attachment; filename*=UTF-8''{quote(name_of(path), safe='')}"
    return StreamingResponse(body, status, headers=headers, media_type=media_type)


@router.delete("/files/{path:path}", status_code=204, response_class=Response,
               summary="Delete a file")
async def delete_file(path: str, user: User = Depends(current_user),
                      store: Store = Depends(get_store),
                      lake: Lake = Depends(get_lake)) -> Response:
    path = check_path(path)
    async with store.begin() as conn:
        row = require(await access(conn, user, path), ADMIN, "delete")
        if row.kind != "file":
            raise Conflict(f"'{path}' is a directory: delete it with DELETE /api/v1/dirs/{path}")
        await conn.execute(entries.delete().where(entries.c.id == row.id))
    await lake.delete(row.object_key)
    return Response(status_code=204)


@router.get("/info/{path:path}", summary="A file's or directory's info record")
async def get_info(path: str, user: User = Depends(current_user),
                   store: Store = Depends(get_store)) -> JSONResponse:
    path = check_path(path)
    async with store.connect() as conn:
        row = require(await access(conn, user, path), READ, "read")
        return JSONResponse(await one_record(conn, row.id))


@router.patch("/info/{path:path}", summary="Change a file's tags and metadata")
async def patch_info(path: str, change: InfoPatch, user: User = Depends(current_user),
                     store: Store = Depends(get_store)) -> JSONResponse:
    path = check_path(path)
    async with store.begin() as conn:
        row = require(await access(conn, user, path), WRITE, "change the metadata of")
        if row.kind != "file":
            raise Conflict(f"'{path}' is a directory: only files have tags and metadata")
        if change.tags is not None or change.add_tags or change.remove_tags:
            current = (await conn.execute(sa.select(tags.c.tag).where(
                tags.c.entry_id == row.id))).scalars().all()
            wanted = check_tags(change.tags if change.tags is not None else current)
            wanted += [t for t in check_tags(change.add_tags or []) if t not in wanted]
            removed = set(check_tags(change.remove_tags or []))
            await set_tags(conn, row.id, [t for t in wanted if t not in removed])
        if change.metadata:
            await set_meta(conn, row.id, check_meta(change.metadata, allow_null=True),
                           replace=False)
        return JSONResponse(await one_record(conn, row.id))


__all__ = ["check_writable", "content_type_of", "parse_range", "router", "save_file"]
