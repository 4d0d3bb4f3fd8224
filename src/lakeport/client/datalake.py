"""``client.datalake``: files in the platform's data lake — put, get (ranges), append, archive,
metadata and tags, directories, search, shares, relations, lineage, and files read as tables."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal

from lakeport.client import paging
from lakeport.client.http import Http, as_time
from lakeport.client.results import (
    FRAME_FORMATS,
    Page,
    ResultFormat,
    arrow_to,
    check_format,
    render,
    shape,
    to_table,
)
from lakeport.client.transfer import BodySource, Dest, Source, quote_path, write_response
from lakeport.errors import Invalid

Range = tuple[int, int | None]
INFO_COLUMNS = ("path", "kind", "size", "owner", "modified", "tags")
META_HEADER = "x-lakeport-meta-"


def _range_header(byte_range: Range | None) -> dict[str, str]:
    if byte_range is None:
        return {}
    start, end = byte_range
    if start < 0 or (end is not None and end < start):
        raise Invalid(f"bad range {byte_range}: use (first, last) byte offsets, last ≥ first")
    return {"range": f"bytes={start}-{'' if end is None else end}"}


def _meta_headers(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        text = str(value)
        if not key.isascii() or not text.isascii() or "\n" in text:
            raise Invalid(f"metadata {key!r}: keys and values sent on upload must be one "
                          "line of ASCII (use update(metadata=...) for others)")
        headers[META_HEADER + key] = text
    return headers


def _listing(items: list[dict[str, Any]], fmt: str) -> Any:
    return shape(items, fmt, INFO_COLUMNS if fmt == "table" else None)


class Datalake:
    """The data-lake file service. Paths are relative and ``/``-separated (``a/b/c.csv``)."""

    def __init__(self, http: Http) -> None:
        self._http = http

    # -- bytes ------------------------------------------------------------------------------
    async def put(self, path: str, source: Source, *, overwrite: bool = False,
                  tags: Sequence[str] | None = None, content_type: str | None = None,
                  metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Upload ``source`` (bytes, a local file path, a binary file object or an async
        iterable of bytes), streamed; the file's info. Conflict when it exists and not
        ``overwrite``."""
        params = {"overwrite": overwrite, "tags": ",".join(tags) if tags else None,
                  "content_type": content_type}
        headers = {"content-type": "application/octet-stream", **_meta_headers(metadata)}
        return await self._http.json("PUT", f"/files/{quote_path(path)}", params=params,
                                     body=BodySource(source), headers=headers,
                                     safe=overwrite)

    async def append(self, path: str, source: Source) -> dict[str, Any]:
        """Append ``source`` to a file (created when missing); the file's info."""
        return await self._http.json("POST", f"/files/{quote_path(path)}",
                                     params={"op": "append"}, body=BodySource(source),
                                     headers={"content-type": "application/octet-stream"})

    async def get(self, path: str, dest: Dest | None = None, *,
                  range: Range | None = None) -> bytes | int:
        """The file's bytes, or — with ``dest`` (a path or a binary file) — stream them there
        and return the byte count. ``range=(first, last)`` reads part (last inclusive)."""
        if dest is None:
            response = await self._http.request("GET", f"/files/{quote_path(path)}",
                                                 headers=_range_header(range))
            return response.content
        async with self._http.stream("GET", f"/files/{quote_path(path)}",
                                     headers=_range_header(range)) as response:
            return await write_response(response, dest)

    async def stream(self, path: str, *, range: Range | None = None) -> AsyncIterator[bytes]:
        """The file's bytes chunk by chunk: ``async for chunk in lake.stream(path)``."""
        async with self._http.stream("GET", f"/files/{quote_path(path)}",
                                     headers=_range_header(range)) as response:
            async for chunk in response.aiter_bytes():
                yield chunk

    async def delete(self, path: str) -> None:
        """Delete a file."""
        await self._http.request("DELETE", f"/files/{quote_path(path)}")

    async def archive(self, path: str) -> dict[str, Any]:
        """Archive a file: hidden from ls and search unless asked for; its info."""
        return await self._http.json("POST", f"/files/{quote_path(path)}",
                                     params={"op": "archive"}, safe=True)

    # -- metadata ---------------------------------------------------------------------------
    async def info(self, path: str, *, format: ResultFormat = "json") -> Any:
        """A file's info: size, checksum, content type, times, owner, tags, metadata."""
        check_format(format)
        return shape(await self._http.json("GET", f"/info/{quote_path(path)}"), format)

    async def update(self, path: str, *, tags: Sequence[str] | None = None,
                     add_tags: Sequence[str] | None = None,
                     remove_tags: Sequence[str] | None = None,
                     metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Set ``tags``, add or remove some, or set ``metadata`` keys; the new info."""
        body = {key: list(value) if not isinstance(value, Mapping) else dict(value)
                for key, value in (("tags", tags), ("add_tags", add_tags),
                                   ("remove_tags", remove_tags), ("metadata", metadata))
                if value is not None}
        return await self._http.json("PATCH", f"/info/{quote_path(path)}", json=body)

    # -- directories ------------------------------------------------------------------------
    async def mkdir(self, path: str) -> dict[str, Any]:
        """Create a directory and its parents."""
        return await self._http.json("POST", f"/dirs/{quote_path(path)}", safe=True)

    async def rmdir(self, path: str, *, recursive: bool = False) -> None:
        """Delete a directory (Conflict when not empty and not ``recursive``)."""
        await self._http.request("DELETE", f"/dirs/{quote_path(path)}",
                                 params={"recursive": recursive})

    def _ls_path(self, path: str) -> str:
        path = path.strip("/")
        return f"/ls/{quote_path(path)}" if path else "/ls"

    def iter_ls(self, path: str = "", *, limit: int | None = None,
                page_size: int = paging.DEFAULT_PAGE) -> AsyncIterator[dict[str, Any]]:
        """Every entry of a directory (the root by default), page by page."""
        return paging.iterate(self._http, self._ls_path(path), limit=limit,
                              page_size=page_size)

    async def ls_page(self, path: str = "", *, limit: int = 100,
                      cursor: str | None = None) -> Page:
        """One page of a directory listing."""
        return await paging.page(self._http, self._ls_path(path), None, limit, cursor)

    async def ls(self, path: str = "", *, limit: int | None = None,
                 format: ResultFormat = "json") -> Any:
        """The files and directories in ``path`` (the root by default)."""
        check_format(format)
        return _listing([item async for item in self.iter_ls(path, limit=limit)], format)

    # -- search -----------------------------------------------------------------------------
    def iter_search(self, name: str | None = None, *, tags: Sequence[str] = (),
                    metadata: Mapping[str, Any] | None = None, after: Any = None,
                    before: Any = None, min_size: int | None = None,
                    max_size: int | None = None, under: str | None = None,
                    archived: bool = False, limit: int | None = None,
                    page_size: int = paging.DEFAULT_PAGE) -> AsyncIterator[dict[str, Any]]:
        """Every file the caller may read that matches, page by page."""
        params: dict[str, Any] = {
            "name": name, "tag": list(tags) or None, "after": as_time(after),
            "before": as_time(before), "min_size": min_size, "max_size": max_size,
            "under": under, "archived": archived}
        params.update({f"meta.{key}": str(value) for key, value in (metadata or {}).items()})
        return paging.iterate(self._http, "/search", params, limit=limit, page_size=page_size)

    async def search(self, name: str | None = None, *, tags: Sequence[str] = (),
                     metadata: Mapping[str, Any] | None = None, after: Any = None,
                     before: Any = None, min_size: int | None = None,
                     max_size: int | None = None, under: str | None = None,
                     archived: bool = False, limit: int | None = None,
                     format: ResultFormat = "json") -> Any:
        """Files by name glob (``*.csv``), all of ``tags``, ``metadata`` key/values, modified
        ``after``/``before``, size and directory."""
        check_format(format)
        items = [item async for item in self.iter_search(
            name, tags=tags, metadata=metadata, after=after, before=before, min_size=min_size,
            max_size=max_size, under=under, archived=archived, limit=limit)]
        return _listing(items, format)

    # -- shares and relations ---------------------------------------------------------------
    async def share(self, path: str, user: str,
                    permission: Literal["read", "write", "admin"] = "read") -> dict[str, Any]:
        """Let ``user`` read (``write``: also write; ``admin``: also delete and share) a file
        or everything under a directory."""
        return await self._http.json("POST", "/shares", safe=True,
                                     json={"path": path, "user": user,
                                           "permission": permission})

    async def shares(self, path: str | None = None, *, format: ResultFormat = "json") -> Any:
        """The shares of ``path`` (every share the caller made when None)."""
        check_format(format)
        return shape(await paging.collect(self._http, "/shares", {"path": path}), format)

    async def unshare(self, path: str, user: str) -> None:
        """Take back ``user``'s share of ``path``."""
        await self._http.request("DELETE", "/shares", params={"path": path, "user": user})

    async def relate(self, source: str, target: str,
                     label: str = "derived_from") -> dict[str, Any]:
        """Record that ``source`` relates to ``target`` (``derived_from``: made from it)."""
        return await self._http.json("POST", "/relations",
                                     json={"from": source, "to": target, "label": label})

    async def relations(self, path: str | None = None, *,
                        format: ResultFormat = "json") -> Any:
        """The relations from or to ``path`` (every relation the caller may see when None)."""
        check_format(format)
        return shape(await paging.collect(self._http, "/relations", {"path": path}), format,
                     ("from", "to", "label", "created"))

    async def lineage(self, path: str, *, direction: Literal["up", "down"] = "up",
                      depth: int = 10) -> dict[str, Any]:
        """What ``path`` derives from (``up``) or what derives from it (``down``):
        ``{"path", "nodes", "edges"}``."""
        return await self._http.json("GET", f"/lineage/{quote_path(path)}",
                                     params={"direction": direction, "depth": depth})

    # -- tables -----------------------------------------------------------------------------
    async def table(self, path: str, *, limit: int = 1000,
                    format: ResultFormat = "json") -> Any:
        """A CSV, Parquet or JSON(-lines) file read as a table: json gives
        ``{"columns", "rows", "total_rows"}``; a DataFrame travels as Parquet."""
        check_format(format)
        url = f"/table/{quote_path(path)}"
        if format in FRAME_FORMATS:
            import pyarrow.parquet as pq

            response = await self._http.request("GET", url,
                                                params={"format": "parquet", "limit": limit})
            return arrow_to(pq.read_table(io.BytesIO(response.content)), format)
        answer = await self._http.json("GET", url, params={"format": "json", "limit": limit})
        if format == "json":
            return answer
        rows = [dict(zip(answer["columns"], row, strict=False)) for row in answer["rows"]]
        return render(to_table(rows, answer["columns"]))


__all__ = ["Datalake", "Range"]
