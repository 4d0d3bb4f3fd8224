"""FastAPI dependencies the services share: the store, the topic engine, the settings."""

from __future__ import annotations

from fastapi import Request

from lakeport.server.settings import ServerSettings
from lakeport.server.store import Store
from lakeport.streams import Engine


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_settings(request: Request) -> ServerSettings:
    return request.app.state.settings


__all__ = ["get_engine", "get_settings", "get_store"]
