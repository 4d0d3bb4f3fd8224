"""FastAPI dependencies the services share: the store and the topic engine."""

from __future__ import annotations

from fastapi import Request

from lakeport.server.store import Store
from lakeport.streams import Engine


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


__all__ = ["get_engine", "get_store"]
