"""``/health`` (no key needed) and ``/api/v1/me`` (who the key belongs to)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request

from lakeport import __version__
from lakeport.errors import Unavailable
from lakeport.server.auth import current_user
from lakeport.server.store.users import User

router = APIRouter()
api = APIRouter(tags=["users"])


@router.get("/health", tags=["health"])
async def health(request: Request) -> dict[str, Any]:
    """Liveness and the store's reachability (503 when the store is down)."""
    store = request.app.state.store
    try:
        async with store.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # the store's driver raises its own errors
        raise Unavailable(f"store unreachable: {exc}") from exc
    return {"status": "ok", "version": __version__, "store": store.dialect}


@api.get("/me")
async def me(user: User = Depends(current_user)) -> dict[str, Any]:
    """The user the API key belongs to."""
    return {"user": user.name}


__all__ = ["api", "router"]
