"""API keys: every route except health needs ``x-api-key`` (WebSockets may pass ``api_key``
in the query instead). Lookups are cached for a few seconds."""

from __future__ import annotations

import time

from fastapi import Depends, Request, WebSocket
from fastapi.security import APIKeyHeader

from lakeport.errors import Unauthorized
from lakeport.server.store import Store
from lakeport.server.store.users import User, hash_key, user_for_key

HEADER = "x-api-key"
CACHE_SECONDS = 5.0
_header = APIKeyHeader(name=HEADER, auto_error=False,
                       description="an API key from `lakeport keys create --user NAME`")
_cache: dict[str, tuple[User, float]] = {}


async def authenticate(store: Store, key: str | None) -> User:
    """The user owning ``key``; Unauthorized when it is missing, unknown or revoked."""
    if not key:
        raise Unauthorized(f"missing API key: send it in the {HEADER} header "
                           "(lakeport keys create --user NAME makes one)")
    digest = hash_key(key)
    cached = _cache.get(digest)
    now = time.monotonic()
    if cached is not None and cached[1] > now:
        return cached[0]
    user = await user_for_key(store, key)
    if user is None:
        _cache.pop(digest, None)
        raise Unauthorized("invalid or revoked API key")
    if len(_cache) > 10_000:
        _cache.clear()
    _cache[digest] = (user, now + CACHE_SECONDS)
    return user


def forget_cached_keys() -> None:
    """Drop cached lookups (after a key is revoked in this process)."""
    _cache.clear()


async def current_user(request: Request, key: str | None = Depends(_header)) -> User:
    """FastAPI dependency: the user of the request's API key (found by the body limits'
    middleware already, when it ran)."""
    user = request.scope.get("state", {}).get("user")
    if isinstance(user, User):
        return user
    return await authenticate(request.app.state.store, key)


async def websocket_user(websocket: WebSocket) -> User:
    """The user of a WebSocket's API key (header, or ``api_key`` in the query)."""
    key = websocket.headers.get(HEADER) or websocket.query_params.get("api_key")
    return await authenticate(websocket.app.state.store, key)


__all__ = ["HEADER", "authenticate", "current_user", "forget_cached_keys", "websocket_user"]
