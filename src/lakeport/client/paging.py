"""Lists come in pages (``{"items", "next_cursor"}``); these follow the cursors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from lakeport.client.http import Http
from lakeport.client.results import Page
from lakeport.errors import Invalid

MAX_PAGE = 10_000
DEFAULT_PAGE = 1_000


def _check(limit: int | None, page_size: int) -> None:
    if limit is not None and limit < 0:
        raise Invalid(f"bad limit {limit}: use 0 or more")
    if not 1 <= page_size <= MAX_PAGE:
        raise Invalid(f"bad page_size {page_size}: use 1 to {MAX_PAGE}")


async def page(http: Http, path: str, params: Mapping[str, Any] | None = None,
               limit: int = 100, cursor: str | None = None) -> Page:
    """One page of ``path`` starting at ``cursor`` (None: the first page)."""
    answer = await http.json("GET", path, params={**(params or {}), "limit": limit,
                                                  "cursor": cursor})
    return Page(list(answer.get("items") or []), answer.get("next_cursor"))


async def iterate(http: Http, path: str, params: Mapping[str, Any] | None = None, *,
                  limit: int | None = None,
                  page_size: int = DEFAULT_PAGE) -> AsyncIterator[dict[str, Any]]:
    """Every item of ``path`` (at most ``limit``), fetching pages of ``page_size`` as needed."""
    _check(limit, page_size)
    left = limit
    cursor: str | None = None
    while left is None or left > 0:
        size = page_size if left is None else min(page_size, left)
        current = await page(http, path, params, size, cursor)
        for item in current.items[:left]:
            yield item
        if left is not None:
            left -= min(len(current.items), left)
        cursor = current.next_cursor
        if not cursor or not current.items:
            return


async def collect(http: Http, path: str, params: Mapping[str, Any] | None = None, *,
                  limit: int | None = None,
                  page_size: int = DEFAULT_PAGE) -> list[dict[str, Any]]:
    """Every item of ``path`` (at most ``limit``) as a list."""
    return [item async for item in iterate(http, path, params, limit=limit,
                                           page_size=page_size)]


__all__ = ["DEFAULT_PAGE", "MAX_PAGE", "collect", "iterate", "page"]
