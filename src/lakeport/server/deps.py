"""FastAPI dependencies the services share: the store and the topic engine (``async``: FastAPI
runs a plain ``def`` dependency in a thread pool, a thread hop per request)."""

from __future__ import annotations

from fastapi import Request

from lakeport.server.store import Store
from lakeport.streams import Engine


async def get_store(request: Request) -> Store:
    return request.app.state.store


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


__all__ = ["get_engine", "get_store"]
