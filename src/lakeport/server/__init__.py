"""The lakeport platform server (``lakeport serve``): FastAPI + uvicorn over a SQL store."""

from lakeport.server.app import create_app
from lakeport.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
