"""Data-lake files: bytes in the lake, metadata in the store.

Upload (streamed, any size), download with ranges, append, archive, tags and metadata,
directories, search, shares, relations and lineage, and CSV / Parquet / JSON files read as
tables. See docs/server/files.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from lakeport.server.files import routes_files, routes_links, routes_tree
from lakeport.server.files.lake import Lake

router = APIRouter()
router.include_router(routes_tree.router)
router.include_router(routes_links.router)
router.include_router(routes_files.router)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the lake named by the settings' ``lake_url``."""
    app.state.files_lake = await Lake(app.state.settings.lake_url).open()
    yield


__all__ = ["lifespan", "router"]
