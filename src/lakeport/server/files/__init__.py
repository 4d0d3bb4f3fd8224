"""Data-lake files: bytes in the lake, metadata in the store.

Upload (streamed, any size), download with ranges, append, archive, tags and metadata,
directories, search, shares, relations and lineage, and CSV / Parquet / JSON files read as
tables. See docs/server/files.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from lakeport.server.files import routes_files, routes_links, routes_tree
from lakeport.server.files.lake import Lake, lake_for
from lakeport.server.files.sweep import sweep_orphans
from lakeport.server.store import Store

log = logging.getLogger("lakeport.server.files")

router = APIRouter()
router.include_router(routes_tree.router)
router.include_router(routes_links.router)
router.include_router(routes_files.router)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the lake named by the settings' ``lake_url``; sweep orphaned objects meanwhile."""
    lake = app.state.files_lake = await lake_for(app.state.settings.lake_url).open()
    sweeping = asyncio.create_task(_sweep(lake, app.state.store))
    try:
        yield
    finally:
        sweeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeping


async def _sweep(lake: Lake, store: Store) -> None:
    try:
        await sweep_orphans(lake, store)
    except Exception:  # a sweep that fails leaves garbage, never breaks the server
        log.exception("the orphan sweep of the lake failed")


__all__ = ["lifespan", "router"]
