"""API keys: every route except health needs ``x-api-key`` (WebSockets may pass ``api_key``
in the query instead). Each app caches its lookups for a few seconds (:class:`KeyCache`)."""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import Depends, Request, WebSocket
from fastapi.security import APIKeyHeader

from lakeport.errors import Unauthorized
from lakeport.server.store import Store
from lakeport.server.store.users import User, hash_key, user_for_key

HEADER = "x-api-key"
CACHE_SECONDS = 5.0
_header = APIKeyHeader(name=HEADER, auto_error=False,
                       description="an API key from `lakeport keys create --user NAME`")


class KeyCache:
    """The API-key lookups of one server app (``app.state.key_cache``), each trusted for
    ``seconds``: a key revoked elsewhere works at most that long, one forgotten here not at
    all. Holds key hashes only, at most ``max_keys`` of them."""

    def __init__(self, seconds: float = CACHE_SECONDS, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.max_keys = max_keys
        self._clock = clock
        self._users: dict[str, tuple[User, float]] = {}

    def __len__(self) -> int:
        return len(self._users)

    def get(self, key: str) -> User | None:
        """The cached user of ``key``, None when not cached or expired."""
        cached = self._users.get(hash_key(key))
        if cached is None or cached[1] <= self._clock():
            return None
        return cached[0]

    def put(self, key: str, user: User) -> None:
        if len(self._users) >= self.max_keys:
            self._users.clear()
        self._users[hash_key(key)] = (user, self._clock() + self.seconds)

    def forget(self, key: str | None = None) -> None:
        """Drop the lookup of ``key`` (every lookup when None), e.g. after a revocation."""
        if key is None:
            self._users.clear()
        else:
            self._users.pop(hash_key(key), None)


async def authenticate(store: Store, cache: KeyCache, key: str | None) -> User:
    """The user owning ``key``; Unauthorized when it is missing, unknown or revoked."""
    if not key:
        raise Unauthorized(f"missing API key: send it in the {HEADER} header "
                           "(lakeport keys create --user NAME makes one)")
    user = cache.get(key)
    if user is not None:
        return user
    user = await user_for_key(store, key)
    if user is None:
        cache.forget(key)
        raise Unauthorized("invalid or revoked API key")
    cache.put(key, user)
    return user


async def current_user(request: Request, key: str | None = Depends(_header)) -> User:
    """FastAPI dependency: the user of the request's API key (found by the body limits'
    middleware already, when it ran)."""
    user = request.scope.get("state", {}).get("user")
    if isinstance(user, User):
        return user
    state = request.app.state
    return await authenticate(state.store, state.key_cache, key)


async def websocket_user(websocket: WebSocket) -> User:
    """The user of a WebSocket's API key (header, or ``api_key`` in the query)."""
    key = websocket.headers.get(HEADER) or websocket.query_params.get("api_key")
    state = websocket.app.state
    return await authenticate(state.store, state.key_cache, key)


__all__ = ["CACHE_SECONDS", "HEADER", "KeyCache", "authenticate", "current_user",
           "websocket_user"]
